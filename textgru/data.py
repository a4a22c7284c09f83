"""Load, check, label and tokenize text-classification data with the `datasets` library.

The steps a recipe runs, in order::

    raw = load_raw_datasets(train_file="train.csv", test_file="test.csv")    # or dataset_name="..."
    check_text_columns(raw, ["text"])
    raw, label_info = prepare_labels(raw, "label")                           # adds an encoded "labels" column
    raw = carve_validation(raw, validation_fraction=0.1, seed=42)            # only if there is no validation split
    tokenized = tokenize_datasets(raw, tokenizer, ["text"])                  # input_ids, attention_mask, labels

Nothing here is specific to one data set: column names, label sets and defaults belong to the recipes.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, DatasetDict, LargeList, List, Value

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
LABELS = "labels"  # the column the model's loss reads
# extension -> (datasets builder, extra builder kwargs)
FILE_FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
# Without a limit in the tokenizer (model_max_length is a huge sentinel), truncate here: a GRU's cost is linear in
# length and longer inputs rarely help classification.
DEFAULT_MAX_LENGTH_CAP = 512


def _file_format(path: str) -> str:
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSION_SUFFIXES:
        suffixes = suffixes[:-1]
    extension = suffixes[-1] if suffixes else ""
    if extension not in FILE_FORMATS:
        raise ValueError(
            f"Cannot read {path!r}: unknown extension {extension or '(none)'!r}. "
            f"Use one of {sorted(FILE_FORMATS)} (optionally compressed: {list(COMPRESSION_SUFFIXES)})."
        )
    return extension.replace(".jsonl", ".json")


def load_raw_datasets(
    *,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    cache_dir: str | None = None,
) -> DatasetDict:
    """Load the raw splits from local files or from the Hugging Face Hub.

    Local files (csv, tsv, json, jsonl, parquet; all of one format) take precedence: when any file is given,
    `dataset_name` is ignored (with a warning). Only the splits "train", "validation" and "test" are kept.

    Args:
        dataset_name: A Hub data set id (or a local data set folder) for `datasets.load_dataset`.
        dataset_config_name: The data set's configuration name, if it has several.
        train_file: Training file; required when any local file is given.
        validation_file: Optional validation file.
        test_file: Optional test file.
        cache_dir: Where `datasets` caches downloaded and prepared data.

    Returns:
        A `DatasetDict` with "train" and, where available, "validation" and "test".
    """
    files = {split: f for split, f in zip(SPLITS, (train_file, validation_file, test_file)) if f}
    if files:
        if dataset_name:
            logger.warning("Reading local files %s; dataset_name=%r is ignored.", files, dataset_name)
        if "train" not in files:
            raise ValueError(f"Got {sorted(files)} files but no train_file; pass --train_file as well.")
        for path in files.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Data file not found: {path!r} (resolved: {os.path.abspath(path)!r}).")
        formats = {split: _file_format(path) for split, path in files.items()}
        if len(set(formats.values())) > 1:
            found = ", ".join(f"{files[split]!r} ({fmt})" for split, fmt in formats.items())
            raise ValueError(f"All data files must share one format, got {found}.")
        builder, builder_kwargs = FILE_FORMATS[next(iter(formats.values()))]
        logger.info("Loading %s files: %s", builder, files)
        raw = datasets.load_dataset(builder, data_files=files, cache_dir=cache_dir, **builder_kwargs)
    elif dataset_name:
        if dataset_name.startswith((os.sep, ".", "~")) and not os.path.exists(os.path.expanduser(dataset_name)):
            raise FileNotFoundError(f"dataset_name {dataset_name!r} looks like a local path, but it does not exist.")
        try:
            raw = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
        except (ConnectionError, FileNotFoundError) as err:
            raise ConnectionError(
                f"Could not load the data set {dataset_name!r}"
                + (f" (config {dataset_config_name!r})" if dataset_config_name else "")
                + f": {err}. A Hub data set needs internet (or a copy in the datasets cache): download it where "
                "you have internet, or pass your own files with --train_file (and --validation_file/--test_file)."
            ) from err
        if not isinstance(raw, DatasetDict):
            raise ValueError(f"{dataset_name!r} loaded as a single split; expected named splits including 'train'.")
    else:
        raise ValueError("No data given: pass dataset_name (a Hub data set) or train_file (a local file).")

    if "train" not in raw:
        raise ValueError(f"The data has no 'train' split (splits: {list(raw)}).")
    dropped = [split for split in raw if split not in SPLITS]
    if dropped:
        logger.info("Ignoring splits %s; keeping %s.", dropped, [s for s in SPLITS if s in raw])
    raw = DatasetDict({split: raw[split] for split in SPLITS if split in raw})
    logger.info("Loaded splits: %s", {split: ds.num_rows for split, ds in raw.items()})
    return raw


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


def carve_validation(
    raw: DatasetDict,
    *,
    validation_fraction: float = 0.1,
    seed: int = 42,
    stratify_column: str | None = LABELS,
) -> DatasetDict:
    """Split a validation set off "train" when there is none; a no-op when "validation" exists.

    The split is stratified by `stratify_column` when it holds one class per row (a `ClassLabel`, int or string
    column, e.g. the "labels" written by `prepare_labels` for single-label data), so every class keeps its share;
    multi-label and regression labels get a plain random split. The same seed gives the same split.

    Args:
        raw: The splits, with "train".
        validation_fraction: Share of "train" moved to "validation", in (0, 1).
        seed: Seed of the shuffle.
        stratify_column: Column to stratify by, or `None` for a random split.

    Returns:
        The splits with "validation" added (and "train" shrunk).
    """
    if "validation" in raw:
        logger.info("Keeping the existing validation split (%d rows).", raw["validation"].num_rows)
        return raw
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction={validation_fraction} must lie in (0, 1).")
    train = raw["train"]
    stratify = None
    if stratify_column is not None:
        if stratify_column not in train.column_names:
            raise ValueError(
                f"Cannot stratify by {stratify_column!r}: no such column in 'train' (columns: {train.column_names}). "
                "Run prepare_labels first, pass another stratify_column, or stratify_column=None for a random split."
            )
        feature = train.features[stratify_column]
        if isinstance(feature, ClassLabel):
            stratify = stratify_column
        elif isinstance(feature, Value) and not _is_float(feature):
            # train_test_split stratifies only by a ClassLabel: encode a temporary copy of the column
            values = _values(train, stratify_column)
            names = sorted({str(v) for v in values})
            train = train.add_column("__stratify__", [str(v) for v in values])
            train = train.cast_column("__stratify__", ClassLabel(names=names))
            stratify = "__stratify__"
        else:
            logger.warning(
                "Column %r (%s) is not one class per row; the validation split is random.", stratify_column, feature
            )
    if stratify is None:
        parts = train.train_test_split(test_size=validation_fraction, seed=seed)
    else:
        parts = _stratified_split(train, stratify, validation_fraction, seed)
    out = {"train": parts["train"], "validation": parts["test"]}
    if stratify == "__stratify__":
        out = {split: ds.remove_columns("__stratify__") for split, ds in out.items()}
    out.update({split: ds for split, ds in raw.items() if split != "train"})
    logger.info(
        "Carved a validation split from train (%s, seed=%d): train %d -> %d rows, validation %d rows.",
        f"stratified by {stratify_column!r}" if stratify else "random",
        seed,
        train.num_rows,
        out["train"].num_rows,
        out["validation"].num_rows,
    )
    return DatasetDict({split: out[split] for split in SPLITS if split in out})


def _stratified_split(train: datasets.Dataset, column: str, fraction: float, seed: int) -> dict:
    """Seeded per-class split: each class gives `round(fraction * count)` rows to the test part, keeping at least
    one in train; classes with a single row stay in train (datasets' own stratification refuses them)."""
    labels = np.asarray(train[column])
    rng = np.random.default_rng(seed)
    held_out, singletons = [], []
    for cls in np.unique(labels):
        rows = np.flatnonzero(labels == cls)
        if len(rows) < 2:
            singletons.append(cls)
            continue
        rng.shuffle(rows)
        held_out.extend(rows[: min(max(int(round(fraction * len(rows))), 0), len(rows) - 1)])
    if singletons:
        logger.warning("%d class(es) with a single training row stay entirely in train.", len(singletons))
    held_out = np.sort(np.asarray(held_out, dtype=np.int64))
    if len(held_out) == 0:
        raise ValueError(
            f"Could not carve a {fraction:.0%} validation split from {train.num_rows} training rows: every class is "
            "too small. Use a larger validation_fraction or provide a validation file."
        )
    keep = np.setdiff1d(np.arange(len(labels)), held_out)
    return {"train": train.select(keep), "test": train.select(held_out)}


def check_text_columns(raw: DatasetDict, text_columns: list[str]) -> None:
    """Check that every split is non-empty and has one or two string text columns without missing values.

    Empty strings are allowed (they become empty inputs, which the model handles); `None` is an error.

    Args:
        raw: The splits to check.
        text_columns: One text column, or two for text pairs.
    """
    if isinstance(text_columns, str) or not 1 <= len(text_columns) <= 2:
        raise ValueError(f"text_columns={text_columns!r}: give a list of one text column or two (a text pair).")
    for split, ds in raw.items():
        if ds.num_rows == 0:
            raise ValueError(f"Split {split!r} is empty; check the data file or drop the split.")
        for column in text_columns:
            if column not in ds.column_names:
                raise ValueError(
                    f"Text column {column!r} not found in split {split!r}; its columns are {ds.column_names}. "
                    "Pass the right --text_column_names."
                )
            feature = ds.features[column]
            if not (isinstance(feature, Value) and feature.dtype in ("string", "large_string")):
                raise ValueError(
                    f"Text column {column!r} in split {split!r} is {feature}, not text. Pass a string column "
                    "as text column."
                )
            values = ds.with_format("arrow")[column]
            if values.null_count:
                first = values.to_pylist().index(None)
                raise ValueError(
                    f"Text column {column!r} in split {split!r} has {values.null_count} missing (None) value(s); "
                    f"the first at row {first}. Fill them in or drop those rows. (An empty string is fine, but in "
                    "CSV/TSV files an empty field, 'NA' or 'null' reads as missing.)"
                )


def tokenize_datasets(
    raw: DatasetDict,
    tokenizer,
    text_columns: list[str],
    *,
    max_length: int | None = None,
    desc: str = "Tokenizing",
    return_length: bool = False,
) -> DatasetDict:
    """Tokenize every split: batched, truncated, not padded (`DataCollatorWithPadding` pads per batch).

    Two text columns are encoded as a pair. All original columns are removed except "labels". No "length"
    column is added by default: transformers' `Trainer` drops columns its model does not take before it builds
    the `group_by_length` sampler, which then measures `input_ids` itself.

    Args:
        raw: The splits (checked with `check_text_columns`).
        tokenizer: A fast or slow Hugging Face tokenizer.
        text_columns: One text column, or two for text pairs.
        max_length: Truncation length in tokens; default `tokenizer.model_max_length`, capped at 512 when the
            tokenizer sets no limit.
        desc: Progress-bar label.
        return_length: Also write a "length" column (number of tokens per row).

    Returns:
        The splits with "input_ids", "attention_mask" (and whatever else the tokenizer returns) plus "labels".
    """
    if max_length is None:
        max_length = tokenizer.model_max_length
        if max_length is None or max_length > 100_000:  # transformers' "no limit" sentinel is ~1e30
            max_length = DEFAULT_MAX_LENGTH_CAP
            logger.info("The tokenizer sets no length limit; truncating to %d tokens.", max_length)
    if max_length < 1:
        raise ValueError(f"max_length={max_length} must be positive.")
    first, second = text_columns[0], text_columns[1] if len(text_columns) == 2 else None

    def tokenize(batch: dict) -> dict:
        pair = batch[second] if second else None
        encoded = tokenizer(batch[first], pair, truncation=True, max_length=max_length, return_length=return_length)
        return dict(encoded)

    out = {}
    for split, ds in raw.items():
        remove = [c for c in ds.column_names if c != LABELS]
        out[split] = ds.map(tokenize, batched=True, remove_columns=remove, desc=f"{desc} {split}")
    logger.info("Tokenized %s (max_length=%d).", {s: ds.num_rows for s, ds in out.items()}, max_length)
    return DatasetDict(out)
