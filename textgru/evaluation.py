"""Metrics for training and evaluation, through `evaluate` and fully offline.

The `evaluate` wheel ships no metric code (`evaluate.load("accuracy")` needs the Hub), so textgru ships its own
`evaluate.Metric` modules under `textgru/metrics/` (one folder per problem type, holding a same-named script) and loads
them from the installed package path. This module maps the three `config.problem_type`s of transformers to those
modules, turns logits into predictions, and builds the `compute_metrics` callable that `Trainer` expects.

>>> from textgru.evaluation import build_compute_metrics, best_model_kwargs
>>> compute_metrics = build_compute_metrics("single_label_classification", num_labels=3)  # doctest: +SKIP
>>> best_model_kwargs("regression")
{'metric_for_best_model': 'mse', 'greater_is_better': False}
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)

_METRICS_ROOT = Path(__file__).resolve().parent / "metrics"
METRIC_DIRS: dict[str, Path] = {
    SINGLE_LABEL: _METRICS_ROOT / "textgru_classification",
    MULTI_LABEL: _METRICS_ROOT / "textgru_multilabel",
    REGRESSION: _METRICS_ROOT / "textgru_regression",
}
"""Folder of the shipped `evaluate` module for each problem type (each holds a same-named `.py`)."""

_PRIMARY_METRICS = {SINGLE_LABEL: "accuracy", MULTI_LABEL: "f1_micro", REGRESSION: "mse"}
_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "hamming_loss")


def _check_problem_type(problem_type: str) -> str:
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"Unknown problem_type {problem_type!r}; use one of {list(PROBLEM_TYPES)} (transformers' "
            "`config.problem_type` names)."
        )
    return problem_type


def load_metric(problem_type: str, **kwargs: Any):
    """Load textgru's `evaluate` module for a problem type from the installed package; never touches the network.

    Args:
        problem_type: `"single_label_classification"`, `"multi_label_classification"` or `"regression"`.
        **kwargs: passed to `evaluate.load` (e.g. `experiment_id`). `keep_in_memory` defaults to `True`, so no cache
            files are written and parallel processes cannot collide on them.

    Returns:
        An `evaluate.EvaluationModule`. A fresh one is falsy (it defines `__len__`): test it with `is not None`.
    """
    import evaluate  # heavy import (~2 s), only paid by those who compute metrics

    folder = METRIC_DIRS[_check_problem_type(problem_type)]
    script = folder / f"{folder.name}.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"textgru's metric script {script} is missing; reinstall textgru (`pip install -e .`) so that its "
            "package data (`textgru/metrics/*/*.py`) is installed."
        )
    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(folder), **kwargs)


def primary_metric(problem_type: str) -> str:
    """The metric that ranks checkpoints: `accuracy`, `f1_micro` (multi-label) or `mse` (regression, lower is better).

    Args:
        problem_type: one of `PROBLEM_TYPES`.
    """
    return _PRIMARY_METRICS[_check_problem_type(problem_type)]


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better (False for losses and errors).

    Args:
        metric: a metric name, with or without the `eval_`/`test_` prefix that `Trainer` adds.
    """
    name = metric.split("_", 1)[1] if metric.startswith(("eval_", "test_", "predict_")) else metric
    return not name.endswith(_LOWER_IS_BETTER)


def best_model_kwargs(problem_type: str) -> dict[str, Any]:
    """`TrainingArguments` settings that keep the best checkpoint by the primary metric.

    Args:
        problem_type: one of `PROBLEM_TYPES`.

    Returns:
        `{"metric_for_best_model": ..., "greater_is_better": ...}`.
    """
    metric = primary_metric(problem_type)
    return {"metric_for_best_model": metric, "greater_is_better": greater_is_better(metric)}


def _first(array_or_tuple: Any) -> np.ndarray:
    """Trainer hands a tuple when the model returns extra outputs (hidden states, attentions): logits come first."""
    while isinstance(array_or_tuple, tuple) and array_or_tuple and not np.isscalar(array_or_tuple[0]):
        array_or_tuple = array_or_tuple[0]
    if hasattr(array_or_tuple, "detach"):  # a torch tensor
        array_or_tuple = array_or_tuple.detach().float().cpu().numpy()
    return np.asarray(array_or_tuple)


