"""CPU speed of TextGRU (eager, int8, ONNX) beside a tutorial BiGRU, DistilBERT, TF-IDF + LR and fastText.

One process runs every contender on the same inputs, interleaved (each repeat visits all contenders, in an order
rotated per repeat, so slow drift of a shared machine hits them alike); figures are medians over repeats. Peak
memory is measured in a fresh subprocess per contender. See docs/benchmarks.md for the method and the meaning of
each number.

    python benchmarks/speed.py                      # full run (~10 min on 2 vCPUs), writes benchmarks/results/
    python benchmarks/speed.py --quick --out /tmp/q # smoke run on tiny slices (~1 min)

Writes `speed.json` (everything, per repeat), `speed.md` (tables) and `speed.png` (bars) to `--out`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _helpers beside this script
from _timing import time_batched  # noqa: E402  (light: stdlib only)

logger = logging.getLogger("benchmarks.speed")

FULL = {
    "n_texts": 256,
    "n_docs": 64,
    "repeats": 3,
    "min_seconds": 1.0,
    "train_steps": {"sst2": 40, "imdb": 10},  # an SST-2 step is ~20x shorter: more of them for a steadier figure
    "train_batch_size": 32,
    "max_tokens": 512,
}
QUICK = {
    "n_texts": 8,
    "n_docs": 4,
    "repeats": 1,
    "min_seconds": 0.0,
    "train_steps": {"sst2": 2, "imdb": 2},
    "train_batch_size": 8,
    "max_tokens": 64,
}
REFERENCES = ("textgru", "distilbert", "plain-bigru")  # eager textgru: the fast formats' baseline


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="Tiny slices, 1 repeat, 64-token documents (smoke test).")
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="Parquet data sets.")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="Output folder.")
    p.add_argument("--threads", type=int, default=1, help="Threads for torch / onnxruntime (default 1).")
    p.add_argument("--repeats", type=int, help="Interleaved repeats per measurement (default 3; quick 1).")
    p.add_argument("--n-texts", type=int, help="SST-2 test sentences timed (default 256; quick 8).")
    p.add_argument("--n-docs", type=int, help="IMDB test reviews timed (default 64; quick 4).")
    p.add_argument("--max-tokens", type=int, help="Truncate documents at this many tokens (default 512; quick 64).")
    p.add_argument(
        "--train-steps",
        type=int,
        help="Timed training steps per model, data set and repeat (default 40 on SST-2, 10 on IMDB; quick 2).",
    )
    p.add_argument("--train-batch-size", type=int, help="Training batch size (default 32; quick 8).")
    p.add_argument("--batch-size", type=int, default=64, help="Batch size of the throughput figure.")
    p.add_argument(
        "--min-seconds",
        type=float,
        help="Each batched-throughput measurement repeats passes over its texts for at least this long and keeps "
        "the median pass (default 1.0; quick 0).",
    )
    p.add_argument("--contenders", nargs="+", help="Run only these contenders (default: all).")
    p.add_argument("--no-memory", action="store_true", help="Skip the per-contender memory subprocesses.")
    p.add_argument("--no-training", action="store_true", help="Skip the training-throughput comparison.")
    p.add_argument(
        "--flush-denormal",
        action="store_true",
        help="torch.set_flush_denormal(True) for the whole run (flush-to-zero): what a padded model's long-sequence "
        "backward gains when tiny gradients stop costing denormal arithmetic.",
    )
    p.add_argument("--no-plot", action="store_true", help="Do not draw speed.png.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probe", help=argparse.SUPPRESS)  # internal: memory probe of one contender
    p.add_argument("--probe-dir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--probe-texts", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if isinstance(args.train_steps, int):  # one figure given: every data set
        args.train_steps = {"sst2": args.train_steps, "imdb": args.train_steps}
    return args


# ---------------------------------------------------------------------------------------------------------------
# Memory probe (runs in a subprocess: `speed.py --probe NAME --probe-dir DIR --probe-texts FILE`)
# ---------------------------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    import resource  # not Linux: ru_maxrss is the only figure

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_probe(args: argparse.Namespace) -> None:
    """Import the contender's libraries, note RSS, load it, classify one batch of documents, report peak RSS."""
    import _contenders

    texts = json.loads(args.probe_texts.read_text())
    cls = _contenders.CONTENDERS[args.probe]
    for module in cls.IMPORTS:
        importlib.import_module(module)
    baseline = _status_mb("VmRSS")
    predictor = cls.load(args.probe_dir, args.threads, args.max_tokens)
    loaded = _status_mb("VmRSS")
    predictor.predict(texts)
    print(json.dumps({"baseline_rss_mb": baseline, "loaded_rss_mb": loaded, "peak_rss_mb": _status_mb("VmHWM")}))


