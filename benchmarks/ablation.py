"""Residual-depth ablation: does TextGRU's residual line let a GRU stack grow deep where a plain stack fails?

Trains `TextGRUForSequenceClassification` at a fixed width with 1, 2, 4, 8 and 12 stacked layers and each
residual mode, on SST-2 and on a fixed, seeded IMDB subset, and records test accuracy, the training-loss curve and
the gradient norm of the first GRU block at initialisation and after `--grad-steps` steps. Residual modes:

- `add`: `x + dropout(BiGRU(LayerNorm(x)))` (pre-norm residual, the library default);
- `gated`: highway, `x + g * (dropout(BiGRU(LayerNorm(x))) - x)`;
- `none`: `dropout(BiGRU(LayerNorm(x)))` (a stack with a LayerNorm before every layer, no skip);
- `none-noln`: `dropout(BiGRU(x))` (`layer_norm=False`: the classic plain stack GNMT describes).

Every run goes through the Hugging Face `Trainer` in this process (no recipe CLI). Results are appended to
`<out>/ablation.json` after each run, and a run already there (same data set, depth, mode, seed and settings) is
skipped, so an interrupted ablation resumes where it stopped. The table and plots are rebuilt after each run.

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/ablation.py                                   # the full plan (docs/ablation.md)
    python benchmarks/ablation.py --datasets sst2 --depths 1 12 --residuals none add --seeds 0 1
    python benchmarks/ablation.py --quick --out /tmp/ablation-quick # smoke run (~15 s)

On a GPU, `--device cuda` trains there (cuDNN's GRU; fp32, TF32 as torch's defaults allow). Shards run in parallel
(each its own `--out`) are combined with `--merge`:

    python benchmarks/ablation.py --out merged --merge shard1 shard2   # runs of both, report rebuilt, nothing trained
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

for _name, _value in (
    ("OMP_NUM_THREADS", "1"),
    ("TOKENIZERS_PARALLELISM", "false"),
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
):
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

logger = logging.getLogger("benchmarks.ablation")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data"
MODES = {  # residual mode name -> (config.residual, config.layer_norm)
    "none": ("none", True),
    "add": ("add", True),
    "gated": ("gated", True),
    "none-noln": ("none", False),
}
SETTING_KEYS = ("epochs", "hidden", "embedding", "max_length", "lr", "batch_size", "vocab_size", "dropout")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; `--quick` replaces the sizes with a tiny smoke run.

    Args:
        argv: Arguments (default: `sys.argv[1:]`).
    """
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["sst2", "imdb"], choices=["sst2", "imdb"])
    p.add_argument("--depths", nargs="+", type=int, default=[1, 2, 4, 8, 12])
    p.add_argument("--residuals", nargs="+", default=["none", "add", "gated", "none-noln"], choices=list(MODES))
    p.add_argument("--noln-depths", nargs="+", type=int, default=[1, 8, 12], help="depths at which `none-noln` runs")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument(
        "--epochs", nargs="+", default=["sst2=3", "imdb=2"], help="one number for all data sets, or NAME=N each"
    )
    p.add_argument("--hidden", type=int, default=32, help="GRU hidden size per direction")
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.1, help="embedding, hidden and classifier dropout")
    p.add_argument("--imdb-train", type=int, default=5000, help="IMDB train reviews (seeded sample)")
    p.add_argument("--imdb-test", type=int, default=5000, help="IMDB test reviews (seeded sample)")
    p.add_argument("--subset-seed", type=int, default=0, help="numpy seed of the IMDB train/test samples")
    p.add_argument("--max-length", type=int, default=64, help="truncation, in tokens (SST-2 sentences fit)")
    p.add_argument("--vocab-size", type=int, default=8000, help="WordPiece vocabulary, trained per data set")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--grad-steps", type=int, default=100, help="measure the first layer's gradient after N steps")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ablation")
    p.add_argument("--quick", action="store_true", help="tiny smoke run (generated data if --data-dir is absent)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to train (default: cpu)")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="add these ablation folders' runs to --out's (same key: kept once), rebuild the report, train nothing",
    )
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is visible to torch")
    if args.quick:
        args.depths = [d for d in args.depths if d <= 2] or [1, 2]
        args.seeds, args.epochs = [0], ["1"]
        args.residuals = [r for r in args.residuals if r in ("none", "add")] or ["add"]
        args.hidden, args.embedding, args.max_length, args.grad_steps = 8, 8, 32, 3
        args.imdb_train, args.imdb_test, args.vocab_size, args.batch_size = 64, 32, 600, 16
    epochs = {}
    for item in args.epochs:
        name, _, value = item.rpartition("=")
        for dataset in [name] if name else args.datasets:
            epochs[dataset] = float(value)
    missing = [d for d in args.datasets if d not in epochs]
    if missing:
        p.error(f"--epochs gives no value for {missing}; pass e.g. --epochs 3 or --epochs sst2=3 imdb=2")
    args.epochs = epochs
    return args


