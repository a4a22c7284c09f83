"""Loading files, label encoding, validation carving, text checks and tokenization (generated data, plus real sets)."""

import json
import random
from collections import Counter

import pandas as pd
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value
from transformers import DataCollatorWithPadding

from textgru import TextGRUConfig, TextGRUForSequenceClassification
from textgru.data import (
    LabelInfo,
    carve_validation,
    check_text_columns,
    load_raw_datasets,
    prepare_labels,
    tokenize_datasets,
)
from textgru.tokenization import check_tokenizer_matches_model, train_tokenizer

WORDS = "good bad film plot actor great boring funny the a is was not very, and".split()


def rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8))) + ', "quoted"\ttab',
            "topic": rng.choice(["sports", "politics", "tech"]),
            "stars": rng.randint(1, 5),
        }
        for _ in range(n)
    ]


def write(path, records: list[dict]) -> str:
    frame = pd.DataFrame(records)
    name = path.name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        frame.to_csv(path, index=False, sep="\t")
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    elif name.endswith(".json"):
        path.write_text(json.dumps(records))
    else:
        frame.to_parquet(path)
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    texts = [r["text"] for r in rows(300)]
    return train_tokenizer(texts, algorithm="bpe", vocab_size=300, model_max_length=64, show_progress=False)


# --- load_raw_datasets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extension", ["csv", "tsv", "json", "jsonl", "parquet"])
def test_load_every_file_format(tmp_path, extension):
    data = {"train": rows(20, 0), "validation": rows(7, 1), "test": rows(5, 2)}
    files = {f"{split}_file": write(tmp_path / f"{split}.{extension}", recs) for split, recs in data.items()}
    raw = load_raw_datasets(**files)
    assert list(raw) == ["train", "validation", "test"]
    for split, records in data.items():
        assert raw[split].num_rows == len(records)
        assert raw[split]["text"][:] == [r["text"] for r in records]  # commas, quotes and tabs survive
        assert raw[split]["stars"][:] == [r["stars"] for r in records]


def test_load_train_only_and_compressed(tmp_path):
    path = tmp_path / "train.csv.gz"
    pd.DataFrame(rows(10)).to_csv(path, index=False, compression="gzip")
    raw = load_raw_datasets(train_file=str(path))
    assert list(raw) == ["train"] and raw["train"].num_rows == 10


def test_load_errors_name_the_problem(tmp_path):
    csv = write(tmp_path / "train.csv", rows(5))
    parquet = write(tmp_path / "test.parquet", rows(5))
    with pytest.raises(ValueError, match="share one format.*csv.*parquet"):
        load_raw_datasets(train_file=csv, test_file=parquet)
    txt = tmp_path / "train.txt"
    txt.write_text("hello")
    with pytest.raises(ValueError, match=r"train\.txt.*unknown extension '\.txt'.*\.parquet"):
        load_raw_datasets(train_file=str(txt))
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_raw_datasets(train_file=csv, validation_file=missing)
    with pytest.raises(ValueError, match="no train_file"):
        load_raw_datasets(validation_file=csv)
    with pytest.raises(ValueError, match="No data given"):
        load_raw_datasets()


def test_hub_name_offline_error_says_how_to_fix():
    with pytest.raises(ConnectionError, match="needs internet.*--train_file"):
        load_raw_datasets(dataset_name="no-such-user/no-such-dataset")


def test_files_win_over_dataset_name_and_extra_splits_are_dropped(tmp_path, monkeypatch):
    csv = write(tmp_path / "train.csv", rows(4))
    assert load_raw_datasets(dataset_name="no-such-user/no-such-dataset", train_file=csv)["train"].num_rows == 4
    hub = DatasetDict({s: Dataset.from_list(rows(3)) for s in ["train", "test", "unsupervised"]})
    monkeypatch.setattr("textgru.data.datasets.load_dataset", lambda *args, **kwargs: hub)
    assert list(load_raw_datasets(dataset_name="some/imdb")) == ["train", "test"]
    hub.pop("train")
    with pytest.raises(ValueError, match=r"no 'train' split \(splits: \['test', 'unsupervised'\]\)"):
        load_raw_datasets(dataset_name="some/imdb")
    with pytest.raises(FileNotFoundError, match="looks like a local path"):
        load_raw_datasets(dataset_name=str(tmp_path / "missing_folder"))


