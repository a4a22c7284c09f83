"""The training recipes end to end: generated data in every format, multi-label, regression, configs, errors,
real data, push to a (local) Hub, and multi-process training (slow)."""

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from no_textgru import PREAMBLE

ROOT = Path(__file__).resolve().parents[1]
POSITIVE = ["good", "great", "wonderful", "superb", "moving"]
NEGATIVE = ["bad", "dull", "awful", "boring", "weak"]
FILLER = ["the", "film", "plot", "actor", "was", "a", "and", "story", "really", "quite", "it", "scene"]

# tiny model, few steps: the recipes' machinery is under test, not accuracy on hard data
TINY = [
    "--embedding_size", "16", "--hidden_size", "16", "--tokenizer_vocab_size", "600", "--max_seq_length", "24",
    "--num_train_epochs", "4", "--per_device_train_batch_size", "16", "--learning_rate", "0.01",
    "--logging_steps", "5", "--disable_tqdm", "true", "--save_total_limit", "1",
]  # fmt: skip


def _load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sentiment_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Sentences whose sentiment word decides the label."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(FILLER, k=rng.randint(2, 10))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append({"text": " ".join(words), "label": ["negative", "positive"][label]})
    return pd.DataFrame(rows)


def write(frame: pd.DataFrame, path: Path) -> str:
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix == ".json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))  # a JSON array of records
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    return str(path)


def run_text_classification(args: list[str]) -> dict:
    return _load_recipe("text_classification").main(args)


def test_recipe_trains_saves_and_reports_on_generated_csv(tmp_path):
    train = write(sentiment_frame(400), tmp_path / "train.csv")
    test = write(sentiment_frame(100, seed=1), tmp_path / "test.csv")
    out = tmp_path / "model"
    results = run_text_classification(["--train_file", train, "--test_file", test, "--output_dir", str(out), *TINY])
    # learnt the keyword rule (chance is 0.5)
    assert results["test"]["test_accuracy"] >= 0.85, results["test"]
    assert "validation" in results  # carved from train
    for name in (
        "config.json", "model.safetensors", "configuration_textgru.py", "modeling_textgru.py", "tokenizer.json",
        "README.md", "predictions_test.jsonl", "predictions_validation.jsonl", "all_results.json",
        "training_curves.png", "confusion_matrix.png",
    ):  # fmt: skip
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    predictions = [json.loads(line) for line in (out / "predictions_test.jsonl").read_text().splitlines()]
    assert len(predictions) == 100 and {"text", "label", "prediction", "score"} <= set(predictions[0])
    # rows line up with the test file (v5 length-groups evaluation batches; the recipe undoes that)
    assert [p["text"] for p in predictions] == pd.read_csv(test)["text"].tolist()
    per_row = sum(p["label"] == p["prediction"] for p in predictions) / len(predictions)
    assert per_row == pytest.approx(results["test"]["test_accuracy"])
    card = (out / "README.md").read_text()
    assert "trust_remote_code=True" in card and "training_curves.png" in card
    assert f"{results['test']['test_accuracy']:.4f}"[:4] in card
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["results"]["train"]["train_tokens_per_second"] > 0


@pytest.mark.parametrize("suffix", [".tsv", ".json", ".jsonl", ".parquet"])
def test_recipe_reads_every_file_format(tmp_path, suffix):
    train = write(sentiment_frame(120), tmp_path / f"train{suffix}")
    args = ["--train_file", train, "--output_dir", str(tmp_path / "m"), *TINY, "--num_train_epochs", "1"]
    results = run_text_classification(args)
    assert results["train"]["train_runtime"] > 0 and "validation_accuracy" in results["validation"]


def test_json_config_with_command_line_overrides_and_data_dir(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(sentiment_frame(150), data / "train.parquet")
    write(sentiment_frame(40, seed=3), data / "test.parquet")
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "_doc": "a test config",
                "train_file": "train.parquet",
                "test_file": "test.parquet",
                "num_train_epochs": 7,
                "hidden_size": 8,
            }
        )  # fmt: skip
    )
    out = tmp_path / "m"
    args = [str(config), "--data_dir", str(data), "--output_dir", str(out), *TINY, "--num_train_epochs", "1"]
    results = run_text_classification(args)
    assert results["train"]["epoch"] == pytest.approx(1.0)  # the flag beat the file
    saved = json.loads((out / "config.json").read_text())
    assert saved["hidden_size"] == 16  # TINY's flag beat the file's 8
    assert "test" in results


