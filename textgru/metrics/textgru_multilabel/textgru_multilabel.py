"""Multi-label classification metrics for textgru, as an offline `evaluate` module.

Load it with `evaluate.load("/abs/path/to/textgru_multilabel")` or `textgru.evaluation.load_metric(
"multi_label_classification")`. The file is self-contained (numpy only) because `evaluate` copies it into its
module cache before importing it.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Micro and macro F1, micro and macro precision / recall, exact match (subset accuracy) and Hamming loss for
multi-label classification. Each example is a 0/1 vector with one entry per label.

Zero division: a label that is never predicted has precision 0, a label that never occurs has recall 0, and a
label with neither has F1 0 (scikit-learn's `zero_division=0`), so labels absent from an evaluation split pull the
macro averages down.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[list[int]]`): predicted 0/1 vectors, one per example, all of the same length.
    references (`list[list[int]]`): true 0/1 vectors, same shape as `predictions`.

Returns:
    f1_micro, f1_macro, precision_micro, recall_micro, precision_macro, recall_macro, exact_match (the fraction of
    examples whose whole label set is right), hamming_loss (the fraction of wrong label decisions): floats.

Examples:
    >>> metric = evaluate.load("textgru_multilabel")  # doctest: +SKIP
    >>> metric.compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])["exact_match"]  # doctest: +SKIP
    0.5
"""

_CITATION = """\
@article{tsoumakas2007,
  title={Multi-label classification: An overview},
  author={Tsoumakas, Grigorios and Katakis, Ioannis},
  journal={International Journal of Data Warehousing and Mining},
  volume={3}, number={3}, pages={1--13}, year={2007}
}
"""


def _safe_divide(numerator, denominator) -> np.ndarray:
    """Element-wise division that gives 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


class TextgruMultilabel(evaluate.Metric):
    """Micro/macro F1, precision, recall, exact match and Hamming loss over 0/1 label vectors."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int32")),
                    "references": datasets.Sequence(datasets.Value("int32")),
                }
            ),
        )

    def _compute(self, predictions, references):
        try:
            predictions = np.asarray(predictions, dtype=np.int64)
            references = np.asarray(references, dtype=np.int64)
        except ValueError as err:  # ragged rows cannot form a matrix
            raise ValueError(
                "textgru_multilabel: every example needs a 0/1 vector of the same length (one entry per label)."
            ) from err
        if predictions.ndim != 2 or predictions.shape != references.shape or predictions.size == 0:
            raise ValueError(
                "textgru_multilabel: predictions and references must be non-empty (examples, labels) 0/1 matrices "
                f"of the same shape; got {predictions.shape} and {references.shape}."
            )
        if not (np.isin(predictions, (0, 1)).all() and np.isin(references, (0, 1)).all()):
            raise ValueError(
                "textgru_multilabel: entries must be 0 or 1; threshold the scores first (e.g. sigmoid(logits) > 0.5)."
            )
        predicted = predictions.astype(bool)
        actual = references.astype(bool)
        true_positives = (predicted & actual).sum(0)
        predicted_counts = predicted.sum(0)
        actual_counts = actual.sum(0)

        f1 = _safe_divide(2 * true_positives, predicted_counts + actual_counts)
        tp_sum, pred_sum, true_sum = true_positives.sum(), predicted_counts.sum(), actual_counts.sum()
        return {
            "f1_micro": float(_safe_divide(2 * tp_sum, pred_sum + true_sum)),
            "f1_macro": float(f1.mean()),
            "precision_micro": float(_safe_divide(tp_sum, pred_sum)),
            "recall_micro": float(_safe_divide(tp_sum, true_sum)),
            "precision_macro": float(_safe_divide(true_positives, predicted_counts).mean()),
            "recall_macro": float(_safe_divide(true_positives, actual_counts).mean()),
            "exact_match": float((predicted == actual).all(1).mean()),
            "hamming_loss": float((predicted != actual).mean()),
        }
