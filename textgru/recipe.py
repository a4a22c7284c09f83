"""The training flow both recipes share: load → labels → tokenizer → model → Trainer → evaluate → predict → card.

A recipe script only chooses defaults and calls `run_recipe`; everything specific to one data set lives in the
JSON configs under `recipes/configs/`. Runs unchanged under `torchrun --nproc_per_node N` (DDP): the tokenizer
is trained once by the main process and loaded by the others.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
from datasets import DatasetDict, concatenate_datasets
from torch.utils.data import SequentialSampler
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .configuration_textgru import TextGRUConfig
from .data import carve_validation, check_text_columns, load_raw_datasets, tokenize_datasets
from .evaluation import best_model_kwargs, build_compute_metrics
from .labels import LabelInfo, prepare_labels
from .modeling_textgru import TextGRUForSequenceClassification
from .recipe_args import DataArguments, ModelArguments
from .reporting import plot_confusion, plot_curves, save_results, write_card, write_predictions
from .tokenization import check_tokenizer_matches_model, load_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)


def recipe_defaults(name: str) -> dict:
    """TrainingArguments defaults tuned for a small CPU (2 cores); every one can be overridden."""
    return {
        "output_dir": f"outputs/{name}",
        "learning_rate": 2e-3,
        "weight_decay": 0.01,
        "warmup_steps": 0.05,
        "lr_scheduler_type": "linear",
        "max_grad_norm": 1.0,
        "num_train_epochs": 10,
        "per_device_train_batch_size": 32,
        "per_device_eval_batch_size": 128,
        "train_sampling_strategy": "group_by_length",
        "eval_strategy": "epoch",
        "save_strategy": "epoch",
        "save_total_limit": 1,
        "load_best_model_at_end": True,
        "logging_steps": 50,
        "use_cpu": True,
        "report_to": "none",
        "seed": 42,
        "do_train": True,
        "do_eval": True,
        "do_predict": True,
    }


class TimeBudgetCallback(TrainerCallback):
    """Stops training once `minutes` have passed, evaluating and saving first so the best model is kept."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60
        self.start = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and time.perf_counter() - self.start > self.seconds:
            logger.warning(
                "Time budget of %.1f min reached at step %d: stopping.", self.seconds / 60, state.global_step
            )
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"
        return control


class OrderedEvalTrainer(Trainer):
    """A `Trainer` whose evaluation and prediction batches follow the data set's order.

    transformers v5 also length-groups *evaluation* batches when `train_sampling_strategy="group_by_length"`,
    which returns predictions in a shuffled order: right metrics, wrong rows. The recipes sort evaluation sets
    by length themselves (`sort_by_length`) and map predictions back.
    """

    def _get_eval_sampler(self, eval_dataset):
        if eval_dataset is None or self.args.world_size > 1:
            return None  # distributed: accelerate shards sequentially and gathers in order
        return SequentialSampler(eval_dataset)


def sort_by_length(dataset):
    """`(dataset sorted by token count, the permutation used)`; `predictions[np.argsort(order)]` undoes it."""
    order = np.argsort([len(ids) for ids in dataset["input_ids"]], kind="stable")
    return dataset.select(order), order


def _filter_rows(raw: DatasetDict, spec: str) -> DatasetDict:
    column, _, values = spec.partition("=")
    if not values:
        raise ValueError(f"--filter_rows {spec!r}: expected 'column=value1|value2'.")
    keep = set(values.split("|"))
    for split, ds in raw.items():
        if column not in ds.column_names:
            raise ValueError(
                f"--filter_rows: column {column!r} is not in split {split!r} (columns: {ds.column_names})."
            )
    out = raw.filter(lambda row: str(row[column]) in keep, desc=f"Keeping {spec}")
    for split, ds in out.items():
        if len(ds) == 0:
            raise ValueError(f"--filter_rows {spec!r} left split {split!r} empty.")
    return out


