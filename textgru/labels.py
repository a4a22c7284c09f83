"""Labels for text classification: what they are (`LabelInfo`) and their encoding into the `labels` column.

`prepare_labels` reads a label column of any split layout the loaders produce (a `ClassLabel`, ints, strings, lists
of names or a delimited string for multi-label, floats for regression), infers the problem type, checks that every
split agrees with the training split, and adds the encoded column the model's loss reads:

    raw, label_info = prepare_labels(raw, "label")   # raw["train"]["labels"], label_info.label_names

Nothing here is specific to one data set.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import datasets
from datasets import ClassLabel, DatasetDict, LargeList, List, Value

logger = logging.getLogger(__name__)

PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
LABELS = "labels"  # the column the model's loss reads


@dataclass
class LabelInfo:
    """What the labels are: the problem type and the label names in id order.

    Args:
        problem_type: "single_label_classification", "multi_label_classification" or "regression".
        label_names: Class names; index = label id. Empty for regression.
        num_labels: Number of model outputs (filled in: `len(label_names)`, or 1 for regression).

    >>> info = LabelInfo("single_label_classification", ["neg", "pos"])
    >>> info.num_labels, info.id2label
    (2, {0: 'neg', 1: 'pos'})
    """

    problem_type: str
    label_names: list[str] = field(default_factory=list)
    num_labels: int | None = None

    def __post_init__(self) -> None:
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"problem_type={self.problem_type!r}; choose one of {list(PROBLEM_TYPES)}.")
        expected = 1 if self.problem_type == "regression" else len(self.label_names)
        if self.num_labels is None:
            self.num_labels = expected
        elif self.num_labels != expected:
            raise ValueError(f"num_labels={self.num_labels} but {expected} expected for {self.label_names}.")

    @property
    def id2label(self) -> dict[int, str]:
        """`{id: name}`; for regression transformers' default `{0: "LABEL_0"}`."""
        names = self.label_names or [f"LABEL_{i}" for i in range(self.num_labels)]
        return dict(enumerate(names))

    @property
    def label2id(self) -> dict[str, int]:
        """`{name: id}`, the inverse of `id2label`."""
        return {name: i for i, name in self.id2label.items()}

    def config_kwargs(self) -> dict:
        """Keyword arguments for a model config: `num_labels`, `id2label`, `label2id`, `problem_type`."""
        return {
            "num_labels": self.num_labels,
            "id2label": self.id2label,
            "label2id": self.label2id,
            "problem_type": self.problem_type,
        }


def _is_list_feature(feature) -> bool:
    return isinstance(feature, (List, LargeList))  # datasets' `Sequence(x)` builds a `List`


def _is_numeric(feature) -> bool:
    return isinstance(feature, Value) and (
        feature.dtype.startswith(("int", "uint", "float")) or feature.dtype == "bool"
    )


