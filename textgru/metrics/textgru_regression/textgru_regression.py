"""Regression metrics for textgru, as an offline `evaluate` module.

Load it with `evaluate.load("/abs/path/to/textgru_regression")` or `textgru.evaluation.load_metric("regression")`.
The file is self-contained (numpy and scipy) because `evaluate` copies it into its module cache before importing it.
"""

import warnings

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata

_DESCRIPTION = """\
Mean squared error, mean absolute error, root mean squared error, Pearson's r and Spearman's rho for regression.

Constant input: a correlation is undefined when the predictions or the references of a target do not vary (a model
that predicts one value for everything, or a one-value evaluation set). It is then `nan`, and a `RuntimeWarning`
says why; the errors (mse, mae, rmse) are always defined. Several targets per example (`num_labels > 1`): every metric
is computed per target and averaged with equal weights (scikit-learn's `multioutput="uniform_average"`; so `rmse` is
the mean of the per-target RMSEs, not the square root of `mse`; one constant target makes the averaged correlation
`nan`).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions (`list[float]` or `list[list[float]]`): predicted values, one (or one per target) per example.
    references (`list[float]` or `list[list[float]]`): true values, same shape as `predictions`.

Returns:
    mse, mae, rmse, pearson, spearman: floats (`pearson` and `spearman` are `nan` for constant input).

Examples:
    >>> metric = evaluate.load("textgru_regression")  # doctest: +SKIP
    >>> metric.compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 2.0, 3.0])["mae"]  # doctest: +SKIP
    0.3333333333333333
"""

_CITATION = """\
@article{spearman1904,
  title={The proof and measurement of association between two things},
  author={Spearman, Charles},
  journal={The American Journal of Psychology},
  volume={15}, number={1}, pages={72--101}, year={1904}
}
"""


def _pearson(x: np.ndarray, y: np.ndarray, name: str) -> float:
    """Pearson correlation of two vectors; `nan` with a `RuntimeWarning` when either is constant or not finite."""
    if (x == x[0]).all() or (y == y[0]).all() or not (np.isfinite(x).all() and np.isfinite(y).all()):
        warnings.warn(
            f"textgru_regression: {name} is undefined (nan) because the predictions or the references are constant "
            "(or hold nan/inf).",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    x = x - x.mean()
    y = y - y.mean()
    return float(np.clip((x @ y) / np.sqrt((x @ x) * (y @ y)), -1.0, 1.0))


class TextgruRegression(evaluate.Metric):
    """MSE, MAE, RMSE, Pearson and Spearman correlation, averaged over targets when there are several."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Sequence(datasets.Value("float64")),
                    }
                ),
            ],
        )

    def _compute(self, predictions, references):
        try:
            predictions = np.asarray(predictions, dtype=np.float64)
            references = np.asarray(references, dtype=np.float64)
        except ValueError as err:  # ragged rows cannot form a matrix
            raise ValueError("textgru_regression: every example needs the same number of targets.") from err
        if predictions.shape != references.shape or predictions.size == 0:
            raise ValueError(
                "textgru_regression: predictions and references must be non-empty and of the same shape; got "
                f"{predictions.shape} and {references.shape}."
            )
        if predictions.ndim == 1:
            predictions, references = predictions[:, None], references[:, None]
        errors = predictions - references  # (examples, targets)
        targets = range(predictions.shape[1])
        pearson = [_pearson(predictions[:, t], references[:, t], "pearson") for t in targets]
        spearman = [_pearson(rankdata(predictions[:, t]), rankdata(references[:, t]), "spearman") for t in targets]
        return {
            "mse": float(np.mean(errors**2)),
            "mae": float(np.mean(np.abs(errors))),
            "rmse": float(np.mean(np.sqrt(np.mean(errors**2, axis=0)))),
            "pearson": float(np.mean(pearson)),
            "spearman": float(np.mean(spearman)),
        }