def load_data(data_args: DataArguments, seed: int) -> tuple[DatasetDict, LabelInfo]:
    """Steps 1–2: read the splits, apply filters/folds, encode labels, carve missing validation/test splits."""
    raw = load_raw_datasets(
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        train_file=data_args.resolve(data_args.train_file),
        validation_file=data_args.resolve(data_args.validation_file),
        test_file=data_args.resolve(data_args.test_file),
    )
    if data_args.filter_rows:
        raw = _filter_rows(raw, data_args.filter_rows)
    if data_args.fold_column:
        if data_args.fold_column not in raw["train"].column_names:
            raise ValueError(
                f"--fold_column {data_args.fold_column!r} not found; columns: {raw['train'].column_names}."
            )
        every = concatenate_datasets([raw[s] for s in raw])
        is_test = np.asarray(every[data_args.fold_column]) == data_args.test_fold
        raw = DatasetDict(train=every.select(np.flatnonzero(~is_test)), test=every.select(np.flatnonzero(is_test)))
        logger.info(
            "Fold %s of %r is the test split (%d rows).", data_args.test_fold, data_args.fold_column, len(raw["test"])
        )
    raw, labels = prepare_labels(
        raw,
        data_args.label_column_name,
        problem_type=data_args.problem_type,
        label_delimiter=data_args.label_delimiter,
    )
    stratify = "labels" if labels.problem_type == "single_label_classification" else None
    if "test" not in raw and data_args.test_split_percentage > 0:
        carved = carve_validation(
            DatasetDict(train=raw["train"]),
            validation_fraction=data_args.test_split_percentage / 100,
            seed=seed,
            stratify_column=stratify,
        )
        raw["train"], raw["test"] = carved["train"], carved["validation"]
    if "validation" not in raw and data_args.validation_split_percentage > 0:
        raw = carve_validation(
            raw, validation_fraction=data_args.validation_split_percentage / 100, seed=seed, stratify_column=stratify
        )
    for split, limit in (
        ("train", data_args.max_train_samples),
        ("validation", data_args.max_eval_samples),
        ("test", data_args.max_predict_samples),
    ):
        if limit is not None and split in raw and len(raw[split]) > limit:
            raw[split] = raw[split].shuffle(seed=seed).select(range(limit))
    check_text_columns(raw, data_args.text_columns)
    logger.info("Splits: %s", {k: len(v) for k, v in raw.items()})
    return raw, labels


def load_unlabeled_texts(data_args: DataArguments, seed: int = 42) -> list[str]:
    """Texts of `--unlabeled_files` (empty when none are given)."""
    if not data_args.unlabeled_files:
        return []
    column = data_args.unlabeled_text_column or data_args.text_columns[0]
    texts: list[str] = []
    for path in data_args.unlabeled_files.split(","):
        ds = load_raw_datasets(train_file=data_args.resolve(path.strip()))["train"]
        if column not in ds.column_names:
            raise ValueError(
                f"--unlabeled_files {path}: no column {column!r} (columns: {ds.column_names}); "
                "set --unlabeled_text_column."
            )
        texts.extend(t for t in ds[column] if isinstance(t, str))
    if data_args.max_unlabeled_samples is not None and len(texts) > data_args.max_unlabeled_samples:
        texts = random.Random(seed).sample(texts, data_args.max_unlabeled_samples)
    logger.info("Read %d unlabelled texts from %s", len(texts), data_args.unlabeled_files)
    return texts


def build_tokenizer(
    model_args: ModelArguments, train_texts: list[str], training_args: TrainingArguments
) -> PreTrainedTokenizerBase:
    """Step 3: an existing tokenizer, or one trained on the training text (once, by the main process)."""
    name = model_args.tokenizer_name or model_args.model_name_or_path
    if name:
        tokenizer = load_tokenizer(name)
    else:
        shared = Path(training_args.output_dir) / "tokenizer"
        with training_args.main_process_first(desc="training the tokenizer"):
            if training_args.process_index == 0 or not (shared / "tokenizer.json").exists():
                tokenizer = train_tokenizer(
                    train_texts,
                    algorithm=model_args.tokenizer_algorithm,
                    vocab_size=model_args.tokenizer_vocab_size,
                    lowercase=model_args.lowercase,
                    min_frequency=model_args.tokenizer_min_frequency,
                    model_max_length=model_args.max_seq_length,
                )
                if training_args.process_index == 0 and training_args.world_size > 1:
                    tokenizer.save_pretrained(shared)
            else:
                tokenizer = load_tokenizer(str(shared))
    tokenizer.model_max_length = min(tokenizer.model_max_length, model_args.max_seq_length)
    return tokenizer


def build_model(
    model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase, labels: LabelInfo
) -> TextGRUForSequenceClassification:
    """Step 4: a new TextGRU sized to the tokenizer and label set, or an existing one with a fresh head if needed."""
    label_config = {
        "num_labels": labels.num_labels,
        "problem_type": labels.problem_type,
        "id2label": labels.id2label,
        "label2id": labels.label2id,
    }
    if model_args.model_name_or_path:
        model = TextGRUForSequenceClassification.from_pretrained(
            model_args.model_name_or_path, ignore_mismatched_sizes=True, **label_config
        )
    else:
        config = TextGRUConfig(
            vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **model_args.architecture(), **label_config
        )
        model = TextGRUForSequenceClassification(config)
    check_tokenizer_matches_model(tokenizer, model.config)
    return model


def _count_tokens(dataset) -> int:
    return int(sum(len(ids) for ids in dataset["input_ids"]))