# ---------------------------------------------------------------------------------------------------- data


def _generated(n: int, words: tuple[int, int], seed: int) -> tuple[list[str], list[int]]:
    """Texts whose label is which of two word lists dominates (learnable), for machines without the data."""
    rng = np.random.default_rng(seed)
    good, bad, filler = "good great fine fun warm".split(), "bad dull weak slow silly".split(), "the a film it".split()
    texts, labels = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        pool = (good if label else bad) + filler
        texts.append(" ".join(rng.choice(pool, size=int(rng.integers(*words)))))
        labels.append(label)
    return texts, labels


def load_dataset_texts(name: str, args: argparse.Namespace) -> dict:
    """Train/test texts and labels of `name` and where they came from.

    SST-2: the full train (6,920) and test (1,821) splits. IMDB: `--imdb-train` / `--imdb-test` reviews sampled
    with numpy seed `--subset-seed` (the files are sorted by label, so a head slice would be one class).

    Args:
        name: `"sst2"` or `"imdb"`.
        args: Parsed flags.
    """
    folder = args.data_dir / name
    if not (folder / "train.parquet").is_file():
        if not args.quick:
            raise FileNotFoundError(
                f"No {name} data at {folder}: pass --data-dir pointing at the shared Parquet folder "
                "(see ../shared/data/README.md), or --quick for a smoke run on generated texts."
            )
        logger.warning("No data at %s: --quick uses generated texts.", folder)
        words = (3, 20) if name == "sst2" else (20, 60)
        return {"source": "generated", "train": _generated(160, words, 1), "test": _generated(48, words, 2)}
    import pandas as pd

    def read(split: str, n: int | None) -> tuple[list[str], list[int]]:
        frame = pd.read_parquet(folder / f"{split}.parquet", columns=["text", "label"])
        if n is not None and n < len(frame):
            order = np.random.default_rng(args.subset_seed).permutation(len(frame))[:n]
            frame = frame.iloc[np.sort(order)]
        return frame.text.tolist(), frame.label.astype(int).tolist()

    if name == "imdb":
        sizes = (args.imdb_train, args.imdb_test)
    else:
        sizes = (160, 64) if args.quick else (None, None)
    sampled = f"; numpy seed {args.subset_seed}" if any(sizes) else ""
    source = f"{folder} (train {sizes[0] or 'all'}, test {sizes[1] or 'all'}{sampled})"
    return {"source": source, "train": read("train", sizes[0]), "test": read("test", sizes[1])}


