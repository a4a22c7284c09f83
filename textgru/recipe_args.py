"""Command-line arguments of the training recipes, in the style of transformers' `run_classification.py`.

Three groups are parsed together by `HfArgumentParser`: `ModelArguments` (tokenizer and architecture),
`DataArguments` (where the data is and which columns hold what) and transformers' `TrainingArguments`.
A recipe may be given a JSON config as its first argument; flags after it override the file:

    python recipes/text_classification.py recipes/configs/trec.json --data_dir /data --num_train_epochs 5
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments


@dataclass
class ModelArguments:
    """What to train: a new TextGRU (architecture below) or an existing model, and its tokenizer."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Fine-tune an existing TextGRU model (local folder or Hub id) instead of building a new one."
        },
    )
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Use this tokenizer (local folder or Hub id) instead of training one on the training text."},
    )
    tokenizer_algorithm: str = field(
        default="wordpiece", metadata={"help": "Tokenizer to train: wordpiece, bpe or unigram."}
    )
    tokenizer_vocab_size: int = field(default=16000, metadata={"help": "Vocabulary size of a trained tokenizer."})
    tokenizer_min_frequency: int = field(default=2, metadata={"help": "Minimum count for a trained token."})
    lowercase: bool = field(default=True, metadata={"help": "Lowercase text in a trained tokenizer."})
    max_seq_length: int = field(default=256, metadata={"help": "Texts are truncated to this many tokens."})
    pretrain_embeddings: bool = field(
        default=False,
        metadata={
            "help": "Initialise the embeddings with word2vec vectors learnt on the training text plus any "
            "--unlabeled_files (needs gensim: pip install 'textgru[pretrain]')."
        },
    )
    pretrain_epochs: int = field(default=5, metadata={"help": "Word2vec epochs for --pretrain_embeddings."})
    embedding_size: int = field(default=128, metadata={"help": "Width of the token embeddings."})
    hidden_size: int = field(default=128, metadata={"help": "GRU hidden size per direction."})
    num_hidden_layers: int = field(default=2, metadata={"help": "Number of stacked GRU layers."})
    residual: str = field(default="add", metadata={"help": "Residual connections: none, add or gated."})
    pooling: str = field(default="attention", metadata={"help": "Pooling: attention, mean, max or last."})
    num_attention_heads: int = field(default=1, metadata={"help": "Attention-pooling heads."})
    embedding_dropout: float = field(default=0.1, metadata={"help": "Dropout on the embeddings."})
    word_dropout: float = field(default=0.0, metadata={"help": "Probability of dropping a whole token in training."})
    hidden_dropout: float = field(default=0.1, metadata={"help": "Dropout on each GRU layer's output."})
    classifier_dropout: float = field(default=0.1, metadata={"help": "Dropout before the classification head."})

    def architecture(self) -> dict:
        """The TextGRUConfig fields these arguments set."""
        names = (
            "embedding_size",
            "hidden_size",
            "num_hidden_layers",
            "residual",
            "pooling",
            "num_attention_heads",
            "embedding_dropout",
            "word_dropout",
            "hidden_dropout",
            "classifier_dropout",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class DataArguments:
    """Where the data comes from (a Hub data set or local files), how to read it, and when to stop training."""

    dataset_name: str | None = field(default=None, metadata={"help": "A data set on the Hub (needs internet)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub data set."})
    data_dir: str | None = field(
        default=None, metadata={"help": "Relative --train_file/--validation_file/--test_file are read from here."}
    )
    train_file: str | None = field(default=None, metadata={"help": "csv, tsv, json, jsonl or parquet file."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation file (same format)."})
    test_file: str | None = field(default=None, metadata={"help": "Test file (same format)."})
    unlabeled_files: str | None = field(
        default=None,
        metadata={
            "help": "Unlabelled text (comma-separated files, same formats) for the tokenizer and "
            "--pretrain_embeddings; read from --unlabeled_text_column (default: the first text column)."
        },
    )
    unlabeled_text_column: str | None = field(default=None, metadata={"help": "Text column of --unlabeled_files."})
    max_unlabeled_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many unlabelled texts (a seeded sample)."}
    )
    text_column_names: str = field(
        default="text", metadata={"help": "One text column, or two separated by a comma (encoded as a pair)."}
    )
    label_column_name: str = field(default="label", metadata={"help": "The column holding the labels."})
    problem_type: str = field(
        default="auto",
        metadata={
            "help": "auto, single_label_classification, multi_label_classification or regression. auto: a list "
            "column or --label_delimiter means multi-label, a float column regression, anything else single-label."
        },
    )
    label_delimiter: str | None = field(
        default=None, metadata={"help": "Multi-label given as one string, e.g. 'sports,politics' with ','."}
    )
    validation_split_percentage: float = field(
        default=10.0,
        metadata={"help": "Without a validation split, carve this percentage of train (stratified, seeded)."},
    )
    test_split_percentage: float = field(
        default=0.0,
        metadata={"help": "Without a test split, carve this percentage of train as test (stratified, seeded)."},
    )
    fold_column: str | None = field(
        default=None, metadata={"help": "Cross-validation fold column: rows with --test_fold become the test split."}
    )
    test_fold: int = field(default=0, metadata={"help": "The fold used as test with --fold_column."})
    filter_rows: str | None = field(
        default=None, metadata={"help": "Keep only rows where COLUMN has one of these values: 'column=value1|value2'."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate train (for quick runs)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate validation."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Truncate test."})
    early_stopping_patience: int = field(
        default=3, metadata={"help": "Stop after this many evaluations without improvement (0: never stop early)."}
    )
    max_train_minutes: float | None = field(
        default=None,
        metadata={"help": "Time budget: stop training (after the current step, with a final evaluation) past it."},
    )

    @property
    def text_columns(self) -> list[str]:
        return [c.strip() for c in self.text_column_names.split(",") if c.strip()]

    def resolve(self, path: str | None) -> str | None:
        """A data file path, joined to --data_dir when it is relative."""
        if path is None or self.data_dir is None or Path(path).is_absolute():
            return path
        return str(Path(self.data_dir).expanduser() / path)


def parse_recipe_args(
    defaults: dict | None = None, args: list[str] | None = None
) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse recipe defaults, then an optional JSON config (first argument), then command-line flags.

    Args:
        defaults: the recipe's own defaults for any field of the three groups.
        args: command-line arguments (default `sys.argv[1:]`).
    """
    args = list(sys.argv[1:] if args is None else args)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    merged = dict(defaults or {})
    if args and args[0].endswith(".json"):
        config_path = Path(args.pop(0))
        if not config_path.is_file():
            raise FileNotFoundError(f"Recipe config {config_path} not found.")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Recipe config {config_path} is not valid JSON: {err}") from err
        unknown = sorted(set(config) - {a.dest for a in parser._actions} - {"_comment", "_doc"})
        if unknown:
            raise ValueError(
                f"Recipe config {config_path} has unknown keys {unknown}; see --help for the valid names."
            )
        merged.update({k: v for k, v in config.items() if not k.startswith("_")})
    known = {a.dest for a in parser._actions}
    stray = sorted(set(merged) - known)
    if stray:
        raise ValueError(f"Unknown recipe settings {stray}; see --help for the valid names.")
    parser.set_defaults(**merged)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=args)
    return model_args, data_args, training_args
