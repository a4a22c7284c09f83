"""Markdown tables and a bar plot from the JSON report of benchmarks/speed.py."""

from __future__ import annotations

import json
from pathlib import Path

DATASETS = ("sst2", "imdb")


def write_json(path: Path | None, data: dict) -> None:
    """Write `data` as indented JSON to `path` (its folder created), or nothing when `path` is None: the scripts'
    `--json` option."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) < 1e5 else f"{value:,.0f}"
    return f"{value:,}"


def _load(values) -> str:
    return ", ".join(f"{v:.2f}" for v in values) if values else "–"


def _tput_key(report: dict) -> str:
    return f"throughput_b{report['meta']['args']['batch_size']}"


def markdown(report: dict) -> str:
    """The report as markdown: environment, inference table, ratios, training table."""
    meta, env = report["meta"], report["meta"]["environment"]
    args, data = meta["args"], meta["data"]
    tput = _tput_key(report)
    batch = args["batch_size"]
    lines = [
        "# CPU speed: TextGRU vs baselines",
        "",
        f"- CPU: {env['cpu_model']} ({env['logical_cpus']} logical CPUs); threads: torch {env['torch_num_threads']}, "
        f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}, onnxruntime intra-op {env['onnxruntime_intra_op_threads']}"
        + ("; flush-to-zero on (--flush-denormal)" if env.get("flush_denormal") else ""),
        f"- load average (1, 5, 15 min) at start / end: {_load(env['load_average_start'])} / "
        f"{_load(env.get('load_average_end'))}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in env['versions'].items() if v)}",
        f"- data: {data['source']}; "
        + "; ".join(
            f"{name}: {info['texts']} texts, mean {info['tokens_mean']:.0f} tokens (max {info['tokens_max']})"
            for name, info in data["inputs"].items()
        )
        + f"; documents truncated at {data['max_tokens']} tokens for every model",
        f"- {args['repeats']} interleaved repeats (medians shown); each batched-throughput figure of a repeat is the "
        f"median pass over at least {args.get('min_seconds') or 0:g} s; quick mode: {args['quick']}; "
        f"total {meta['seconds_total']:.0f} s",
        "",
        "## Inference",
        "",
        f"| contender | params | disk MB | peak RSS MB | batch-1 ms/text SST-2 | batch-1 ms/text IMDB | "
        f"batch-{batch} texts/s SST-2 | batch-{batch} texts/s IMDB | batch-{batch} texts/s SST-2, length-sorted | "
        f"batch-{batch} texts/s IMDB, length-sorted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in report["contenders"].items():
        memory = c.get("memory", {})
        params = f"{c['parameters'] / 1e6:.1f}M" if c.get("parameters") else "–"
        lines.append(
            f"| {name} | {params} | {_fmt(c['disk_mb'])} | {_fmt(memory.get('peak_rss_mb'), 0)} | "
            + " | ".join(_fmt(c["latency_b1_ms"][d]["median"], 2) for d in DATASETS)
            + " | "
            + " | ".join(_fmt(c[tput][d]["median"], 0) for d in DATASETS)
            + " | "
            + " | ".join(_fmt(c.get(f"{tput}_sorted", {}).get(d, {}).get("median"), 0) for d in DATASETS)
            + " |"
        )
    for name, reason in report.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {reason} | | | | | | | | |")
    for ref_key, ratios in report.get("ratios", {}).items():
        reference = ref_key.removeprefix("vs_")
        lines += [
            "",
            f"Speed-up vs {reference} (>1 = faster than {reference}; same run):",
            "",
            f"| contender | batch-1 SST-2 | batch-1 IMDB | batch-{batch} SST-2 | batch-{batch} IMDB | "
            f"batch-{batch} SST-2, sorted | batch-{batch} IMDB, sorted |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        sorted_ratios = report.get("ratios_length_sorted", {}).get(ref_key, {})
        for name, r in ratios.items():
            cells = [r[f"latency_b1_{d}"] for d in DATASETS] + [r[f"{tput}_{d}"] for d in DATASETS]
            cells += [sorted_ratios.get(name, {}).get(f"{tput}_sorted_{d}", float("nan")) for d in DATASETS]
            lines.append(f"| {name} | " + " | ".join(f"{x:.2f}x" for x in cells) + " |")
    lines += ["", "Contenders:", ""]
    lines += [f"- **{name}**: {c['description']}" for name, c in report["contenders"].items()]
    training = report.get("training")
    if training:
        lines += [
            "",
            "## Training throughput (equal width and depth)",
            "",
            f"Matmul peak (fp32, 2048x2048, 1 thread): {training['matmul_peak_gflops_1_thread']:.1f} GFLOP/s. "
            f"Optimiser: {training.get('sst2', training.get('imdb', {})).get('optimizer', 'AdamW')}. Each model: "
            f"{training.get('sst2', training.get('imdb', {})).get('repeats', 1)} interleaved repeats of the steps "
            "below; medians over repeats; the ratio is the median of the per-repeat ratios (all of them in brackets).",
            "",
            "| data | model | batches | real tokens/s | padded tokens/s | padding | step s (median) | "
            "GFLOP/s executed | % of matmul peak |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for dataset in DATASETS:
            if dataset not in training:
                continue
            rows = (("textgru", "length-grouped"), ("textgru-nn-gru", "length-grouped"), ("plain-bigru", "random"))
            for model, batching in rows:
                if model not in training[dataset]:
                    continue
                r = training[dataset][model]
                lines.append(
                    f"| {dataset} | {model} | {batching}, {r['batch_size']} x {r['steps']} | "
                    f"{_fmt(r['real_tokens_per_s'], 0)} | {_fmt(r['padded_tokens_per_s'], 0)} | "
                    f"{r['padding_fraction']:.0%} | {r['step_seconds_median']:.3f} | "
                    f"{r['gflops_per_s_executed']:.1f} | {r['fraction_of_matmul_peak']:.0%} |"
                )
            ratio = training[dataset]["textgru_vs_plain_real_tokens_per_s"]
            each = training[dataset].get("textgru_vs_plain_real_tokens_per_s_repeats", [ratio])
            spread = ", ".join(f"{x:.2f}" for x in each)
            lines.append(f"| {dataset} | **textgru / plain** | | **{ratio:.2f}x** ({spread}) | | | | | |")
            if "stepwise_vs_nn_gru_real_tokens_per_s" in training[dataset]:
                gain = training[dataset]["stepwise_vs_nn_gru_real_tokens_per_s"]
                each = training[dataset]["stepwise_vs_nn_gru_real_tokens_per_s_repeats"]
                spread = ", ".join(f"{x:.2f}" for x in each)
                lines.append(f"| {dataset} | textgru / textgru-nn-gru | | {gain:.2f}x ({spread}) | | | | | |")
    lines += targets_section(report)
    return "\n".join(lines) + "\n"


# Issue 4's targets, as ratios of the same run: (label, threshold, where to read each contender's figure)
TARGETS = {
    "b64_vs_distilbert": 25.0,
    "b1_vs_distilbert_sst2": 12.0,
    "b1_vs_distilbert_imdb": 8.0,
    "training_vs_plain": 2.0,
    "fast_path_vs_eager_b64_sst2": 2.0,
}


def targets_section(report: dict) -> list[str]:
    """A table of issue 4's targets against this run's ratios (rows whose contenders did not run are left out)."""
    ratios, tput = report.get("ratios", {}), _tput_key(report)
    vs_bert, vs_eager = ratios.get("vs_distilbert", {}), ratios.get("vs_textgru", {})
    sorted_vs_eager = report.get("ratios_length_sorted", {}).get("vs_textgru", {})
    rows = []

    def row(target: str, threshold: float, measured: dict[str, float]) -> None:
        if not measured:
            return
        cells = ", ".join(f"{name} {value:.2f}x" for name, value in measured.items())
        met = [name for name, value in measured.items() if value >= threshold]
        rows.append(f"| {target} | ≥ {threshold:g}x | {cells} | {', '.join(met) if met else 'none'} |")

    fast = [n for n in ("textgru-onnx", "textgru-onnx-int8", "textgru-native-int8", "textgru-int8") if n in vs_eager]
    with_eager = ["textgru", *fast]
    for d, name in (("sst2", "sentences"), ("imdb", "reviews")):
        row(
            f"batch-{report['meta']['args']['batch_size']} throughput vs DistilBERT-size, {name}",
            TARGETS["b64_vs_distilbert"],
            {n: vs_bert[n][f"{tput}_{d}"] for n in with_eager if n in vs_bert},
        )
    for d, name in (("sst2", "sentences"), ("imdb", "reviews")):
        row(
            f"batch-1 latency vs DistilBERT-size (lower by), {name}",
            TARGETS[f"b1_vs_distilbert_{d}"],
            {n: vs_bert[n][f"latency_b1_{d}"] for n in with_eager if n in vs_bert},
        )
    training = report.get("training") or {}
    row(
        "training real tokens/s vs plain padded BiGRU (equal width, depth)",
        TARGETS["training_vs_plain"],
        {d: training[d]["textgru_vs_plain_real_tokens_per_s"] for d in DATASETS if d in training},
    )
    row(
        "fast path vs eager TextGRU, batch of sentences (input order)",
        TARGETS["fast_path_vs_eager_b64_sst2"],
        {n: vs_eager[n][f"{tput}_sst2"] for n in fast},
    )
    row(
        "fast path vs eager TextGRU, batch of sentences (length-sorted, as predict() batches)",
        TARGETS["fast_path_vs_eager_b64_sst2"],
        {n: sorted_vs_eager[n][f"{tput}_sorted_sst2"] for n in fast if n in sorted_vs_eager},
    )
    if not rows:
        return []
    return [
        "",
        "## Targets (issue 4; ratios from this run)",
        "",
        "| target | threshold | measured | met by |",
        "|---|---|---|---|",
        *rows,
    ]


def plot(report: dict, path: Path) -> None:
    """Log-scale bars: batch-1 latency and batched throughput per data set (and training tokens/s)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tput = _tput_key(report)
    names = list(report["contenders"])
    training = report.get("training")
    panels = 3 if training else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.2))
    width = 0.38
    for ax, (key, title, unit) in zip(
        axes,
        (
            ("latency_b1_ms", "batch-1 latency (lower is better)", "ms per text"),
            (tput, f"batch-{report['meta']['args']['batch_size']} throughput (higher is better)", "texts / s"),
        ),
    ):
        for offset, dataset in zip((-width / 2, width / 2), DATASETS):
            values = [report["contenders"][n][key][dataset]["median"] for n in names]
            ax.bar([i + offset for i in range(len(names))], values, width, label=dataset)
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)
    if training:
        ax = axes[2]
        models = ("textgru", "plain-bigru")
        for offset, dataset in zip((-width / 2, width / 2), DATASETS):
            if dataset in training:
                values = [training[dataset][m]["real_tokens_per_s"] for m in models]
                ax.bar([i + offset for i in range(len(models))], values, width, label=dataset)
        ax.set_xticks(range(len(models)), ["textgru\n(length-grouped)", "plain BiGRU\n(random batches)"], fontsize=8)
        ax.set_title("training throughput (higher is better)", fontsize=10)
        ax.set_ylabel("real tokens / s")
        ax.legend(fontsize=8)
    env = report["meta"]["environment"]
    fig.suptitle(f"{env['cpu_model']}, {env['torch_num_threads']} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
