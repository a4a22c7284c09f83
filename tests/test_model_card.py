"""The model card (README.md) and its plots: Hub-parsable metadata, escaped names, runnable usage snippets."""

import ast
import io
import math
import re
import struct
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml
from huggingface_hub import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from sklearn.metrics import confusion_matrix

from textgru import TextGRUConfig, TextGRUForSequenceClassification
from textgru.model_card import CARD_TAGS, TEMPLATE_PATH, write_model_card
from textgru.plots import confusion_counts, plot_confusion_matrix, plot_training_curves

WORDS = "good great fine bad awful dull plot actor film long short".split()


def _config(num_labels=3, **kwargs):
    defaults = dict(vocab_size=len(WORDS) + 2, embedding_size=16, hidden_size=8, attention_hidden_size=8)
    return TextGRUConfig(num_labels=num_labels, **{**defaults, **kwargs})


def _card_kwargs(**overrides):
    kwargs = dict(
        model_name="textgru-reviews",
        config=_config(),
        label_names=["negative", "neutral", "positive"],
        problem_type="single_label_classification",
        dataset_name="stanfordnlp/imdb",
        dataset_description="Movie reviews from IMDb.",
        hyperparameters={"learning_rate": 1e-3, "per_device_train_batch_size": 32, "max_length": 256},
        eval_results={
            # trainer.evaluate() prefixes "eval_", trainer.predict(metric_key_prefix=split) the split's name
            "validation": {"eval_loss": 0.41, "validation_accuracy": 0.9, "eval_f1_macro": 0.88, "eval_runtime": 3.2},
            "test": {
                "test_accuracy": 0.87,
                "test_matthews_correlation": float("nan"),
                "test_model_preparation_time": 0.01,
                "test_tokens_per_second": 900.0,
                "epoch": 3.0,
            },
        },
        text_columns=["text"],
        base_tokenizer="a WordLevel tokenizer built on the training set",
        plots=[],
        repo_id="someone/textgru-reviews",
        training_time_s=125.0,
        extra_notes=None,
    )
    kwargs.update(overrides)
    return kwargs


def _front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, flags=re.S)
    assert match, "the card must start with a YAML block"
    return yaml.safe_load(match.group(1))


# ---------------------------------------------------------------- metadata


def test_card_metadata_parses_as_the_hub_expects(tmp_path):
    path = write_model_card(tmp_path, **_card_kwargs(license="apache-2.0", language="en", num_parameters=12345))
    assert path == tmp_path / "README.md"
    text = path.read_text()
    meta = _front_matter(text)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    assert set(CARD_TAGS) <= set(meta["tags"])
    assert meta["datasets"] == ["stanfordnlp/imdb"]
    assert meta["license"] == "apache-2.0" and meta["language"] == "en"

    card = ModelCard.load(path)
    assert card.data.model_name == "textgru-reviews"
    name, results = model_index_to_eval_results(metadata_load(path)["model-index"])
    assert name == "textgru-reviews"
    found = {(r.dataset_split, r.metric_name): r.metric_value for r in results}
    # Trainer prefixes are stripped; losses, bookkeeping and nan values stay out of the model-index.
    assert found == {
        ("validation", "Accuracy"): 0.9,
        ("validation", "F1 (macro)"): 0.88,
        ("test", "Accuracy"): 0.87,
    }
    assert all(r.task_type == "text-classification" and r.dataset_type == "stanfordnlp/imdb" for r in results)
    assert {r.metric_type for r in results} == set(meta["metrics"]) == {"accuracy", "f1"}
    assert [r.metric_args for r in results if r.metric_name == "F1 (macro)"] == [{"average": "macro"}]


