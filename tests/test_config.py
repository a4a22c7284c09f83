"""TextGRUConfig: documented defaults, JSON round trips, and a clear `ValueError` for every bad value."""

import json

import pytest
from transformers import AutoConfig

from textgru import TextGRUConfig

TINY = {"vocab_size": 100, "embedding_size": 24, "hidden_size": 16, "num_hidden_layers": 2}


def test_defaults_match_the_documented_values():
    config = TextGRUConfig()
    expected = {
        "vocab_size": 16000,
        "embedding_size": 128,
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "bidirectional": True,
        "residual": "add",
        "layer_norm": True,
        "embedding_dropout": 0.1,
        "hidden_dropout": 0.1,
        "classifier_dropout": 0.1,
        "pooling": "attention",
        "num_attention_heads": 1,
        "attention_hidden_size": 128,
        "pad_token_id": 0,
        "initializer_range": 0.02,
    }
    assert {name: getattr(config, name) for name in expected} == expected
    assert config.model_type == "textgru"
    assert config.num_labels == 2  # transformers' default head size


@pytest.mark.parametrize(
    "overrides, output_size, pooled_size",
    [
        ({}, 32, 32),
        ({"bidirectional": False}, 16, 16),
        ({"num_attention_heads": 3}, 32, 96),  # attention heads are concatenated
        ({"num_attention_heads": 3, "pooling": "mean"}, 32, 32),  # heads only matter for attention pooling
        ({"num_attention_heads": 2, "bidirectional": False}, 16, 32),
    ],
)
def test_output_and_pooled_sizes(overrides, output_size, pooled_size):
    config = TextGRUConfig(**{**TINY, **overrides})
    assert config.output_size == output_size
    assert config.pooled_size == pooled_size


def test_json_round_trip(tmp_path):
    config = TextGRUConfig(
        **TINY,
        residual="gated",
        pooling="max",
        layer_norm=False,
        bidirectional=False,
        embedding_dropout=0.2,
        num_attention_heads=2,
        pad_token_id=3,
        id2label={0: "neg", 1: "pos", 2: "neutral"},
        label2id={"neg": 0, "pos": 1, "neutral": 2},
        problem_type="single_label_classification",
    )
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "textgru"
    assert saved["residual"] == "gated" and saved["pooling"] == "max" and saved["pad_token_id"] == 3

    def fields(c: TextGRUConfig) -> dict:
        return {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # loading records where from

    for loaded in (
        TextGRUConfig.from_pretrained(tmp_path),
        TextGRUConfig.from_json_file(tmp_path / "config.json"),
        AutoConfig.from_pretrained(tmp_path),  # `import textgru` registered the model type
    ):
        assert type(loaded) is TextGRUConfig
        assert fields(loaded) == fields(config)
        assert loaded.id2label == {0: "neg", 1: "pos", 2: "neutral"}  # int keys survive JSON's string keys
        assert loaded.num_labels == 3

    from_string = TextGRUConfig.from_dict(json.loads(config.to_json_string()))
    assert fields(from_string) == fields(config)


def test_a_tampered_config_file_is_rejected_on_load(tmp_path):
    TextGRUConfig(**TINY).save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["pooling"] = "cls"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"pooling='cls'"):
        TextGRUConfig.from_pretrained(tmp_path)


CHOICES = {"residual": ["none", "add", "gated"], "pooling": ["attention", "mean", "max", "last"]}


@pytest.mark.parametrize(
    "field, value, explains",
    [
        ("residual", "sum", CHOICES["residual"]),
        ("residual", None, CHOICES["residual"]),
        ("pooling", "cls", CHOICES["pooling"]),
        ("pooling", "Mean", CHOICES["pooling"]),
        *[
            (name, value, ["[0, 1)"])
            for name in ("embedding_dropout", "word_dropout", "hidden_dropout", "classifier_dropout")
            for value in (-0.1, 1.0, 1.5, "0.1", True)
        ],
        *[
            (name, value, ["positive integer"])
            for name in (
                "vocab_size",
                "embedding_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "attention_hidden_size",
            )
            for value in (0, -3, 2.5, "32", True)
        ],
        ("bidirectional", "yes", ["True or False"]),
        ("bidirectional", 1, ["True or False"]),
        ("layer_norm", None, ["True or False"]),
        ("initializer_range", 0, ["positive"]),
        ("initializer_range", -0.02, ["positive"]),
        ("pad_token_id", 100, ["[0, vocab_size=100)", "tokenizer"]),  # == vocab_size: one past the last id
        ("pad_token_id", -1, ["[0, vocab_size=100)"]),
        ("pad_token_id", None, ["[0, vocab_size=100)"]),
        ("pad_token_id", 1.0, ["[0, vocab_size=100)"]),
    ],
)
def test_bad_values_raise_a_message_naming_field_value_and_choices(field, value, explains):
    with pytest.raises(ValueError) as error:
        TextGRUConfig(**{**TINY, field: value})
    message = str(error.value)
    assert f"{field}={value!r}" in message, message
    for hint in explains:
        assert hint in message, message


def test_boundary_values_are_accepted():
    config = TextGRUConfig(
        **{**TINY, "num_hidden_layers": 1},
        embedding_dropout=0.0,
        hidden_dropout=0,  # an int probability is fine
        classifier_dropout=0.99,
        pad_token_id=99,  # the last id
        initializer_range=1,
    )
    assert config.pad_token_id == 99 and config.num_hidden_layers == 1