# --- prepare_labels ---------------------------------------------------------------------------------------------


def dd(**splits) -> DatasetDict:
    return DatasetDict({name: Dataset.from_dict(columns) for name, columns in splits.items()})


def test_class_label_order_is_kept():
    features = Features({"text": Value("string"), "label": ClassLabel(names=["pos", "neg", "neutral"])})
    raw = DatasetDict(
        train=Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, 2]}, features=features),
        test=Dataset.from_dict({"text": ["d"], "label": [0]}, features=features),
    )
    out, info = prepare_labels(raw, "label")
    assert info == LabelInfo("single_label_classification", ["pos", "neg", "neutral"], 3)
    assert out["train"]["labels"][:] == [1, 0, 2] and out["test"]["labels"][:] == [0]
    assert out["train"].features["labels"].names == ["pos", "neg", "neutral"]


def test_string_labels_sorted_and_encoded():
    raw = dd(
        train={"text": list("abcd"), "y": ["tech", "arts", "tech", "sports"]},
        validation={"text": ["e"], "y": ["arts"]},
    )
    out, info = prepare_labels(raw, "y")
    assert info.label_names == ["arts", "sports", "tech"]
    assert info.id2label == {0: "arts", 1: "sports", 2: "tech"} and info.label2id["tech"] == 2
    assert out["train"]["labels"][:] == [2, 0, 2, 1] and out["validation"]["labels"][:] == [0]
    assert out["train"]["y"][:] == ["tech", "arts", "tech", "sports"]  # the raw column stays


def test_int_labels_sorted_numerically():
    raw = dd(train={"text": list("abcd"), "y": [10, 2, 1, 10]})
    out, info = prepare_labels(raw, "y")
    assert info.label_names == ["1", "2", "10"]  # not "1", "10", "2"
    assert out["train"]["labels"][:] == [2, 1, 0, 2]
    assert info.config_kwargs() == {
        "num_labels": 3,
        "id2label": {0: "1", 1: "2", 2: "10"},
        "label2id": {"1": 0, "2": 1, "10": 2},
        "problem_type": "single_label_classification",
    }


def test_existing_labels_column_is_replaced():
    out, info = prepare_labels(dd(train={"text": ["a", "b"], "labels": ["y", "x"]}), "labels")
    assert out["train"]["labels"][:] == [1, 0] and out["train"].column_names == ["text", "labels"]


def test_multi_label_from_list_column():
    raw = dd(
        train={"text": list("abc"), "tags": [["sci", "art"], [], ["art"]]},
        test={"text": ["d"], "tags": [["sci"]]},
    )
    out, info = prepare_labels(raw, "tags")
    assert info.problem_type == "multi_label_classification" and info.label_names == ["art", "sci"]
    assert out["train"]["labels"][:] == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    assert out["test"]["labels"][:] == [[0.0, 1.0]]
    assert out["train"].features["labels"] == List(Value("float32"))
    features = Features({"text": Value("string"), "tags": List(ClassLabel(names=["z", "a", "m"]))})
    raw = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "tags": [[2, 0], [1]]}, features=features))
    out, info = prepare_labels(raw, "tags")
    assert info.label_names == ["z", "a", "m"]  # the ClassLabel order, not sorted
    assert out["train"]["labels"][:] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_multi_label_from_delimited_string():
    raw = dd(train={"text": list("abc"), "tags": ["sci | art", "", "art"]})
    out, info = prepare_labels(raw, "tags", label_delimiter="|")
    assert info.problem_type == "multi_label_classification" and info.label_names == ["art", "sci"]
    assert out["train"]["labels"][:] == [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]
    with pytest.raises(ValueError, match="label_delimiter"):
        prepare_labels(raw, "tags", problem_type="multi_label_classification")


