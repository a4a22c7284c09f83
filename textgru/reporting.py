"""What a recipe leaves in its output folder besides the model: predictions, plots, results, the model card.

`run_recipe` calls these after training; `format_results_table` is what the recipe scripts print at the end.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .evaluation import predictions_from_logits
from .labels import LabelInfo


def write_predictions(path: Path, raw_split, text_columns, logits: np.ndarray, labels: LabelInfo) -> None:
    """One JSON line per row of `raw_split`: its text column(s), the true label, the prediction (and a score)."""
    preds = predictions_from_logits(logits, labels.problem_type)
    with path.open("w") as f:
        for i, row in enumerate(raw_split):
            record = {c: row[c] for c in text_columns}
            if labels.problem_type == "single_label_classification":
                record["label"] = labels.label_names[row["labels"]]
                record["prediction"] = labels.label_names[int(preds[i])]
                probs = np.exp(logits[i] - logits[i].max())
                record["score"] = float(probs.max() / probs.sum())
            elif labels.problem_type == "multi_label_classification":
                record["label"] = [n for n, v in zip(labels.label_names, row["labels"]) if v]
                record["prediction"] = [n for n, v in zip(labels.label_names, preds[i]) if v]
            else:
                record["label"] = row["labels"]
                record["prediction"] = float(np.asarray(logits[i]).reshape(-1)[0])
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def plot_curves(output_dir: Path, log_history: list[dict]) -> list[str]:
    """Draw training_curves.png from the Trainer log; returns the file names drawn (none without a loss)."""
    from .plots import plot_training_curves

    if not any("loss" in entry for entry in log_history):
        return []
    plot_training_curves(log_history, output_dir / "training_curves.png")
    return ["training_curves.png"]


def plot_confusion(output_dir: Path, y_true, logits: np.ndarray, labels: LabelInfo) -> None:
    """Draw confusion_matrix.png of `logits` against `y_true` (single-label classification)."""
    from .plots import plot_confusion_matrix

    preds = predictions_from_logits(logits, labels.problem_type)
    plot_confusion_matrix(list(y_true), list(preds), labels.label_names, output_dir / "confusion_matrix.png")


def save_results(output_dir: Path, results: dict, model_args, data_args, seconds: float) -> None:
    """Write all_results.json: the metrics per split, wall time, the recipe arguments and the thread setting."""
    payload = {
        "results": results,
        "wall_time_s": seconds,
        "model_args": asdict(model_args),
        "data_args": asdict(data_args),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
    (output_dir / "all_results.json").write_text(json.dumps(payload, indent=2, default=str))


def write_card(output_dir, model, labels, model_args, data_args, training_args, results, plots, task, n_params):
    """Write the model card (README.md) of a recipe run through `textgru.model_card.write_model_card`."""
    from .model_card import write_model_card

    hyper = {
        **model_args.architecture(),
        "learning_rate": training_args.learning_rate,
        "batch_size": training_args.per_device_train_batch_size * training_args.world_size,
        "epochs": training_args.num_train_epochs,
        "max_seq_length": model_args.max_seq_length,
        "seed": training_args.seed,
    }
    eval_results = {split: metrics for split, metrics in results.items() if split != "train"}
    dataset = data_args.dataset_name or (Path(data_args.train_file).parent.name if data_args.train_file else None)
    write_model_card(
        output_dir,
        model_name=Path(training_args.output_dir).name,
        config=model.config,
        label_names=labels.label_names or [data_args.label_column_name],  # regression: the predicted column
        problem_type=labels.problem_type,
        dataset_name=dataset,
        dataset_description=f"{task}: {data_args.dataset_name or data_args.train_file}",
        hyperparameters=hyper,
        eval_results=eval_results,
        text_columns=data_args.text_columns,
        base_tokenizer=model_args.tokenizer_name,
        plots=plots,
        repo_id=training_args.hub_model_id,
        training_time_s=results.get("train", {}).get("train_runtime"),
        extra_notes=None,
        num_parameters=n_params,
    )


def format_results_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of the evaluation metrics per split (what the recipes print at the end)."""
    splits = [s for s in ("validation", "test") if s in results]
    keys = sorted(
        {k.split("_", 1)[1] for s in splits for k in results[s] if not k.endswith(("runtime", "per_second"))}
    )
    lines = ["| metric | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for key in keys:
        cells = []
        for s in splits:
            value = results[s].get(f"{s}_{key}")
            cells.append("–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "format_results_table",
    "plot_confusion",
    "plot_curves",
    "save_results",
    "write_card",
    "write_predictions",
]