def test_odd_names_are_escaped(tmp_path):
    labels = ["neg: bad", 'say "hi"', "a|b", "# not a comment", "<b>bold</b>"]
    kwargs = _card_kwargs(
        model_name='model: "quoted" #1',
        dataset_name="reviews: my 'local' set",  # not a Hub id: no `datasets:` entry, model-index type "custom"
        label_names=labels,
        config=_config(num_labels=len(labels)),
    )
    path = write_model_card(tmp_path, **kwargs)
    text = path.read_text()
    meta = _front_matter(text)
    assert "datasets" not in meta
    assert meta["model-index"][0]["name"] == 'model: "quoted" #1'
    name, results = model_index_to_eval_results(metadata_load(path)["model-index"])
    assert name == 'model: "quoted" #1'
    assert {r.dataset_name for r in results} == {"reviews: my 'local' set"}
    assert {r.dataset_type for r in results} == {"custom"}

    rows = [line for line in text.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == len(labels)
    assert r"| 2 | a\|b |" in rows  # a pipe would split the cell
    assert "| 4 | &lt;b&gt;bold&lt;/b&gt; |" in rows  # no raw HTML
    for row in rows:  # every row still has exactly two cells
        assert len(re.split(r"(?<!\\)\|", row.strip())) == 4


def test_card_sections_describe_the_model(tmp_path):
    config = _config(num_hidden_layers=3, residual="gated", pooling="attention", num_attention_heads=2)
    text = write_model_card(tmp_path, **_card_kwargs(config=config, num_parameters=54321)).read_text()
    assert "$" not in text  # every placeholder was filled
    for heading in ("## Model description", "## Intended uses", "### Limitations", "## Training data", "### Labels"):
        assert heading in text
    assert "3 bidirectional GRU layers" in text and "8 units per direction" in text
    assert "gated (highway)" in text and "2 heads" in text
    assert "54,321" in text
    assert "truncated to 256 tokens" in text  # max_length from the hyper-parameters
    assert "classifier's bias" in text  # empty text behaviour
    assert "2 min 05 s" in text
    assert "| learning_rate | 0.001 |" in text
    table = text[text.index("| metric |") :].split("\n\n")[0].splitlines()
    assert table[0] == "| metric | validation | test |"
    assert "| accuracy | 0.9000 | 0.8700 |" in table
    assert "| matthews_correlation | - | n/a |" in table
    assert not any(word in line for line in table for word in ("runtime", "epoch", "per_second", "preparation"))
    assert len(table) == 2 + 4  # header, rule, loss, accuracy, f1_macro, matthews_correlation
    assert "srivastava2015highway" in text and "lin2017structured" in text and "he2016resnet" not in text


def test_plots_are_embedded_relative_to_the_model_folder(tmp_path):
    (tmp_path / "plots").mkdir()
    curves = plot_training_curves([{"loss": 1.0, "step": 1}, {"loss": 0.5, "step": 2}], tmp_path / "curves.png")
    text = write_model_card(tmp_path, **_card_kwargs(plots=[str(curves), "plots/confusion_matrix.png"])).read_text()
    assert "![Curves](curves.png)" in text
    assert "![Confusion matrix](plots/confusion_matrix.png)" in text
    with pytest.raises(ValueError, match="outside"):
        write_model_card(tmp_path, **_card_kwargs(plots=[str(tmp_path.parent / "elsewhere.png")]))
    with pytest.raises(ValueError, match="relative"):
        write_model_card(tmp_path, **_card_kwargs(plots=["../elsewhere.png"]))


def test_bad_arguments_are_refused_without_writing(tmp_path):
    with pytest.raises(FileNotFoundError, match="save the model there"):
        write_model_card(tmp_path / "missing", **_card_kwargs())
    with pytest.raises(ValueError, match="problem_type"):
        write_model_card(tmp_path, **_card_kwargs(problem_type="classification"))
    with pytest.raises(ValueError, match="label_names"):
        write_model_card(tmp_path, **_card_kwargs(label_names=[]))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_template_ships_as_package_data():
    assert TEMPLATE_PATH.is_file()
    package = TEMPLATE_PATH.parents[1]
    assert TEMPLATE_PATH in list(package.glob("templates/*"))


# ---------------------------------------------------------------- usage snippets run


def _save_tiny_model(folder: Path, problem_type: str, num_labels: int) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, **{word: i + 2 for i, word in enumerate(WORDS)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    tokenizer.model_max_length = 64
    labels = [f"label {i}" for i in range(num_labels)]
    config = _config(
        num_labels=num_labels,
        problem_type=problem_type,
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )
    TextGRUForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.mark.parametrize(
    "problem_type, num_labels, text_columns",
    [
        ("single_label_classification", 3, ["text"]),
        ("multi_label_classification", 4, ["text"]),
        ("regression", 1, ["text"]),
        ("single_label_classification", 2, ["premise", "hypothesis"]),
    ],
)
def test_usage_snippets_run_against_a_saved_model(tmp_path, problem_type, num_labels, text_columns):
    folder = tmp_path / "model"
    _save_tiny_model(folder, problem_type, num_labels)
    labels = [f"label {i}" for i in range(num_labels)]
    kwargs = _card_kwargs(
        problem_type=problem_type,
        config=_config(num_labels=num_labels),
        label_names=labels,
        text_columns=text_columns,
        repo_id=str(folder),
    )
    text = write_model_card(folder, **kwargs).read_text()
    snippets = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(snippets) == 2
    assert "trust_remote_code=True" in snippets[0] and 'pipeline("text-classification"' in snippets[1]
    printed = []
    for snippet in snippets:
        output = io.StringIO()
        with redirect_stdout(output):
            exec(compile(snippet, "model_card_snippet", "exec"), {})
        printed.append(ast.literal_eval(output.getvalue().strip()))
    direct, piped = printed
    # The snippets feed the same first text, so the pipeline must agree with the direct call.
    if problem_type == "single_label_classification":
        assert len(direct) == (1 if len(text_columns) == 2 else 2) and set(direct) <= set(labels)
        piped = piped[0] if isinstance(piped, list) else piped
        assert piped["label"] == direct[0]
    elif problem_type == "multi_label_classification":
        assert all(set(row) <= set(labels) for row in direct)
        scores = {entry["label"]: entry["score"] for entry in piped[0]}
        assert set(scores) == set(labels)  # top_k=None: every label with its sigmoid score
        assert {name for name, score in scores.items() if score > 0.5} == set(direct[0])
    else:
        assert len(direct) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in direct)
        assert piped[0]["score"] == pytest.approx(direct[0], abs=1e-5)  # function_to_apply="none": raw value


# ---------------------------------------------------------------- plots


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert len(data) > 5000, "suspiciously small image"
    return struct.unpack(">II", data[16:24])


def _log_history():
    history = [{"loss": 1.0 / (step + 1), "grad_norm": 1.0, "learning_rate": 1e-3, "step": step} for step in range(30)]
    history += [{"eval_loss": 0.5 + i / 10, "eval_accuracy": 0.6 + i / 20, "step": 10 * i, "epoch": i} for i in (1, 2)]
    history.append({"train_runtime": 1.0, "train_loss": 0.3, "step": 30, "epoch": 3.0})
    return history


def test_training_curves_png(tmp_path):
    with_eval = plot_training_curves(_log_history(), tmp_path / "sub" / "curves.png")
    assert with_eval == tmp_path / "sub" / "curves.png"
    width_two_panels, _ = _png_size(with_eval)
    train_only = [entry for entry in _log_history() if "loss" in entry]
    width_one_panel, _ = _png_size(plot_training_curves(train_only, tmp_path / "train_only.png"))
    assert width_two_panels > 1.5 * width_one_panel  # the metric panel appears only with eval entries
    eval_only = [entry for entry in _log_history() if "eval_loss" in entry]
    _png_size(plot_training_curves(eval_only, tmp_path / "eval_only.png", metric="accuracy"))


def test_training_curves_refuse_empty_or_wrong_input(tmp_path):
    with pytest.raises(ValueError, match="logging_steps"):
        plot_training_curves([], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="logging_steps"):
        plot_training_curves([{"train_runtime": 1.0, "step": 3}], tmp_path / "empty.png")
    with pytest.raises(ValueError, match="eval_f1_micro"):
        plot_training_curves(_log_history(), tmp_path / "x.png", metric="f1_micro")
    with pytest.raises(ValueError, match=".png"):
        plot_training_curves(_log_history(), tmp_path / "curves.jpg")
    assert list(tmp_path.iterdir()) == []


def test_confusion_counts_match_sklearn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    y_true[y_true == 3] = 4  # class 3 never occurs
    counts = confusion_counts(y_true, y_pred, 8)  # class 7 never occurs nor is predicted
    np.testing.assert_array_equal(counts, confusion_matrix(y_true, y_pred, labels=range(8)))
    assert confusion_counts([0, 1, 1], [0, 1, 0], 2).tolist() == [[1, 0], [1, 1]]
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_counts([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="length"):
        confusion_counts([0, 1], [0], 2)


@pytest.mark.parametrize("num_classes", [3, 52])
def test_confusion_matrix_png_scales_with_classes(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    y_true = rng.integers(0, num_classes, 400)
    y_pred = np.where(rng.random(400) < 0.6, y_true, rng.integers(0, num_classes, 400))
    names = [f"class number {i} with a rather long name" for i in range(num_classes)]
    path = plot_confusion_matrix(y_true, y_pred, names, tmp_path / "cm.png")
    width, height = _png_size(path)
    if num_classes == 52:
        assert min(width, height) > 1200  # ~0.3 inch per class keeps 52 tick labels legible
    else:
        assert max(width, height) < 1000
    raw = plot_confusion_matrix(y_true, y_pred, names, tmp_path / "raw.png", normalize=False)
    _png_size(raw)
    with pytest.raises(ValueError, match="label_names"):
        plot_confusion_matrix(y_true, y_pred, [], tmp_path / "none.png")