def encode(name: str, args: argparse.Namespace) -> dict:
    """Train a WordPiece tokenizer on the data set's training texts and encode both splits (truncated)."""
    from datasets import Dataset

    from textgru.tokenization import train_tokenizer

    raw = load_dataset_texts(name, args)
    tokenizer = train_tokenizer(raw["train"][0], vocab_size=args.vocab_size, show_progress=False)
    splits = {}
    for split in ("train", "test"):
        texts, labels = raw[split]
        enc = tokenizer(texts, truncation=True, max_length=args.max_length)
        splits[split] = Dataset.from_dict(
            {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": labels,
                "length": [len(ids) for ids in enc["input_ids"]],
            }
        )
    lengths = splits["train"]["length"]
    info = {
        "source": raw["source"],
        "train_size": len(splits["train"]),
        "test_size": len(splits["test"]),
        "vocab_size": len(tokenizer),
        "train_tokens_mean": float(np.mean(lengths)),
        "train_truncated_fraction": float(np.mean(np.asarray(lengths) >= args.max_length)),
    }
    logger.info("%s: %s", name, info)
    return {"tokenizer": tokenizer, "splits": splits, "info": info}


# ---------------------------------------------------------------------------------------------------- training


def first_batch(dataset, tokenizer, n: int) -> dict:
    """The fixed probe batch (first `n` training examples) used for every gradient-norm measurement."""
    rows = [dataset[i] for i in range(min(n, len(dataset)))]
    batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
    batch["labels"] = torch.tensor([r["labels"] for r in rows])
    return dict(batch)


def _on(model, batch: dict) -> dict:
    """`batch` on the device of `model`."""
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in batch.items()}


def layer_grad_norms(model, batch: dict) -> list[float]:
    """‖∇‖ of each GRU block's parameters (norm, GRUs, projection, gate) on `batch`, dropout off.

    Eval mode makes the figure a property of the weights, not of a dropout draw; the model's mode and gradients
    are restored to what they were.
    """
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        model(**_on(model, batch)).loss.backward()
    norms = []
    for layer in model.textgru.layers:
        grads = [p.grad.detach().flatten() for p in layer.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()) if grads else 0.0)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return norms


def make_grad_callback(batch: dict, at_step: int, record: dict):
    """A `TrainerCallback` that measures `layer_grad_norms` on `batch` once `at_step` optimiser steps are done."""
    from transformers import TrainerCallback

    class GradNormAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == at_step:
                record["after"] = layer_grad_norms(model, batch)

    return GradNormAtStep()


@torch.no_grad()
def test_accuracy(model, dataset, tokenizer, batch_size: int = 128) -> float:
    """Accuracy on `dataset`, batched by length (the model packs padded batches under no_grad)."""
    model.eval()
    order = np.argsort(dataset["length"])
    correct = 0
    for start in range(0, len(order), batch_size):
        rows = [dataset[int(i)] for i in order[start : start + batch_size]]
        batch = tokenizer.pad([{"input_ids": r["input_ids"]} for r in rows], return_tensors="pt")
        batch = _on(model, {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})
        logits = model(**batch).logits
        correct += int((logits.argmax(-1).cpu() == torch.tensor([r["labels"] for r in rows])).sum())
    return correct / len(order)