def test_regression():
    raw = dd(train={"text": list("abc"), "score": [0.5, 2.0, -1.25]}, test={"text": ["d"], "score": [3.0]})
    out, info = prepare_labels(raw, "score")
    assert info.problem_type == "regression" and info.num_labels == 1 and info.label_names == []
    assert out["train"]["labels"][:] == [0.5, 2.0, -1.25] and out["train"].features["labels"] == Value("float32")
    ints, info = prepare_labels(dd(train={"text": ["a", "b"], "stars": [1, 4]}), "stars", problem_type="regression")
    assert ints["train"]["labels"][:] == [1.0, 4.0] and info.problem_type == "regression"
    with pytest.raises(ValueError, match="numeric"):
        prepare_labels(dd(train={"text": ["a"], "y": ["high"]}), "y", problem_type="regression")
    with pytest.raises(ValueError, match="regression"):
        prepare_labels(raw, "score", problem_type="single_label_classification")


def test_label_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"'label' not found in split 'train'.*\['text', 'y'\]"):
        prepare_labels(dd(train={"text": ["a"], "y": [1]}), "label")
    unseen = dd(train={"text": ["a", "b"], "y": ["x", "y"]}, test={"text": ["c"], "y": ["z"]})
    with pytest.raises(ValueError, match=r"'test' has labels never seen in 'train': \['z'\]"):
        prepare_labels(unseen, "y")
    with pytest.raises(ValueError, match="missing label.*split 'train' at row 1"):
        prepare_labels(dd(train={"text": ["a", "b"], "y": ["x", None]}), "y")
    with pytest.raises(ValueError, match="missing label.*row 0"):
        prepare_labels(dd(train={"text": ["a"], "y": [float("nan")]}), "y")
    features = Features({"text": Value("string"), "y": ClassLabel(names=["n", "p"])})
    unlabelled = Dataset.from_dict({"text": ["a"], "y": [-1]}, features=features)
    with pytest.raises(ValueError, match=r"missing label \(-1\)"):
        prepare_labels(DatasetDict(train=unlabelled), "y")
    with pytest.raises(ValueError, match="problem_type"):
        prepare_labels(dd(train={"text": ["a"], "y": [1]}), "y", problem_type="classification")
    with pytest.raises(ValueError, match="multi_label"):
        prepare_labels(dd(train={"text": ["a"], "y": [["x"]]}), "y", problem_type="single_label_classification")


# --- carve_validation ---------------------------------------------------------------------------------------------


def imbalanced(n: int = 1000) -> DatasetDict:
    labels = ["a"] * int(0.7 * n) + ["b"] * int(0.2 * n) + ["c"] * int(0.1 * n)
    random.Random(1).shuffle(labels)
    raw = dd(
        train={"id": list(range(n)), "text": ["t"] * n, "y": labels}, test={"id": [-1], "text": ["t"], "y": ["a"]}
    )
    return prepare_labels(raw, "y")[0]


def test_carve_validation_sizes_partition_and_stratification():
    raw = imbalanced()
    out = carve_validation(raw, validation_fraction=0.1, seed=3)
    assert list(out) == ["train", "validation", "test"] and out["test"]["id"][:] == [-1]
    assert (out["train"].num_rows, out["validation"].num_rows) == (900, 100)
    train_ids, val_ids = set(out["train"]["id"][:]), set(out["validation"]["id"][:])
    assert not train_ids & val_ids and train_ids | val_ids == set(range(1000))
    share = Counter(out["validation"]["y"][:])
    assert abs(share["a"] - 70) <= 1 and abs(share["b"] - 20) <= 1 and abs(share["c"] - 10) <= 1


