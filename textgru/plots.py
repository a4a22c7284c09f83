"""Training curves and confusion matrices as PNG files, for the model card.

matplotlib is imported inside the functions (it costs ~0.5 s) and drawn through `matplotlib.figure.Figure` with the
Agg canvas, never through `pyplot`: no display is needed, no global figure state is touched, and the functions are
safe to call from a training script on a headless server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# Eval metrics tried, in order, as the "primary" curve when the caller names none.
_PREFERRED_EVAL_METRICS = ("eval_accuracy", "eval_f1_micro", "eval_f1_macro", "eval_mse", "eval_pearson")
_EVAL_BOOKKEEPING = ("eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch")
_MAX_ANNOTATED_CLASSES = 20  # beyond this, cell numbers become unreadable: the colour alone tells the story


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"Plots are written as PNG; give a path ending in .png, not {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    logger.info("Wrote %s", path)
    return path


def _pick_eval_metric(eval_logs: list[dict[str, Any]], metric: str | None) -> str | None:
    if metric is not None:
        key = metric if metric.startswith("eval_") else f"eval_{metric}"
        if not any(key in entry for entry in eval_logs):
            raise ValueError(f"Metric {key!r} is in no evaluation entry of the log history; check its name.")
        return key
    keys = [k for entry in eval_logs for k in entry if k.startswith("eval_") and k not in _EVAL_BOOKKEEPING]
    for preferred in _PREFERRED_EVAL_METRICS:
        if preferred in keys:
            return preferred
    return keys[0] if keys else None


def plot_training_curves(log_history: list[dict[str, Any]], path: str | Path, metric: str | None = None) -> Path:
    """Plot training loss, evaluation loss and one evaluation metric against the optimisation step.

    Args:
        log_history: `trainer.state.log_history`: entries with `loss` (training), `eval_*` (evaluation) and `step`.
            Entries without a step or a value are skipped; evaluation panels appear only when there are
            evaluation entries.
        path: where to write the PNG (parent folders are created).
        metric: the evaluation metric to draw (`"accuracy"` or `"eval_accuracy"`); by default the first of
            accuracy, f1_micro, f1_macro, mse, pearson found, else any other `eval_*` value.

    Returns:
        The path of the written PNG.

    Raises:
        ValueError: when the history holds neither a training loss nor an evaluation entry (e.g. training ran
            fewer steps than `logging_steps`); nothing is written then.
    """
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    eval_logs = [e for e in log_history if "step" in e and any(k.startswith("eval_") for k in e)]
    if not train and not eval_logs:
        raise ValueError(
            "The log history has no training loss and no evaluation entry to plot; train for at least "
            "`logging_steps` steps (or set `eval_strategy`) before plotting."
        )
    eval_loss = [(e["step"], e["eval_loss"]) for e in eval_logs if "eval_loss" in e]
    metric_key = _pick_eval_metric(eval_logs, metric) if eval_logs else None
    metric_points = [(e["step"], e[metric_key]) for e in eval_logs if metric_key in e] if metric_key else []

    panels = 2 if metric_points else 1
    figure = _new_figure(6.0 * panels, 4.0)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    loss_axis = axes[0]
    if train:
        steps, values = zip(*train)
        loss_axis.plot(steps, values, label="train loss", color="tab:blue", linewidth=1.2)
    if eval_loss:
        steps, values = zip(*eval_loss)
        loss_axis.plot(steps, values, label="eval loss", color="tab:orange", marker="o", markersize=3)
    loss_axis.set(xlabel="step", ylabel="loss", title="Loss")
    loss_axis.grid(alpha=0.3)
    loss_axis.legend()
    if metric_points:
        name = metric_key.removeprefix("eval_")
        steps, values = zip(*metric_points)
        metric_axis = axes[1]
        metric_axis.plot(steps, values, color="tab:green", marker="o", markersize=3)
        metric_axis.set(xlabel="step", ylabel=name, title=f"Evaluation {name}")
        metric_axis.grid(alpha=0.3)
    return _save(figure, path)


def confusion_counts(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """Count (true class, predicted class) pairs.

    Args:
        y_true: true class ids.
        y_pred: predicted class ids, same length.
        num_classes: number of classes; ids must lie in `[0, num_classes)`.

    Returns:
        An int64 `(num_classes, num_classes)` matrix: row = true class, column = predicted class.

    >>> confusion_counts([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length ({y_true.size} vs {y_pred.size}).")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(
            f"Class ids must lie in [0, {num_classes}); drop ignored examples (-100) and pass every label name."
        )
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


def _short(name: str, limit: int = 24) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def plot_confusion_matrix(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    label_names: Sequence[str],
    path: str | Path,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted class) as a PNG.

    The figure grows with the number of classes and stays readable up to ~52: cell values are printed only for
    up to 20 classes, tick labels shrink and long label names are shortened.

    Args:
        y_true: true class ids.
        y_pred: predicted class ids.
        label_names: one name per class id (`config.id2label` in id order).
        path: where to write the PNG.
        normalize: colour (and print) each row as fractions of the true class (its recall on the diagonal);
            a class without examples gets an all-zero row. `False` shows raw counts.
        title: figure title; by default "Confusion matrix" with the number of examples.

    Returns:
        The path of the written PNG. `confusion_counts` gives the underlying counts.
    """
    num_classes = len(label_names)
    if num_classes == 0:
        raise ValueError("label_names is empty; pass one name per class id.")
    counts = confusion_counts(y_true, y_pred, num_classes)
    if normalize:
        support = counts.sum(1, keepdims=True)
        values = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0)
    else:
        values = counts.astype(np.float64)

    side = min(max(4.5, 0.32 * num_classes + 2.5), 22.0)
    figure = _new_figure(side + 1.0, side)
    axis = figure.subplots()
    image = axis.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(values.max(), 1.0))
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of true class" if normalize else "count")
    font_size = 9 if num_classes <= 12 else 8 if num_classes <= 24 else 7
    names = [_short(str(name)) for name in label_names]
    axis.set_xticks(range(num_classes), names, rotation=90 if num_classes > 6 else 0, fontsize=font_size)
    axis.set_yticks(range(num_classes), names, fontsize=font_size)
    axis.set(xlabel="predicted", ylabel="true")
    axis.set_title(title or f"Confusion matrix ({int(counts.sum())} examples)")
    if num_classes <= _MAX_ANNOTATED_CLASSES:
        threshold = values.max() / 2 if values.max() > 0 else 1.0
        for row in range(num_classes):
            for column in range(num_classes):
                text = f"{values[row, column]:.2f}" if normalize else str(counts[row, column])
                colour = "white" if values[row, column] > threshold else "black"
                axis.text(column, row, text, ha="center", va="center", color=colour, fontsize=font_size - 1)
    return _save(figure, path)


__all__ = ["plot_training_curves", "plot_confusion_matrix", "confusion_counts"]