def test_unknown_config_keys_are_rejected(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"train_file": "x.csv", "hiden_size": 8}))
    with pytest.raises(ValueError, match="unknown keys.*hiden_size"):
        run_text_classification([str(config), "--output_dir", str(tmp_path / "m")])


def test_missing_text_column_names_the_existing_columns(tmp_path):
    train = write(sentiment_frame(50), tmp_path / "train.csv")
    with pytest.raises(ValueError, match=r"sentence.*text"):
        run_text_classification(
            ["--train_file", train, "--text_column_names", "sentence", "--output_dir", str(tmp_path / "m"), *TINY]
        )
    assert not (tmp_path / "m" / "model.safetensors").exists()  # nothing half-written


def test_label_unseen_in_train_is_an_error(tmp_path):
    train = write(sentiment_frame(60), tmp_path / "train.csv")
    frame = sentiment_frame(10, seed=2)
    frame.loc[3, "label"] = "neutral"
    test = write(frame, tmp_path / "test.csv")
    with pytest.raises(ValueError, match="neutral"):
        run_text_classification(
            ["--train_file", train, "--test_file", test, "--output_dir", str(tmp_path / "m"), *TINY]
        )


def test_multi_label_recipe_with_delimited_labels(tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(300):
        tags = sorted({t for t in ("sports", "politics", "music") if rng.random() < 0.4}) or ["music"]
        words = rng.choices(FILLER, k=4) + [f"{t}word" for t in tags]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "tags": ",".join(tags)})
    train = write(pd.DataFrame(rows), tmp_path / "train.csv")
    out = tmp_path / "m"
    results = run_text_classification(
        [
            "--train_file",
            train,
            "--label_column_name",
            "tags",
            "--label_delimiter",
            ",",
            "--test_split_percentage",
            "15",
            "--output_dir",
            str(out),
            *TINY,
            "--num_train_epochs",
            "8",
        ]  # fmt: skip
    )
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["label2id"]) == ["music", "politics", "sports"]
    assert results["test"]["test_f1_micro"] > 0.8
    first = json.loads((out / "predictions_test.jsonl").read_text().splitlines()[0])
    assert isinstance(first["prediction"], list)


def test_regression_recipe_with_a_float_column(tmp_path):
    rng = random.Random(0)
    rows = []
    for _ in range(300):
        n = rng.randint(0, 4)
        words = rng.choices(FILLER, k=4) + ["great"] * n
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": float(n)})
    train = write(pd.DataFrame(rows), tmp_path / "train.parquet")
    out = tmp_path / "m"
    results = run_text_classification(
        [
            "--train_file",
            train,
            "--label_column_name",
            "score",
            "--test_split_percentage",
            "15",
            "--output_dir",
            str(out),
            *TINY,
            "--num_train_epochs",
            "8",
        ]  # fmt: skip
    )
    assert json.loads((out / "config.json").read_text())["problem_type"] == "regression"
    assert results["test"]["test_pearson"] > 0.8


def test_folds_filters_and_carved_test_split(tmp_path):
    frame = sentiment_frame(200)
    frame["fold"] = [i % 5 for i in range(len(frame))]
    frame["source"] = ["keep" if i % 4 else "drop" for i in range(len(frame))]
    train = write(frame, tmp_path / "all.parquet")
    out = tmp_path / "m"
    common = ["--train_file", train, "--filter_rows", "source=keep", *TINY, "--num_train_epochs", "1"]
    run_text_classification([*common, "--fold_column", "fold", "--test_fold", "2", "--output_dir", str(out)])
    n_test = len((out / "predictions_test.jsonl").read_text().splitlines())
    assert n_test == sum((frame.fold == 2) & (frame.source == "keep"))
    run_text_classification([*common, "--test_split_percentage", "20", "--output_dir", str(out)])
    assert len((out / "predictions_test.jsonl").read_text().splitlines()) == 30  # 20% of the 150 kept rows


def test_time_budget_stops_training_early(tmp_path):
    train = write(sentiment_frame(300), tmp_path / "train.csv")
    results = run_text_classification(
        [
            "--train_file",
            train,
            "--output_dir",
            str(tmp_path / "m"),
            *TINY,
            "--num_train_epochs",
            "50",
            "--max_train_minutes",
            "0.0001",
            "--early_stopping_patience",
            "0",
        ]  # fmt: skip
    )
    assert results["train"]["epoch"] < 1


