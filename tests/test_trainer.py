"""TextGRU under `transformers.Trainer`: it learns a simple rule, checkpoints, and resumes exactly where it stopped."""

import random

import pytest
import torch
from datasets import Dataset
from tiny_models import tiny_classifier
from transformers import DataCollatorWithPadding, PreTrainedTokenizerFast, Trainer, TrainingArguments

from textgru import TextGRUForSequenceClassification

VOCAB = 50
MARKER = 7  # label 1 means "token 7 occurs somewhere in the sequence"
STEPS, SAVE_AT, BATCH = 80, 40, 16


def make_dataset(size: int, seed: int) -> Dataset:
    """Sequences of 3-24 random tokens; half of them contain the marker once, at a random place."""
    rng = random.Random(seed)
    others = [t for t in range(2, VOCAB) if t != MARKER]
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    for _ in range(size):
        ids = rng.choices(others, k=rng.randint(3, 24))
        label = rng.random() < 0.5
        if label:
            ids[rng.randrange(len(ids))] = MARKER
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * len(ids))
        rows["labels"].append(int(label))
    return Dataset.from_dict(rows)


def build_word_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose ids are the dataset's ids: only its padding matters to the collator."""
    from tokenizers import Tokenizer, models

    vocab = {"[PAD]": 0, "[UNK]": 1, **{f"w{i}": i for i in range(2, VOCAB)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


@pytest.fixture(scope="module")
def word_tokenizer():
    return build_word_tokenizer()


def make_model(seed: int, tokenizer) -> TextGRUForSequenceClassification:
    return tiny_classifier(tokenizer, seed, num_labels=2)


def make_trainer(model, tokenizer, output_dir, dataset) -> Trainer:
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=STEPS,
        per_device_train_batch_size=BATCH,
        learning_rate=5e-3,
        warmup_steps=5,
        logging_steps=10,
        save_strategy="steps",
        save_steps=SAVE_AT,
        train_sampling_strategy="group_by_length",
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    return Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )


def losses(trainer: Trainer) -> dict[int, float]:
    return {entry["step"]: entry["loss"] for entry in trainer.state.log_history if "loss" in entry}


def test_trainer_learns_checkpoints_and_resumes(word_tokenizer, tmp_path):
    dataset = make_dataset(640, seed=0)
    first = make_trainer(make_model(0, word_tokenizer), word_tokenizer, tmp_path / "run", dataset)
    first.train()
    logged = losses(first)
    assert sorted(logged) == list(range(10, STEPS + 1, 10))
    assert logged[STEPS] < 0.5 * logged[10], f"training loss did not fall clearly: {logged}"

    checkpoint = tmp_path / "run" / f"checkpoint-{SAVE_AT}"
    assert (checkpoint / "model.safetensors").is_file()
    assert (checkpoint / "modeling_textgru.py").is_file()  # checkpoints carry the code too
    assert (checkpoint / "tokenizer.json").is_file() and (checkpoint / "trainer_state.json").is_file()
    assert (tmp_path / "run" / f"checkpoint-{STEPS}").is_dir()

    # A fresh model with different weights: everything it ends with must come from the checkpoint.
    second = make_trainer(make_model(1, word_tokenizer), word_tokenizer, tmp_path / "resumed", dataset)
    output = second.train(resume_from_checkpoint=str(checkpoint))
    assert output.global_step == STEPS and second.state.global_step == STEPS
    resumed = losses(second)
    assert sorted(resumed) == sorted(logged)  # the history up to the checkpoint comes back with it
    for step in range(SAVE_AT + 10, STEPS + 1, 10):  # same weights, optimizer, schedule and data order
        assert resumed[step] == pytest.approx(logged[step], rel=1e-4, abs=1e-6), step

    for name, param in second.model.named_parameters():
        assert torch.isfinite(param).all(), name
        torch.testing.assert_close(param, first.model.state_dict()[name], rtol=0, atol=1e-4)