def test_carve_validation_is_deterministic_by_seed():
    raw = imbalanced()
    first = carve_validation(raw, seed=7)["validation"]["id"][:]
    assert carve_validation(raw, seed=7)["validation"]["id"][:] == first
    assert carve_validation(raw, seed=8)["validation"]["id"][:] != first


def test_carve_validation_stratifies_a_plain_string_column():
    raw = imbalanced().remove_columns("labels")
    out = carve_validation(raw, validation_fraction=0.2, stratify_column="y")
    share = Counter(out["validation"]["y"][:])
    assert abs(share["a"] - 140) <= 1 and abs(share["c"] - 20) <= 1
    assert out["validation"].column_names == ["id", "text", "y"]  # no helper column left behind


def test_carve_validation_noop_random_and_errors():
    raw = imbalanced()
    with_val = DatasetDict(train=raw["train"], validation=raw["test"])
    assert carve_validation(with_val) is with_val
    multi = prepare_labels(dd(train={"text": ["t"] * 20, "y": [["a"], ["b"]] * 10}), "y")[0]
    assert carve_validation(multi, validation_fraction=0.25)["validation"].num_rows == 5  # random, not stratified
    assert carve_validation(raw, stratify_column=None)["validation"].num_rows == 100
    with pytest.raises(ValueError, match="no such column.*stratify_column=None"):
        carve_validation(raw, stratify_column="label")
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        carve_validation(raw, validation_fraction=1.5)
    # a class with one training row (R52 has several) stays in train; the others are split per class
    single = prepare_labels(dd(train={"text": ["t"] * 11, "y": ["a"] * 10 + ["rare"]}), "y")[0]
    carved = carve_validation(single, validation_fraction=0.2)
    assert carved["validation"].num_rows == 2 and carved["train"].num_rows == 9
    rare = single["train"].features["labels"].str2int("rare")
    assert rare in carved["train"]["labels"] and rare not in carved["validation"]["labels"]
    only_singletons = prepare_labels(dd(train={"text": ["t", "u"], "y": ["a", "b"]}), "y")[0]
    with pytest.raises(ValueError, match="every class is too small"):
        carve_validation(only_singletons, validation_fraction=0.5)


# --- check_text_columns -------------------------------------------------------------------------------------------


def test_check_text_columns():
    check_text_columns(dd(train={"text": ["a", ""], "b": ["x", "y"]}), ["text", "b"])  # "" is fine
    with pytest.raises(ValueError, match=r"'body' not found in split 'train'.*\['text', 'y'\]"):
        check_text_columns(dd(train={"text": ["a"], "y": [1]}), ["body"])
    with pytest.raises(ValueError, match="'text' in split 'test' has 2 missing.*first at row 1"):
        check_text_columns(dd(train={"text": ["a"]}, test={"text": ["a", None, "c", None]}), ["text"])
    with pytest.raises(ValueError, match="'validation' is empty"):
        check_text_columns(
            DatasetDict(train=Dataset.from_dict({"text": ["a"]}), validation=Dataset.from_dict({"text": []})), ["text"]
        )
    with pytest.raises(ValueError, match="one text column or two"):
        check_text_columns(dd(train={"a": ["x"], "b": ["y"], "c": ["z"]}), ["a", "b", "c"])
    with pytest.raises(ValueError, match="not text"):
        check_text_columns(dd(train={"text": ["a"], "y": [1]}), ["y"])


# --- tokenize_datasets --------------------------------------------------------------------------------------------


def test_tokenize_single_and_pair(tokenizer):
    raw = prepare_labels(dd(train={"a": ["good film", "", "bad"], "b": ["plot", "x", ""], "y": [1, 0, 1]}), "y")[0]
    single = tokenize_datasets(raw, tokenizer, ["a"])["train"]
    assert single.column_names == ["labels", "input_ids", "attention_mask"]
    assert single["input_ids"][:] == tokenizer(["good film", "", "bad"])["input_ids"]
    assert single[1]["input_ids"] == [] and single["labels"][:] == [1, 0, 1]
    pair = tokenize_datasets(raw, tokenizer, ["a", "b"], return_length=True)["train"]
    assert pair[0]["input_ids"] == tokenizer("good film", "plot")["input_ids"]
    assert tokenizer.sep_token_id in pair[0]["input_ids"] and pair["length"][:] == [len(x) for x in pair["input_ids"]]


