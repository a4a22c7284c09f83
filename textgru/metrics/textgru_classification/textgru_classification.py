"""Single-label classification metrics for textgru, as an offline `evaluate` module.

Load it with `evaluate.load("/abs/path/to/textgru_classification")` or `textgru.evaluation.load_metric(
"single_label_classification")`. The file is self-contained (numpy only) because `evaluate` copies it into its
module cache before importing it.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy, precision / recall / F1 (macro, micro and support-weighted F1) and the multi-class Matthews correlation
coefficient for single-label classification, computed from one confusion matrix.

Zero division: a class that is never predicted has precision 0, a class that never occurs has recall 0, and a class
with neither has F1 0 (scikit-learn's `zero_division=0`). Pass `num_labels` (or `labels`) so that classes absent
from both predictions and references still count, as zeros, in the macro averages; without them the classes are
those seen in `predictions` or `references`. The Matthews correlation is 0 when it is undefined (one class only).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_labels (`int`, *optional*): the classes are `0 .. num_labels - 1`; ids outside that range raise
        `ValueError`.
    labels (`list[int]`, *optional*): the classes averaged over (as scikit-learn's `labels`); overrides
        `num_labels`. Micro averages then count only these classes.

Returns:
    accuracy, precision_macro, recall_macro, f1_macro, precision_micro, recall_micro, f1_micro, f1_weighted,
    matthews_correlation: floats.

Examples:
    >>> metric = evaluate.load("textgru_classification")  # doctest: +SKIP
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=3)["accuracy"]  # doctest: +SKIP
    0.6666666666666666
"""

_CITATION = """\
@article{matthews1975,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405}, number={2}, pages={442--451}, year={1975}
}
"""


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise division that gives 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def _matthews(confusion: np.ndarray) -> float:
    """Multi-class MCC (Gorodkin 2004) from a confusion matrix (rows = truth); 0 when undefined."""
    confusion = confusion.astype(np.float64)
    true_counts = confusion.sum(1)
    pred_counts = confusion.sum(0)
    correct = np.trace(confusion)
    total = confusion.sum()
    cov_true_pred = correct * total - true_counts @ pred_counts
    cov_pred_pred = total**2 - pred_counts @ pred_counts
    cov_true_true = total**2 - true_counts @ true_counts
    denominator = np.sqrt(cov_pred_pred * cov_true_true)
    return float(cov_true_pred / denominator) if denominator > 0 else 0.0


class TextgruClassification(evaluate.Metric):
    """Accuracy, precision/recall/F1 (macro, micro, weighted F1) and multi-class MCC."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            format="numpy",
        )

    def _compute(self, predictions, references, num_labels=None, labels=None):
        predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
        references = np.asarray(references, dtype=np.int64).reshape(-1)
        if predictions.size == 0:
            raise ValueError("textgru_classification: no predictions to score; pass at least one example.")
        if predictions.min() < 0 or references.min() < 0:
            raise ValueError(
                "textgru_classification: class ids must be >= 0; drop ignored examples (label -100) before "
                "computing metrics."
            )
        observed = np.union1d(predictions, references)
        if labels is not None:
            classes = np.unique(np.asarray(labels, dtype=np.int64).reshape(-1))
            if classes.size == 0 or classes.min() < 0:
                raise ValueError(f"textgru_classification: `labels={labels!r}` must be a non-empty list of ids >= 0.")
        elif num_labels is not None:
            if observed.max() >= num_labels:
                raise ValueError(
                    f"textgru_classification: class id {int(observed.max())} is out of range for "
                    f"num_labels={num_labels}; pass the model's `num_labels`."
                )
            classes = np.arange(num_labels)
        else:
            classes = observed
        size = int(max(observed.max(), classes.max()) + 1)
        confusion = np.zeros((size, size), dtype=np.int64)  # rows: references, columns: predictions
        np.add.at(confusion, (references, predictions), 1)
        true_positives = np.diag(confusion)[classes]
        predicted = confusion.sum(0)[classes]
        actual = confusion.sum(1)[classes]

        precision = _safe_divide(true_positives, predicted)
        recall = _safe_divide(true_positives, actual)
        f1 = _safe_divide(2 * true_positives, predicted + actual)
        tp_sum, pred_sum, true_sum = true_positives.sum(), predicted.sum(), actual.sum()
        return {
            "accuracy": float(np.trace(confusion) / confusion.sum()),
            "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()),
            "f1_macro": float(f1.mean()),
            "precision_micro": float(_safe_divide(tp_sum, pred_sum)),
            "recall_micro": float(_safe_divide(tp_sum, true_sum)),
            "f1_micro": float(_safe_divide(2 * tp_sum, pred_sum + true_sum)),
            "f1_weighted": float(_safe_divide((f1 * actual).sum(), true_sum)),
            "matthews_correlation": _matthews(confusion),
        }