def run_recipe(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments, *, task: str
) -> dict[str, dict[str, float]]:
    """Train, evaluate and save a TextGRU classifier; returns metrics per split.

    Args:
        model_args: tokenizer and architecture.
        data_args: data source, columns and splits.
        training_args: transformers `TrainingArguments` (output folder, schedule, push_to_hub, ...).
        task: a short name for the model card ("sentiment analysis", "text classification").
    """
    started = time.perf_counter()
    output_dir = Path(training_args.output_dir)
    # 1-2. data and labels
    raw, labels = load_data(data_args, training_args.seed)
    text_columns = data_args.text_columns
    # 3. tokenizer (trained on the training text and any unlabelled text)
    unlabeled = load_unlabeled_texts(data_args, training_args.seed)
    tokenizer = build_tokenizer(model_args, list(raw["train"][text_columns[0]]) + unlabeled, training_args)
    # 4. tokenized data
    with training_args.main_process_first(desc="tokenizing"):
        tokenized = tokenize_datasets(raw, tokenizer, text_columns, max_length=model_args.max_seq_length)
    # 5. model
    model = build_model(model_args, tokenizer, labels)
    if model_args.pretrain_embeddings:
        from .embeddings import load_embeddings_into, pretrain_embeddings

        vectors, found = pretrain_embeddings(
            tokenizer,
            unlabeled,
            token_ids=tokenized["train"]["input_ids"],  # the training text, tokenized once above
            dim=model.config.embedding_size,
            epochs=model_args.pretrain_epochs,
            max_length=model_args.max_seq_length,
            seed=training_args.seed,
        )
        load_embeddings_into(model, vectors, found)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("TextGRU with %.2fM parameters (%s)", n_params / 1e6, model_args.architecture())
    # 6. metric and Trainer
    if training_args.load_best_model_at_end and training_args.metric_for_best_model in (None, "loss"):
        # TrainingArguments fills in "loss" when nothing was asked for; keep the best model by the task's
        # metric instead (pass --metric_for_best_model eval_loss to select by loss)
        for key, value in best_model_kwargs(labels.problem_type).items():
            setattr(training_args, key, value)
    callbacks = []
    if data_args.early_stopping_patience > 0 and training_args.load_best_model_at_end and "validation" in tokenized:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=data_args.early_stopping_patience))
    if data_args.max_train_minutes:
        callbacks.append(TimeBudgetCallback(data_args.max_train_minutes))
    trainer = OrderedEvalTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"] if training_args.do_train else None,
        eval_dataset=sort_by_length(tokenized["validation"])[0] if "validation" in tokenized else None,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=build_compute_metrics(labels.problem_type, num_labels=labels.num_labels),
        callbacks=callbacks,
    )
    results: dict[str, dict[str, float]] = {}
    # 7. train
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        metrics = dict(train_result.metrics)
        epochs = metrics.get("epoch", training_args.num_train_epochs)
        metrics["train_tokens_per_second"] = _count_tokens(tokenized["train"]) * epochs / metrics["train_runtime"]
        results["train"] = metrics
        trainer.save_model()
        trainer.save_state()
    model.eval()  # pipeline() does not switch dropout off for us
    # 8-9. evaluate and predict
    for split in ("validation", "test"):
        if split not in tokenized or (split == "validation" and not training_args.do_eval):
            continue
        if split == "test" and not training_args.do_predict:
            continue
        ordered, order = sort_by_length(tokenized[split])  # little padding per batch
        output = trainer.predict(ordered, metric_key_prefix=split)
        results[split] = {k: float(v) for k, v in output.metrics.items()}
        trainer.log_metrics(split, output.metrics)
        if trainer.is_world_process_zero():
            logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
            logits = logits[np.argsort(order)]  # back to the data set's order
            write_predictions(output_dir / f"predictions_{split}.jsonl", raw[split], text_columns, logits, labels)
            if split == "test" and labels.problem_type == "single_label_classification":
                plot_confusion(output_dir, raw[split]["labels"], logits, labels)
    # 10. card, plots, results, push
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(output_dir)
        save_results(output_dir, results, model_args, data_args, time.perf_counter() - started)
        plots = plot_curves(output_dir, trainer.state.log_history)
        if (output_dir / "confusion_matrix.png").exists():
            plots.append("confusion_matrix.png")
        write_card(output_dir, model, labels, model_args, data_args, training_args, results, plots, task, n_params)
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message=f"textgru {task}")
    return results


def parse_and_run(defaults: dict, task: str, args: list[str] | None = None) -> tuple[dict, TrainingArguments]:
    """What a recipe's `main()` does: parse (defaults < JSON config < flags), set up logging, `run_recipe`.

    Args:
        defaults: the recipe's defaults (see `recipe_defaults`).
        task: a short task name for logs and the model card.
        args: command-line arguments (default `sys.argv[1:]`).
    """
    from .recipe_args import parse_recipe_args

    model_args, data_args, training_args = parse_recipe_args(defaults, args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return run_recipe(model_args, data_args, training_args, task=task), training_args
