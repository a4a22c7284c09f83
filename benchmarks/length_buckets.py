"""Length buckets inside a batch: the cost model behind `bucket_costs` of textgru's predictors, and what it buys.

A call `predict(texts, batch_size=64)` on textgru's predictors sorts the texts by token length, cuts them into
batches of 64, and may run a batch as several consecutive runs of similar lengths (`textgru.inference.
length_buckets`), when the padding saved outweighs the extra calls and time steps. The split follows a cost model
of one forward pass over `n` rows padded to `width` tokens:

    seconds = F + width * (a + b * n)    ->    in row time steps: call_cost + width * (n + step_cost)

with `call_cost = F / b` and `step_cost = a / b`. For the default `TextGRUConfig` (random weights: speed only),
this script:

1. **fits** F, a and b per backend (eager PyTorch, ONNX, int8 ONNX) by least squares over forward passes of
   full-length rows (`--rows` x `--widths`), and prints `(call_cost, step_cost)`: the figures in
   `textgru/inference.py` (`bucket_costs` of each predictor) come from a run of this script;
2. **checks** the gain on real SST-2 test sentences: `predict` at batch 64 with the backend's buckets on and off,
   in input order and length-sorted, interleaved repeats, medians.

Usage (1 thread, as speed.py):

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/length_buckets.py [--json benchmarks/results/length_buckets.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _data import default_textgru_on_sst2  # noqa: E402  (benchmarks/ is on the path from here on)
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="batch sizes of the fit")
    p.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32, 64], help="padded lengths of the fit")
    p.add_argument("--n-texts", type=int, default=1024, help="SST-2 test sentences of the check (seeded sample)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats; medians reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quick", action="store_true", help="small model inputs and slices, 1 repeat (smoke test)")
    return p.parse_args(argv)


def fit_costs(classifier, vocab_size: int, rows: list[int], widths: list[int], repeats: int) -> dict:
    """Least-squares fit of seconds = F + width * (a + b * n) over forward passes of full-length rows."""
    rng = np.random.default_rng(0)
    samples = []
    for width in widths:
        for n in rows:
            ids = rng.integers(5, vocab_size, (n, width)).astype(np.int64)
            mask = np.ones_like(ids)
            samples.append(
                (n, width, median_seconds(lambda ids=ids, mask=mask: classifier._logits(ids, mask), repeats))
            )
    design = np.array([[1.0, w, w * n] for n, w, _ in samples])
    seconds = np.array([t for _, _, t in samples])
    # relative errors matter (the timings span 100x): weight each sample by 1 / its time
    weights = 1.0 / seconds
    (fixed, per_step, per_row_step), *_ = np.linalg.lstsq(design * weights[:, None], seconds * weights, rcond=None)
    predicted = design @ np.array([fixed, per_step, per_row_step])
    return {
        "F_us": fixed * 1e6,
        "a_us": per_step * 1e6,
        "b_us": per_row_step * 1e6,
        "call_cost": max(fixed, 0.0) / per_row_step,
        "step_cost": max(per_step, 0.0) / per_row_step,
        "fit_max_relative_error": float(np.max(np.abs(predicted - seconds) / seconds)),
        "samples": [{"rows": n, "width": w, "ms": t * 1e3} for n, w, t in samples],
    }


def check_gain(classifiers: dict, texts: list[str], batch_size: int, repeats: int) -> dict:
    """Texts/s of `predict` in calls of `batch_size` texts, buckets on vs off, input order and length-sorted."""
    lengths = [len(e.ids) for e in next(iter(classifiers.values())).backend.encode_batch(texts)]
    orders = {"input order": texts, "length-sorted": [texts[i] for i in np.argsort(lengths, kind="stable")]}
    runs = {(name, order, buckets): [] for name in classifiers for order in orders for buckets in ("on", "off")}
    fitted = {name: clf.bucket_costs for name, clf in classifiers.items()}
    for repeat in range(repeats + 1):  # the first pass warms up
        for name, order, buckets in runs:
            clf = classifiers[name]
            clf.bucket_costs = fitted[name] if buckets == "on" else None
            start = time.perf_counter()
            for i in range(0, len(texts), batch_size):
                clf.predict(orders[order][i : i + batch_size], batch_size=batch_size)
            if repeat:
                runs[(name, order, buckets)].append(len(texts) / (time.perf_counter() - start))
    for name, clf in classifiers.items():
        clf.bucket_costs = fitted[name]
    out: dict = {}
    for (name, order, buckets), values in runs.items():
        out.setdefault(name, {}).setdefault(order, {})[f"buckets_{buckets}_texts_per_s"] = statistics.median(values)
    for name in out:
        for order in orders:
            entry = out[name][order]
            entry["speedup"] = entry["buckets_on_texts_per_s"] / entry["buckets_off_texts_per_s"]
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.rows, args.widths, args.n_texts, args.repeats = [1, 4, 16], [4, 8], 64, 1
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from textgru.inference import OnnxTextClassifier, TextClassifier

    model, tokenizer, timed, source = default_textgru_on_sst2(args.data_dir, args.n_texts, args.seed, args.quick)
    config = model.config
    classifiers = {"textgru": TextClassifier(model, tokenizer)}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from textgru.export import export_onnx

            for name, int8 in (("textgru-onnx", False), ("textgru-onnx-int8", True)):
                folder = export_onnx(model, tokenizer, Path(tmp) / name, int8=int8)
                classifiers[name] = OnnxTextClassifier(folder)
        except ImportError as error:
            print(f"ONNX backends skipped: {error}")
        report = {"source": source, "texts": len(timed), "batch_size": args.batch_size, "backends": {}}
        for name, clf in classifiers.items():
            fit = fit_costs(clf, config.vocab_size, args.rows, args.widths, max(args.repeats, 3))
            report["backends"][name] = {"shipped_bucket_costs": clf.bucket_costs, "fit": fit}
            clf.bucket_costs = (fit["call_cost"], fit["step_cost"])  # the check uses this run's fit
        gains = check_gain(classifiers, timed, args.batch_size, args.repeats)
    for name, entry in report["backends"].items():
        entry["check"] = gains[name]
    print_report(report)
    write_json(args.json, report)
    return report


def print_report(report: dict) -> None:
    print(f"{report['texts']} texts from {report['source']}, calls of {report['batch_size']}, 1 thread")
    print(
        f"{'backend':20s} {'F us':>7s} {'a us':>7s} {'b us':>7s} {'call_cost':>9s} {'step_cost':>9s} {'fit err':>7s}"
        "   shipped"
    )
    for name, entry in report["backends"].items():
        f = entry["fit"]
        print(
            f"{name:20s} {f['F_us']:7.0f} {f['a_us']:7.1f} {f['b_us']:7.2f} {f['call_cost']:9.1f} "
            f"{f['step_cost']:9.2f} {f['fit_max_relative_error']:7.0%}   {entry['shipped_bucket_costs']}"
        )
    print(f"{'backend':20s} {'order':15s} {'off texts/s':>11s} {'on texts/s':>11s} {'speed-up':>8s}")
    for name, entry in report["backends"].items():
        for order, c in entry["check"].items():
            print(
                f"{name:20s} {order:15s} {c['buckets_off_texts_per_s']:11.0f} {c['buckets_on_texts_per_s']:11.0f} "
                f"{c['speedup']:7.2f}x"
            )


if __name__ == "__main__":
    main()
