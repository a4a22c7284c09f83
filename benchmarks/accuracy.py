"""Accuracy on real benchmark sets: the default recipe config of each set vs TF-IDF + logistic regression.

For every set it trains `recipes/configs/<set>.json` with its recipe (in a subprocess, as a user would), and
fits TF-IDF (word 1-2 grams) + logistic regression with C tuned on the validation split, on exactly the same
splits (both go through `textgru.recipe.load_data`). Prints one table and writes JSON + markdown.

    OMP_NUM_THREADS=1 python benchmarks/accuracy.py --data-dir ../shared/data            # every set
    OMP_NUM_THREADS=1 python benchmarks/accuracy.py --sets sst2 trec_coarse --max-train-minutes 10

The published numbers to compare with are in ../shared/data/README.md and docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECIPE = {  # which recipe trains each config
    "sst2": "sentiment_analysis",
    "sst5": "sentiment_analysis",
    "mr": "sentiment_analysis",
    "imdb": "sentiment_analysis",
    "imdb_rating": "sentiment_analysis",
    "trec_coarse": "text_classification",
    "trec_fine": "text_classification",
    "20ng": "text_classification",
    "r8": "text_classification",
    "r52": "text_classification",
}
DEFAULT_SETS = ["sst2", "sst5", "trec_coarse", "mr", "r8", "r52", "20ng", "imdb"]


def tfidf_baseline(config_path: Path, data_dir: str) -> dict:
    """TF-IDF + logistic regression on the recipe's own splits, C tuned on validation."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from textgru.recipe import load_data
    from textgru.recipe_args import parse_recipe_args

    _, data_args, training_args = parse_recipe_args(
        {"output_dir": "/tmp/unused"}, [str(config_path), "--data_dir", data_dir]
    )
    raw, labels = load_data(data_args, training_args.seed)
    if labels.problem_type != "single_label_classification":
        return {}
    column = data_args.text_columns[0]
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=200_000)
    x_train = vectorizer.fit_transform(raw["train"][column])
    x_val, x_test = vectorizer.transform(raw["validation"][column]), vectorizer.transform(raw["test"][column])
    y_train, y_val, y_test = (np.asarray(raw[s]["labels"]) for s in ("train", "validation", "test"))
    best = None
    for c in (0.25, 1, 4, 16, 64):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
        score = (clf.predict(x_val) == y_val).mean()
        if best is None or score > best[0]:
            best = (score, c, clf)
    _, c, clf = best
    return {
        "test_accuracy": float((clf.predict(x_test) == y_test).mean()),
        "C": c,
        "wall_time_s": time.perf_counter() - started,
    }


def run_textgru(name: str, data_dir: str, out_dir: Path, extra: list[str]) -> dict:
    recipe = ROOT / "recipes" / f"{RECIPE[name]}.py"
    output = out_dir / name
    cmd = [sys.executable, str(recipe), str(ROOT / "recipes" / "configs" / f"{name}.json")]
    cmd += ["--data_dir", data_dir, "--output_dir", str(output), "--disable_tqdm", "true", *extra]
    print("$", " ".join(cmd), flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    (out_dir / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return {"error": f"exit {proc.returncode}, see {out_dir / f'{name}.log'}"}
    results = json.loads((output / "all_results.json").read_text())["results"]
    test = results.get("test", {})
    train = results.get("train", {})
    metric = "test_accuracy" if "test_accuracy" in test else "test_pearson"
    return {
        "metric": metric.removeprefix("test_"),
        "test": test.get(metric),
        "validation": results.get("validation", {}).get(metric.replace("test_", "validation_")),
        "train_runtime_s": train.get("train_runtime"),
        "epochs": train.get("epoch"),
        "train_tokens_per_second": train.get("train_tokens_per_second"),
        "wall_time_s": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--sets", nargs="+", default=DEFAULT_SETS, choices=sorted(RECIPE))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "accuracy"))
    parser.add_argument("--max-train-minutes", type=float, default=None, help="time budget per set")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("recipe_args", nargs=argparse.REMAINDER, help="after --, flags passed to every recipe")
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = [a for a in args.recipe_args if a != "--"]
    if args.max_train_minutes:
        extra += ["--max_train_minutes", str(args.max_train_minutes)]
    import torch

    header = {
        "torch": torch.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "extra_flags": extra,
    }
    rows = {}
    json_path = out_dir / "accuracy.json"
    if json_path.exists():
        rows = json.loads(json_path.read_text()).get("rows", {})
    for name in args.sets:
        row = {"textgru": run_textgru(name, args.data_dir, out_dir, extra)}
        if not args.skip_baseline:
            row["tfidf_lr"] = tfidf_baseline(ROOT / "recipes" / "configs" / f"{name}.json", args.data_dir)
        rows[name] = row
        print(name, json.dumps(row), flush=True)
        json_path.write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    lines = [
        "| set | textgru test | metric | TF-IDF+LR test | textgru train time (s) | epochs | train tokens/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        t, b = row["textgru"], row.get("tfidf_lr", {})
        if "error" in t:
            lines.append(f"| {name} | error | | | | | |")
            continue
        pct = (lambda v: f"{100 * v:.1f}") if t["metric"] == "accuracy" else (lambda v: f"{v:.3f}")
        base = f"{100 * b['test_accuracy']:.1f}" if b.get("test_accuracy") is not None else "–"
        lines.append(
            f"| {name} | {pct(t['test'])} | {t['metric']} | {base} | {t['train_runtime_s']:.0f} | "
            f"{t['epochs']:.1f} | {t['train_tokens_per_second']:.0f} |"
        )
    table = "\n".join(lines)
    (out_dir / "accuracy.md").write_text(f"{json.dumps(header)}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