def train_one(data: dict, dataset: str, depth: int, mode: str, seed: int, args: argparse.Namespace) -> dict:
    """Train and test one configuration; returns the run record written to the JSON."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    from textgru import TextGRUConfig, TextGRUForSequenceClassification

    residual, layer_norm = MODES[mode]
    tokenizer, splits = data["tokenizer"], data["splits"]
    set_seed(seed)
    config = TextGRUConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        embedding_size=args.embedding,
        hidden_size=args.hidden,
        num_hidden_layers=depth,
        residual=residual,
        layer_norm=layer_norm,
        embedding_dropout=args.dropout,
        hidden_dropout=args.dropout,
        classifier_dropout=args.dropout,
        attention_hidden_size=2 * args.hidden,
        num_labels=2,
    )
    model = TextGRUForSequenceClassification(config).to(args.device)
    probe = first_batch(splits["train"], tokenizer, args.batch_size)
    grads = {"init": layer_grad_norms(model, probe)}
    scratch = tempfile.TemporaryDirectory(prefix="textgru-ablation-")  # Trainer wants an output_dir; saves nothing
    training_args = TrainingArguments(
        output_dir=scratch.name,
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs[dataset],
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        weight_decay=0.0,
        logging_steps=20 if not args.quick else 2,
        logging_first_step=True,
        save_strategy="no",
        eval_strategy="no",
        train_sampling_strategy="group_by_length",
        use_cpu=args.device == "cpu",
        report_to="none",
        disable_tqdm=True,
        seed=seed,
        data_seed=seed,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[make_grad_callback(probe, args.grad_steps, grads)],
    )
    started = time.perf_counter()
    output = trainer.train()
    train_time = time.perf_counter() - started
    scratch.cleanup()
    started = time.perf_counter()
    accuracy = test_accuracy(model, splits["test"], tokenizer)
    curve = [
        {"step": e["step"], "loss": e["loss"], "grad_norm": e.get("grad_norm"), "lr": e.get("learning_rate")}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    losses = [e["loss"] for e in curve]
    return {
        "dataset": dataset,
        "depth": depth,
        "residual": mode,
        "config_residual": residual,
        "layer_norm": layer_norm,
        "seed": seed,
        "test_accuracy": accuracy,
        "train_time_s": round(train_time, 2),
        "test_time_s": round(time.perf_counter() - started, 2),
        "steps": output.global_step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_loss_mean": output.training_loss,
        "final_train_loss": float(np.mean(losses[-3:])) if losses else None,  # last 3 logged windows (60 steps)
        "grad_norm_first_layer_init": grads["init"][0],
        "grad_norm_first_layer_after": grads.get("after", [None])[0],
        "grad_norm_after_step": args.grad_steps if "after" in grads else None,
        "grad_norm_per_layer_init": grads["init"],
        "grad_norm_per_layer_after": grads.get("after"),
        "loss_curve": curve,
        "settings": settings(args, dataset),
    }


def settings(args: argparse.Namespace, dataset: str) -> dict:
    """The settings a run's result depends on (besides data set, depth, mode and seed): the resume key."""
    values = {k: getattr(args, k) for k in SETTING_KEYS}
    values["epochs"] = args.epochs[dataset]
    if dataset == "imdb":
        values.update(imdb_train=args.imdb_train, imdb_test=args.imdb_test, subset_seed=args.subset_seed)
    values["quick"] = args.quick
    if args.device != "cpu":  # other kernels, other numerics: not the same result as a CPU run
        values["device"] = args.device
    return values


# ---------------------------------------------------------------------------------------------------- report