def test_tokenize_truncates_long_texts(tokenizer):
    raw = dd(train={"text": ["good film " * 10_000, "bad"]})  # 100k characters
    assert len(raw["train"][0]["text"]) == 100_000
    out = tokenize_datasets(raw, tokenizer, ["text"])["train"]
    assert [len(x) for x in out["input_ids"]] == [64, len(tokenizer("bad")["input_ids"])]  # model_max_length
    assert len(tokenize_datasets(raw, tokenizer, ["text"], max_length=10)["train"][0]["input_ids"]) == 10
    tokenizer_without_limit = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, pad_token="[PAD]")
    assert len(tokenize_datasets(raw, tokenizer_without_limit, ["text"])["train"][0]["input_ids"]) == 512


@pytest.mark.parametrize(
    ("labels", "kwargs"),
    [(["x", "y", "z", "x"], {}), (["x|y", "", "z", "y"], {"label_delimiter": "|"}), ([0.5, 1.0, -2.0, 3.0], {})],
    ids=["single", "multi", "regression"],
)
def test_encoded_batches_feed_the_model(tokenizer, labels, kwargs):
    raw = dd(train={"text": ["good film", "", "the plot was not very funny", "bad"], "y": labels})
    check_text_columns(raw, ["text"])
    raw, info = prepare_labels(raw, "y", **kwargs)
    tokenized = tokenize_datasets(raw, tokenizer, ["text"])
    batch = DataCollatorWithPadding(tokenizer)([tokenized["train"][i] for i in range(4)])
    config = TextGRUConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=16, attention_hidden_size=16)
    config.update(info.config_kwargs())
    check_tokenizer_matches_model(tokenizer, config)
    torch.manual_seed(0)
    output = TextGRUForSequenceClassification(config)(**batch)
    assert output.logits.shape == (4, info.num_labels) and torch.isfinite(output.loss)


# --- real data ----------------------------------------------------------------------------------------------------


def test_real_sst2_trec_20ng(shared_data, tokenizer):
    sst2 = load_raw_datasets(
        train_file=str(shared_data / "sst2/train.parquet"),
        validation_file=str(shared_data / "sst2/validation.parquet"),
        test_file=str(shared_data / "sst2/test.parquet"),
    )
    check_text_columns(sst2, ["text"])
    sst2, info = prepare_labels(sst2, "label")
    assert info.label_names == ["negative", "positive"]
    assert {s: d.num_rows for s, d in sst2.items()} == {"train": 6920, "validation": 872, "test": 1821}
    assert sst2["test"]["labels"][:] == sst2["test"]["label"][:]

    trec = load_raw_datasets(
        train_file=str(shared_data / "trec/train.parquet"), test_file=str(shared_data / "trec/test.parquet")
    )
    trec, info = prepare_labels(trec, "coarse_label")
    assert info.num_labels == 6 and "fine_label" in trec["train"].column_names
    trec = carve_validation(trec, validation_fraction=0.1, seed=42)
    train_share, val_share = (Counter(trec[s]["labels"][:]) for s in ("train", "validation"))
    n_train, n_val = trec["train"].num_rows, trec["validation"].num_rows
    assert all(abs(val_share[c] / n_val - train_share[c] / n_train) < 0.01 for c in range(6))
    tokenized = tokenize_datasets(trec, tokenizer, ["text"])
    assert tokenized["validation"].column_names == ["labels", "input_ids", "attention_mask"]

    news = load_raw_datasets(train_file=str(shared_data / "20ng/train.parquet"))
    check_text_columns(news, ["text"])
    news, info = prepare_labels(news, "label")
    assert info.num_labels == 20
