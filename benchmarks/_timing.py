"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls of `fn`, in seconds, after `warmup` untimed calls (allocator, oneDNN
    primitive creation, onnxruntime's first-run set-up)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_batched(predictor, texts: list[str], batch_size: int, min_seconds: float = 0.0) -> float:
    """Texts per second, classifying consecutive batches of `batch_size` (in the given order). The whole list is
    passed through again until `min_seconds` have gone by (at least once); the figure is the median pass, so that
    one hiccup of a shared machine does not decide a short measurement."""
    passes: list[float] = []
    started = time.perf_counter()
    while not passes or time.perf_counter() - started < min_seconds:
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            predictor.predict(texts[i : i + batch_size])
        passes.append(len(texts) / (time.perf_counter() - start))
    return statistics.median(passes)