def test_pretrained_embeddings_from_unlabelled_text(tmp_path):
    pytest.importorskip("gensim")
    train = write(sentiment_frame(200), tmp_path / "train.csv")
    unlabeled = write(sentiment_frame(500, seed=5)[["text"]], tmp_path / "unlabeled.parquet")
    out = tmp_path / "m"
    results = run_text_classification(
        [
            "--train_file",
            train,
            "--unlabeled_files",
            unlabeled,
            "--pretrain_embeddings",
            "true",
            "--pretrain_epochs",
            "2",
            "--output_dir",
            str(out),
            *TINY,
            "--num_train_epochs",
            "1",
        ]  # fmt: skip
    )
    assert results["train"]["train_loss"] == results["train"]["train_loss"]  # finite, not NaN


def test_sentiment_recipe_on_real_sst2_rows(shared_data, tmp_path):
    out = tmp_path / "sst2"
    results = _load_recipe("sentiment_analysis").main(
        [
            str(ROOT / "recipes" / "configs" / "sst2.json"),
            "--data_dir",
            str(shared_data),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "400",
            "--max_eval_samples",
            "100",
            "--max_predict_samples",
            "100",
            *TINY,
            "--num_train_epochs",
            "2",
        ]  # fmt: skip
    )
    assert 0 <= results["test"]["test_accuracy"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}  # from the parquet ClassLabel


PUSH_AND_LOAD = PREAMBLE + textwrap.dedent(
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    with torch.no_grad():
        logits = model(**tokenizer(["a good film", "a dull plot"], padding=True, return_tensors="pt")).logits
    print(json.dumps({"module": type(model).__module__, "logits": logits.tolist()}))
    """
)


def test_push_to_hub_from_the_recipe_then_load_with_remote_code(local_hub, tmp_path):
    train = write(sentiment_frame(120), tmp_path / "train.csv")
    out = tmp_path / "m"
    env = {**os.environ, **local_hub.env()}
    cmd = [sys.executable, str(ROOT / "recipes" / "sentiment_analysis.py"), "--train_file", train,
           "--output_dir", str(out), *TINY, "--num_train_epochs", "1", "--push_to_hub", "true",
           "--hub_model_id", "user/recipe-textgru"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = local_hub.files("user/recipe-textgru")
    for name in ("config.json", "model.safetensors", "modeling_textgru.py", "configuration_textgru.py",
                 "tokenizer.json", "README.md", "training_curves.png"):  # fmt: skip
        assert name in files, sorted(files)
    assert not any(name.startswith("checkpoint-") for name in files)
    load = subprocess.run(
        [sys.executable, "-c", PUSH_AND_LOAD, "user/recipe-textgru"],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert load.returncode == 0, load.stderr[-3000:]
    report = json.loads(load.stdout.strip().splitlines()[-1])
    assert report["module"].startswith("transformers_modules")

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    local = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        expected = local(**tokenizer(["a good film", "a dull plot"], padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_on_real_data(shared_data, tmp_path):
    """Documented command: torchrun --nproc_per_node 2 recipes/text_classification.py CONFIG --ddp_backend gloo."""
    if shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists():
        pytest.skip("torchrun not found")
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "r8"
    cmd = [torchrun, "--nproc_per_node", "2", str(ROOT / "recipes" / "text_classification.py"),
           str(ROOT / "recipes" / "configs" / "r8.json"), "--data_dir", str(shared_data), "--output_dir", str(out),
           "--ddp_backend", "gloo", "--max_train_samples", "1500", "--max_predict_samples", "500",
           "--max_seq_length", "128", "--num_train_epochs", "2", "--disable_tqdm", "true"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "trainer_state.json").read_text())
    results = json.loads((out / "all_results.json").read_text())["results"]
    # two processes split each epoch: 1500 train rows / (32 per process * 2 processes) = 24 steps per epoch
    assert state["global_step"] == 2 * -(-1500 // 64)
    assert results["test"]["test_accuracy"] > 0.7


@pytest.mark.parametrize("name", ["text_classification", "sentiment_analysis"])
def test_recipe_help_lists_the_arguments(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load_recipe(name).main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--validation_split_percentage" in out and "--unlabeled_files" in out and "--learning_rate" in out