def predictions_from_logits(logits: Any, problem_type: str, threshold: float = 0.5) -> np.ndarray:
    """Turn model outputs into what the metrics compare with the labels.

    Args:
        logits: `(examples, num_labels)` scores (numpy, torch or a tuple whose first element holds them).
        problem_type: one of `PROBLEM_TYPES`.
        threshold: multi-label only; a label is on when `sigmoid(logit) > threshold`.

    Returns:
        Class ids `(examples,)` for single-label (argmax), 0/1 ints `(examples, num_labels)` for multi-label, and
        floats `(examples,)` for regression (`(examples, targets)` with several targets).
    """
    _check_problem_type(problem_type)
    logits = _first(logits)
    if problem_type == REGRESSION:
        return logits.astype(np.float64).squeeze(-1) if logits.ndim > 1 and logits.shape[-1] == 1 else logits
    if logits.ndim != 2:
        raise ValueError(f"Expected logits of shape (examples, num_labels), got {logits.shape}.")
    if problem_type == SINGLE_LABEL:
        return logits.argmax(-1)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold={threshold!r} must lie strictly between 0 and 1 (it is a sigmoid probability).")
    from scipy.special import expit  # overflow-free sigmoid

    return (expit(logits.astype(np.float64)) > threshold).astype(np.int64)


def build_compute_metrics(
    problem_type: str, *, num_labels: int, threshold: float = 0.5
) -> Callable[[Any], dict[str, float]]:
    """Build the `compute_metrics` callable for `transformers.Trainer`.

    Args:
        problem_type: one of `PROBLEM_TYPES` (use the model's `config.problem_type`).
        num_labels: number of classes (single-label; classes never seen still count in macro averages), labels
            (multi-label) or targets (regression).
        threshold: multi-label decision threshold on `sigmoid(logits)`.

    Returns:
        A function of an `EvalPrediction` (or a `(predictions, label_ids)` pair) that returns a dict of floats.
        Single-label examples whose label is `-100` (ignored by the loss) are left out of the metrics.
    """
    _check_problem_type(problem_type)
    if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels={num_labels!r} must be a positive integer (the model's `config.num_labels`).")
    metric = load_metric(problem_type)

    def compute_metrics(eval_prediction: Any) -> dict[str, float]:
        if hasattr(eval_prediction, "predictions"):
            raw_predictions, raw_labels = eval_prediction.predictions, eval_prediction.label_ids
        else:
            raw_predictions, raw_labels = eval_prediction
        if raw_labels is None:
            raise ValueError("compute_metrics got no labels; the evaluation set needs a `labels` column.")
        predictions = predictions_from_logits(raw_predictions, problem_type, threshold)
        references = _first(raw_labels)
        if problem_type == SINGLE_LABEL:
            references = references.reshape(-1).astype(np.int64)
            keep = references != -100
            if not keep.all():
                logger.debug("Leaving %d examples labelled -100 out of the metrics.", int((~keep).sum()))
            return metric.compute(predictions=predictions[keep], references=references[keep], num_labels=num_labels)
        if problem_type == MULTI_LABEL:
            if predictions.shape[-1] != num_labels or references.shape != predictions.shape:
                raise ValueError(
                    f"Multi-label metrics need logits and labels of shape (examples, num_labels={num_labels}); got "
                    f"{predictions.shape} and {references.shape}."
                )
            return metric.compute(predictions=predictions, references=np.rint(references).astype(np.int64))
        references = references.astype(np.float64)
        if references.ndim > 1 and references.shape[-1] == 1:
            references = references.squeeze(-1)
        return metric.compute(predictions=predictions, references=references)

    return compute_metrics


__all__ = [
    "PROBLEM_TYPES",
    "METRIC_DIRS",
    "load_metric",
    "primary_metric",
    "greater_is_better",
    "best_model_kwargs",
    "predictions_from_logits",
    "build_compute_metrics",
]