def measure_memory(name: str, folder: Path, texts: list[str], args: argparse.Namespace, env: dict) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    command = [sys.executable, __file__, "--probe", name, "--probe-dir", str(folder), "--probe-texts", f.name]
    command += ["--threads", str(args.threads), "--max-tokens", str(args.max_tokens)]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["model_rss_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    result["workload"] = f"load + one batch of {len(texts)} IMDB documents"
    return result


# ---------------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------------


def time_batch1(predictor, texts: list[str]) -> list[float]:
    """Seconds per text, classifying one text per call."""
    times = []
    for text in texts:
        start = time.perf_counter()
        predictor.predict([text])
        times.append(time.perf_counter() - start)
    return times


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(args: argparse.Namespace) -> dict:
    """CPU, threads, library versions and load average: what a reader needs to judge the figures."""
    import torch

    versions = {}
    for module in ("torch", "transformers", "tokenizers", "onnxruntime", "sklearn", "numpy", "fasttext", "textgru"):
        try:
            versions[module] = getattr(__import__(module), "__version__", "installed")
        except ImportError:
            versions[module] = None
    return {
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch_num_threads": torch.get_num_threads(),
        "flush_denormal": bool(args.flush_denormal),
        "onnxruntime_intra_op_threads": args.threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def build_all(names: list[str], ctx, inputs: dict, args: argparse.Namespace) -> tuple[dict, dict]:
    """Build, save, reload and warm up every contender; returns their report entries and predictors."""
    import _contenders

    contenders, predictors = {}, {}
    for name in names:
        t0 = time.perf_counter()
        disk = _contenders.build_contender(name, ctx, ctx.work_dir / name)
        predictors[name] = _contenders.load_contender(name, ctx.work_dir / name, args.threads, args.max_tokens)
        for texts in inputs.values():  # warm-up: lazy initialisation, oneDNN primitives, allocator
            predictors[name].predict(texts[:1])
            predictors[name].predict(texts[:4])
        contenders[name] = {
            "description": _contenders.CONTENDERS[name].description,
            "parameters": _contenders.count_parameters(name, predictors[name]),
            "disk_mb": disk / 2**20,
            "build_seconds": time.perf_counter() - t0,
        }
        logger.info("Built %s (%.1f MB on disk) in %.1fs", name, disk / 2**20, time.perf_counter() - t0)
    ctx.cache.clear()
    return contenders, predictors


def sort_by_tokens(inputs: dict, tokenizer) -> dict:
    """The same texts ordered by token count (shared tokenizer), as textgru's predictors batch a list of texts."""
    backend = tokenizer.backend_tokenizer
    return {d: sorted(texts, key=lambda t: len(backend.encode(t).ids)) for d, texts in inputs.items()}


def time_all(contenders: dict, predictors: dict, inputs: dict, sorted_inputs: dict, args: argparse.Namespace) -> None:
    """Interleaved repeats of batch-1 latency and batched throughput (input order and length-sorted); adds
    per-repeat values and medians."""
    tput_key = f"throughput_b{args.batch_size}"
    sorted_key = f"{tput_key}_sorted"
    names = list(predictors)
    for entry in contenders.values():
        entry["latency_b1_ms"] = {d: {"per_repeat": []} for d in inputs}
        entry[tput_key] = {d: {"per_repeat": []} for d in inputs}
        entry[sorted_key] = {d: {"per_repeat": []} for d in inputs}
    every_call = {name: {d: [] for d in inputs} for name in names}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        shift = repeat % len(names)  # rotate the order so drift in machine load hits everyone alike
        for name in names[shift:] + names[:shift]:
            entry = contenders[name]
            for dataset, texts in inputs.items():
                gc.collect()
                b1 = time_batch1(predictors[name], texts)
                every_call[name][dataset] += b1
                entry["latency_b1_ms"][dataset]["per_repeat"].append(statistics.median(b1) * 1e3)
                gc.collect()
                entry[tput_key][dataset]["per_repeat"].append(
                    time_batched(predictors[name], texts, args.batch_size, args.min_seconds)
                )
                gc.collect()
                entry[sorted_key][dataset]["per_repeat"].append(
                    time_batched(predictors[name], sorted_inputs[dataset], args.batch_size, args.min_seconds)
                )
        logger.info("Repeat %d/%d done (%.0fs)", repeat + 1, args.repeats, time.perf_counter() - started)
    for name, entry in contenders.items():
        for dataset in inputs:
            latency, calls = entry["latency_b1_ms"][dataset], every_call[name][dataset]
            latency.update(
                median=statistics.median(latency["per_repeat"]),
                p90=_quantile(calls, 0.9) * 1e3,
                mean=statistics.mean(calls) * 1e3,
            )
            for key in (tput_key, sorted_key):
                entry[key][dataset]["median"] = statistics.median(entry[key][dataset]["per_repeat"])


def main(argv=None) -> dict | None:
    """Run the benchmark (or, with the internal `--probe`, one memory probe); returns the report."""
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.probe:
        return run_probe(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("textgru", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    import torch

    torch.set_num_threads(args.threads)
    if args.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("--flush-denormal: this CPU does not support flush-to-zero (torch.set_flush_denormal).")
    import _contenders
    import _report
    import _training
    from _data import FIT_SIZES, load_data, prepare_inputs

    from textgru.tokenization import train_tokenizer

    started = time.perf_counter()
    report = {"meta": {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}}
    report["meta"]["environment"] = environment(args)

    # 1. Contenders: everything, or the requested ones; fastText only where it is importable.
    names = list(args.contenders or _contenders.CONTENDERS)
    report["skipped"] = {}
    if "fasttext" in names and (reason := _contenders.fasttext_unavailable()):
        report["skipped"]["fasttext"] = reason
        names.remove("fasttext")
        logger.warning("Skipping fastText: %s", reason)

    # 2. Data, the shared tokenizer and the timed inputs.
    data = load_data(args)
    fit_texts = data["sst2_train"][0] + data["imdb_train"][0]
    fit_labels = data["sst2_train"][1] + data["imdb_train"][1]
    vocab_size = FIT_SIZES[args.quick][2]
    logger.info("Training the shared tokenizer (vocab %d) on %d train texts", vocab_size, len(fit_texts))
    tokenizer = train_tokenizer(
        fit_texts, vocab_size=vocab_size, model_max_length=args.max_tokens, show_progress=False
    )
    inputs, report["meta"]["data"] = prepare_inputs(args, data, tokenizer)

    with tempfile.TemporaryDirectory(prefix="textgru-speed-") as work:
        tokenizer.save_pretrained(Path(work) / _contenders.TOKENIZER_DIR)
        ctx = _contenders.Context(
            Path(work), fit_texts, fit_labels, args.max_tokens, args.threads, args.quick, args.seed
        )

        # 3. Build, time, and (in fresh processes) measure memory.
        contenders, predictors = build_all(names, ctx, inputs, args)
        time_all(contenders, predictors, inputs, sort_by_tokens(inputs, tokenizer), args)
        predictors.clear()
        gc.collect()
        if not args.no_memory:
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            for name in names:
                logger.info("Memory probe: %s", name)
                documents = inputs["imdb"][: args.batch_size]
                contenders[name]["memory"] = measure_memory(name, ctx.work_dir / name, documents, args, env)
    report["contenders"] = contenders
    report["ratios"] = ratios(contenders, inputs, f"throughput_b{args.batch_size}")
    report["ratios_length_sorted"] = {
        ref: {
            name: {
                f"throughput_b{args.batch_size}_sorted_{d}": c[f"throughput_b{args.batch_size}_sorted"][d]["median"]
                / contenders[ref.removeprefix("vs_")][f"throughput_b{args.batch_size}_sorted"][d]["median"]
                for d in inputs
            }
            for name, c in contenders.items()
        }
        for ref in report["ratios"]
    }

    # 4. Training throughput, TextGRU vs the plain BiGRU.
    if not args.no_training:
        report["training"] = training_figures(args, data, tokenizer, _training)

    report["meta"]["environment"]["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report["meta"]["seconds_total"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "speed.md").write_text(_report.markdown(report))
    if not args.no_plot:
        _report.plot(report, args.out / "speed.png")
    logger.info("Wrote %s (%.0fs)", args.out / "speed.json", report["meta"]["seconds_total"])
    return report


def ratios(contenders: dict, inputs: dict, tput_key: str) -> dict:
    """Speed-ups vs each reference: reference latency / latency, throughput / reference throughput (>1 = faster)."""
    out = {}
    for reference in REFERENCES:
        if reference not in contenders:
            continue
        ref = contenders[reference]
        out[f"vs_{reference}"] = {
            name: {
                **{
                    f"latency_b1_{d}": ref["latency_b1_ms"][d]["median"] / c["latency_b1_ms"][d]["median"]
                    for d in inputs
                },
                **{f"{tput_key}_{d}": c[tput_key][d]["median"] / ref[tput_key][d]["median"] for d in inputs},
            }
            for name, c in contenders.items()
        }
    return out


def training_figures(args, data: dict, tokenizer, _training) -> dict:
    """Training tokens/s of TextGRU vs the plain BiGRU on SST-2 and IMDB, and a matmul peak for scale."""
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(args.max_tokens)
    out = {"matmul_peak_gflops_1_thread": _training.matmul_peak_gflops(threads=1)}
    peak_key = "matmul_peak_gflops_1_thread"
    if args.threads != 1:
        peak_key = f"matmul_peak_gflops_{args.threads}_threads"
        out[peak_key] = _training.matmul_peak_gflops(threads=args.threads)
    for dataset in ("sst2", "imdb"):
        texts, labels = data[f"{dataset}_train"]
        token_ids = [e.ids for e in backend.encode_batch(texts)]
        logger.info(
            "Training throughput on %s (%d interleaved repeats of %d steps per model)",
            dataset,
            args.repeats,
            args.train_steps[dataset],
        )
        result = _training.training_comparison(
            token_ids,
            labels,
            tokenizer.pad_token_id,
            len(tokenizer),
            args.train_steps[dataset],
            args.train_batch_size,
            args.seed,
            repeats=args.repeats,
        )
        for model in ("textgru", "textgru-nn-gru", "plain-bigru"):
            result[model]["fraction_of_matmul_peak"] = result[model]["gflops_per_s_executed"] / out[peak_key]
        out[dataset] = result
    backend.no_truncation()
    return out


if __name__ == "__main__":
    main()