def _is_float(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype.startswith("float")


def _is_string(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _infer_problem_type(feature, label_column: str, label_delimiter: str | None) -> str:
    if _is_list_feature(feature) or (_is_string(feature) and label_delimiter):
        return "multi_label_classification"
    if _is_float(feature):
        return "regression"
    if isinstance(feature, ClassLabel) or _is_string(feature) or _is_numeric(feature):
        return "single_label_classification"
    raise ValueError(
        f"Cannot infer the problem type from label column {label_column!r} of type {feature}; "
        f"pass problem_type as one of {list(PROBLEM_TYPES)}."
    )


def _values(ds: datasets.Dataset, column: str) -> list:
    return ds.with_format(None)[column][:]


def _check_no_missing(values: list, feature, split: str, label_column: str) -> None:
    class_label = isinstance(feature, ClassLabel)
    for i, value in enumerate(values):
        # a ClassLabel stores a missing label as -1 (e.g. unlabelled Hub test splits)
        if value is None or (isinstance(value, float) and math.isnan(value)) or (class_label and value == -1):
            raise ValueError(
                f"Label column {label_column!r} has a missing label ({value!r}) in split {split!r} at row {i}. "
                "Every row needs a label: fill it in or drop those rows before training."
            )


def _encode_regression(values: dict, features: dict, label_column: str) -> tuple[dict, LabelInfo]:
    for split, feature in features.items():
        if not _is_numeric(feature):
            raise ValueError(
                f"Regression needs a numeric label column, but {label_column!r} in split {split!r} is {feature}. "
                "Convert it to numbers, or choose a classification problem_type."
            )
    return {split: [float(v) for v in split_values] for split, split_values in values.items()}, LabelInfo("regression")


def _encode_classes(
    values: dict, features: dict, label_column: str, multi: bool, label_delimiter: str | None
) -> tuple[dict, LabelInfo]:
    """Class ids (single-label) or multi-hot float lists (multi-label) per split, names from train."""
    train_feature = features["train"]
    if multi and not _is_list_feature(train_feature) and not (_is_string(train_feature) and label_delimiter):
        raise ValueError(
            f"Multi-label classification needs a list label column or a delimited string column; {label_column!r} "
            f"is {train_feature}. Pass label_delimiter (e.g. '|') with a string column, or use a list column."
        )
    if not multi and _is_list_feature(train_feature):
        raise ValueError(f"Label column {label_column!r} holds lists; use problem_type='multi_label_classification'.")
    if not multi and _is_float(train_feature):
        raise ValueError(
            f"Label column {label_column!r} holds floats ({train_feature}); use problem_type='regression', or cast "
            "the labels to int or str for classification."
        )

    def keys(feature, value) -> list:
        """The labels of one row as names (ClassLabel) or raw values (str, int)."""
        if _is_list_feature(feature):
            feature, items = feature.feature, value
        elif multi:  # a delimited string: "sports|politics"; "" means no label
            items = [piece.strip() for piece in value.split(label_delimiter) if piece.strip()]
        else:
            items = [value]
        return [feature.int2str(v) if isinstance(feature, ClassLabel) else v for v in items]

    rows = {split: [keys(features[split], v) for v in split_values] for split, split_values in values.items()}
    class_feature = train_feature.feature if _is_list_feature(train_feature) else train_feature
    if isinstance(class_feature, ClassLabel):
        names = list(class_feature.names)
        key_to_id = {name: i for i, name in enumerate(names)}
    else:
        ordered = sorted({k for row in rows["train"] for k in row})  # ints numerically, strings alphabetically
        names = [str(k) for k in ordered]
        key_to_id = {k: i for i, k in enumerate(ordered)}
    for split, split_rows in rows.items():
        unknown = {str(k) for row in split_rows for k in row if k not in key_to_id}
        if unknown:
            raise ValueError(
                f"Split {split!r} has labels never seen in 'train': {sorted(unknown)} (known: {names}). "
                "Add examples of them to the training data, or drop those rows."
            )

    def encode(row: list):
        if not multi:
            return key_to_id[row[0]]
        hot = [0.0] * len(names)
        for k in row:
            hot[key_to_id[k]] = 1.0
        return hot

    encoded = {split: [encode(row) for row in split_rows] for split, split_rows in rows.items()}
    problem_type = "multi_label_classification" if multi else "single_label_classification"
    return encoded, LabelInfo(problem_type, names)


def prepare_labels(
    raw: DatasetDict,
    label_column: str,
    *,
    problem_type: str = "auto",
    label_delimiter: str | None = None,
) -> tuple[DatasetDict, LabelInfo]:
    """Encode the labels of every split into a "labels" column and describe them.

    Label names come from a `ClassLabel` feature (its order kept), otherwise from the training split, sorted
    (integers numerically, named `str(int)`). "labels" holds a class id (as a `ClassLabel`) for single-label
    data, a float multi-hot list for multi-label data and a float for regression.

    Problem type "auto": a `ClassLabel`, string or integer column is single-label; a list column, or a string
    column with `label_delimiter`, is multi-label; a float column is regression.

    Args:
        raw: The raw splits; every split must have `label_column`.
        label_column: Name of the label column.
        problem_type: "auto" or one of "single_label_classification", "multi_label_classification", "regression".
        label_delimiter: Separator of several labels in one string (e.g. "|" for "sports|politics"); implies
            multi-label.

    Returns:
        The splits with a "labels" column added (replacing any column of that name) and the `LabelInfo`.
    """
    for split, ds in raw.items():
        if label_column not in ds.column_names:
            raise ValueError(
                f"Label column {label_column!r} not found in split {split!r}; its columns are {ds.column_names}. "
                "Pass the right --label_column_name."
            )
    if "train" not in raw:
        raise ValueError(f"prepare_labels needs a 'train' split to collect the label names; got {list(raw)}.")
    features = {split: ds.features[label_column] for split, ds in raw.items()}
    if problem_type == "auto":
        problem_type = _infer_problem_type(features["train"], label_column, label_delimiter)
        logger.info("Label column %r (%s): problem type %s.", label_column, features["train"], problem_type)
    elif problem_type not in PROBLEM_TYPES:
        raise ValueError(f"problem_type={problem_type!r}; choose 'auto' or one of {list(PROBLEM_TYPES)}.")
    values = {split: _values(ds, label_column) for split, ds in raw.items()}
    for split, split_values in values.items():
        _check_no_missing(split_values, features[split], split, label_column)

    if problem_type == "regression":
        encoded, info = _encode_regression(values, features, label_column)
        labels_feature = Value("float32")
    else:
        multi = problem_type == "multi_label_classification"
        encoded, info = _encode_classes(values, features, label_column, multi, label_delimiter)
        labels_feature = List(Value("float32")) if multi else ClassLabel(names=info.label_names)

    out = {}
    for split, ds in raw.items():
        if LABELS in ds.column_names:
            ds = ds.remove_columns(LABELS)
        out[split] = ds.add_column(LABELS, encoded[split], feature=labels_feature)
    logger.info("Labels: %s, %d output(s): %s", info.problem_type, info.num_labels, info.label_names or "(values)")
    return DatasetDict(out), info
