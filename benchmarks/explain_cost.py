"""Fidelity and cost of `textgru.explain` (the figures in docs/explain.md).

For a trained classifier folder (default: the SST-2 recipe's model, `benchmarks/results/accuracy_sentences/sst2`)
and real SST-2 test sentences it reports, per integrated-gradients step count, the completeness gap relative to
the attributions' total (`delta / |sum(scores)|`: median and largest over the texts), and the seconds per text of
integrated gradients (32 steps) and occlusion on texts of `--cost-tokens` tokens (IMDB test reviews cut there).

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/explain_cost.py [MODEL_DIR] [--json benchmarks/results/explain_cost.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path, nargs="?", default=ROOT / "benchmarks/results/accuracy_sentences/sst2")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--n-texts", type=int, default=20, help="SST-2 test sentences for the completeness gap")
    p.add_argument("--steps", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--n-cost", type=int, default=3, help="IMDB reviews timed per method")
    p.add_argument("--cost-tokens", type=int, default=200)
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    import pandas as pd
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import textgru  # noqa: F401  (registers the architecture)
    from textgru.explain import explain

    args = parse_args(argv)
    torch.set_num_threads(1)
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    sst = pd.read_parquet(args.data_dir / "sst2" / "test.parquet").text.sample(n=args.n_texts, random_state=0)
    report = {"model_dir": str(args.model_dir), "texts": args.n_texts, "gap": {}, "seconds_per_text": {}}
    for steps in args.steps:
        gaps = [e.delta / max(abs(sum(e.scores)), 1e-6) for e in explain(model, tokenizer, list(sst), steps=steps)]
        report["gap"][steps] = {"median": statistics.median(gaps), "max": max(gaps)}
        print(f"integrated gradients, {steps} steps: gap / |total| median {statistics.median(gaps):.2%}, "
              f"max {max(gaps):.2%} over {len(gaps)} SST-2 test sentences")  # fmt: skip
    reviews = pd.read_parquet(args.data_dir / "imdb" / "test.parquet").text.sample(n=args.n_cost, random_state=0)
    long_texts = [
        tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"][: args.cost_tokens]) for t in reviews
    ]
    tokenizer.model_max_length = max(tokenizer.model_max_length, args.cost_tokens)  # explain() truncates there
    for method in ("integrated_gradients", "occlusion"):
        explain(model, tokenizer, long_texts[:1], method=method)  # warm-up
        start = time.perf_counter()
        for text in long_texts:
            explain(model, tokenizer, text, method=method)
        seconds = (time.perf_counter() - start) / len(long_texts)
        report["seconds_per_text"][method] = seconds
        print(f"{method}: {seconds:.2f} s per {args.cost_tokens}-token review (1 thread)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
