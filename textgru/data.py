"""Load, check, label and tokenize text-classification data with the `datasets` library.

The steps a recipe runs, in order::

    raw = load_raw_datasets(train_file="train.csv", test_file="test.csv")    # or dataset_name="..."
    check_text_columns(raw, ["text"])
    raw, label_info = prepare_labels(raw, "label")                           # adds an encoded "labels" column
    raw = carve_validation(raw, validation_fraction=0.1, seed=42)            # only if there is no validation split
    tokenized = tokenize_datasets(raw, tokenizer, ["text"])                  # input_ids, attention_mask, labels

Nothing here is specific to one data set: column names, label sets and defaults belong to the recipes. The label
step lives in `textgru.labels`; `LabelInfo` and `prepare_labels` are importable from here too, so the steps above
read from one module.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, DatasetDict, Value

from .labels import LABELS, LabelInfo, _is_float, _values, prepare_labels

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
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


__all__ = [
    "LabelInfo",
    "carve_validation",
    "check_text_columns",
    "load_raw_datasets",
    "prepare_labels",
    "tokenize_datasets",
]