def environment() -> dict:
    import transformers

    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), platform.processor())
    gpu = {}
    if torch.cuda.is_available():
        gpu = {
            "gpu": torch.cuda.get_device_name(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        }
    return {
        **gpu,
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch_num_threads": torch.get_num_threads(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"


def write_report(report: dict, out: Path) -> None:
    """Write `ablation.json`, `ablation.md` (accuracy and gradient tables) and the two plots."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "ablation.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out / "ablation.json")  # never leave a half-written JSON behind
    runs = report["runs"]
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    modes = [m for m in MODES if any(r["residual"] == m for r in runs)]
    lines = [
        "# Residual-depth ablation",
        "",
        "Flags of the latest invocation (each run's own settings are in ablation.json):"
        if "merged_from" not in report["meta"]
        else f"Merged from {len(report['meta']['merged_from'])} folders; the flags of the first one's first shard "
        "(each run's own settings are in ablation.json):",
    ]
    lines += ["", f"`{json.dumps(report['meta']['args'])}`", ""]
    for dataset in datasets:
        mine = [r for r in runs if r["dataset"] == dataset]
        depths = sorted({r["depth"] for r in mine})
        lines += [f"## {dataset}", "", "Test accuracy (%, mean ± std over seeds; `n` = seeds)", ""]
        lines += ["| depth | " + " | ".join(modes) + " |", "|---" * (len(modes) + 1) + "|"]
        for depth in depths:
            cells = []
            for mode in modes:
                acc = [r["test_accuracy"] for r in mine if r["depth"] == depth and r["residual"] == mode]
                cells.append(f"{_mean_std(acc)} (n={len(acc)})" if acc else "–")
            lines.append(f"| {depth} | " + " | ".join(cells) + " |")
        lines += [
            "",
            "First-layer gradient norm at init → after N steps; final train loss; train time (seed 0 or first)",
            "",
        ]
        lines += ["| depth | mode | ‖∇‖ init | ‖∇‖ after | final loss | train s |", "|---|---|---|---|---|---|"]
        for depth in depths:
            for mode in modes:
                run = next((r for r in mine if r["depth"] == depth and r["residual"] == mode), None)
                if run:
                    after = run["grad_norm_first_layer_after"]
                    lines.append(
                        f"| {depth} | {mode} | {run['grad_norm_first_layer_init']:.3g} | "
                        f"{'–' if after is None else f'{after:.3g}'} | {run['final_train_loss']:.3f} | "
                        f"{run['train_time_s']:.0f} |"
                    )
        lines.append("")
    (out / "ablation.md").write_text("\n".join(lines))
    test_sizes = {d: report["meta"]["data"].get(d, {}).get("test_size") for d in datasets}
    plot(runs, datasets, modes, out, test_sizes)


def plot(runs: list[dict], datasets: list[str], modes: list[str], out: Path, test_sizes: dict) -> None:
    """`accuracy_vs_depth.png` (a panel per data set, a line per mode) and `loss_curves.png` (deepest models).

    Error bars: the std over seeds where there are several, else the binomial standard error of one test
    accuracy, `sqrt(p (1 - p) / n_test)`, so a single seed's noise is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"none": "C3o-", "add": "C0s-", "gated": "C2^-", "none-noln": "C1v--"}
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        seeds = []  # seeds per plotted cell, for the error bars' label
        for mode in modes:
            mine = [r for r in runs if r["dataset"] == dataset and r["residual"] == mode]
            depths = sorted({r["depth"] for r in mine})
            if not depths:
                continue
            accs = [[100 * r["test_accuracy"] for r in mine if r["depth"] == d] for d in depths]
            seeds += [len(a) for a in accs]
            n_test = test_sizes.get(dataset) or 1
            errors = [np.std(a, ddof=1) if len(a) > 1 else np.sqrt(a[0] * (100 - a[0]) / n_test) for a in accs]
            ax.errorbar(
                depths,
                [np.mean(a) for a in accs],
                yerr=errors,
                fmt=styles[mode],
                label=mode,
                capsize=3,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["depth"] for r in runs}), [str(d) for d in sorted({r["depth"] for r in runs})])
        if min(seeds) > 1:
            bars = "±1 std over seeds"
        elif max(seeds) == 1:
            bars = "±1 binomial s.e."
        else:
            bars = "±1 std over seeds; one seed: binomial s.e."
        ax.set(title=f"{dataset} (error bars: {bars})", xlabel="stacked GRU layers")
        ax.set(ylabel="test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_depth.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        mine = [r for r in runs if r["dataset"] == dataset]
        deepest = max(r["depth"] for r in mine)
        for mode in modes:
            run = next((r for r in mine if (r["depth"], r["residual"], r["seed"]) == (deepest, mode, 0)), None)
            if run and run["loss_curve"]:
                curve = run["loss_curve"]
                ax.plot([e["step"] for e in curve], [e["loss"] for e in curve], styles[mode][:2] + "-", label=mode)
        ax.set(title=f"{dataset}, {deepest} layers (seed 0)", xlabel="step", ylabel="training loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curves.png", dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- main


def plan(args: argparse.Namespace) -> list[tuple[str, int, str, int]]:
    """Every (data set, depth, mode, seed) to run, in order: by seed, data set, depth, then mode."""
    runs = []
    for seed in args.seeds:
        for dataset in args.datasets:
            for depth in args.depths:
                for mode in args.residuals:
                    if mode.endswith("-noln") and depth not in args.noln_depths:
                        continue
                    runs.append((dataset, depth, mode, seed))
    return runs


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    return [_jsonable(v) for v in value] if isinstance(value, list) else value


def _key(run: dict) -> tuple:
    return run["dataset"], run["depth"], run["residual"], run["seed"], json.dumps(run["settings"], sort_keys=True)


def merge(report: dict, args: argparse.Namespace) -> dict:
    """Add the runs of the `--merge` folders to `report` (a run with the same key is kept once), then rebuild it."""
    seen = {_key(r) for r in report["runs"]}
    report["meta"]["merged_from"] = [str(folder) for folder in args.merge]
    for i, folder in enumerate(args.merge):
        other = json.loads((folder / "ablation.json").read_text())
        if i == 0 and not seen:  # a new report takes the first shard's flags and machine, not this merge call's
            report["meta"]["args"] = other["meta"]["args"]
            report["meta"]["environment"] = other["meta"].get("environment")
        for name, info in other["meta"].get("data", {}).items():
            report["meta"]["data"].setdefault(name, info)
        report["meta"].setdefault("merged_environments", []).append(other["meta"].get("environment"))
        new = [r for r in other["runs"] if _key(r) not in seen]
        seen.update(_key(r) for r in new)
        report["runs"].extend(new)
        logger.info("%s: %d runs added, %d already there", folder, len(new), len(other["runs"]) - len(new))
    for dataset in {r["dataset"] for r in report["runs"]}:  # the tables pool runs by data set, depth and mode
        found = {json.dumps(r["settings"], sort_keys=True) for r in report["runs"] if r["dataset"] == dataset}
        if len(found) > 1:
            raise ValueError(
                f"--merge: the {dataset} runs were made with different settings, which the tables would average "
                f"together: {sorted(found)}. Merge runs of one setting into each --out folder."
            )
    report["runs"].sort(key=lambda r: (r["seed"], r["dataset"], r["depth"], list(MODES).index(r["residual"])))
    if report["runs"]:
        write_report(report, args.out)
    return report


def main(argv: list[str] | None = None) -> dict:
    """Run the ablation (skipping runs already in `<out>/ablation.json`) and write the report.

    Args:
        argv: Command-line arguments (see `parse_args`).

    Returns:
        The report written to `ablation.json`.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("transformers").setLevel(logging.WARNING)
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    path = args.out / "ablation.json"
    report = json.loads(path.read_text()) if path.is_file() else {"meta": {}, "runs": []}
    report["meta"].setdefault("data", {})
    if args.merge:  # the report keeps its own flags and machine (or takes the first shard's): see merge()
        return merge(report, args)
    report["meta"].update(
        args={k: _jsonable(v) for k, v in vars(args).items()},
        environment=environment(),
    )
    todo = [
        job
        for job in plan(args)
        if not any(
            (r["dataset"], r["depth"], r["residual"], r["seed"]) == job and r["settings"] == settings(args, job[0])
            for r in report["runs"]
        )
    ]
    logger.info("%d runs to do (%d already in %s)", len(todo), len(plan(args)) - len(todo), path)
    encoded = {}
    for i, (dataset, depth, mode, seed) in enumerate(todo, 1):
        if dataset not in encoded:
            encoded[dataset] = encode(dataset, args)
            report["meta"]["data"][dataset] = encoded[dataset]["info"]
        run = train_one(encoded[dataset], dataset, depth, mode, seed, args)
        report["runs"].append(run)
        write_report(report, args.out)
        logger.info(
            "[%d/%d] %s depth=%d %s seed=%d: acc %.4f, loss %.3f, |g1| %.3g -> %s, %.0f s",
            i,
            len(todo),
            dataset,
            depth,
            mode,
            seed,
            run["test_accuracy"],
            run["final_train_loss"],
            run["grad_norm_first_layer_init"],
            run["grad_norm_first_layer_after"],
            run["train_time_s"],
        )
    if report["runs"]:
        write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
