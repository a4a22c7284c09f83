"""`pipeline("text-classification")` with TextGRU: single-label, multi-label and regression heads, from memory and
from a saved folder. The scores must be exactly what the model's logits say, whatever the batching."""

import copy

import pytest
import torch
from tiny_models import tiny_classifier
from transformers import pipeline

from textgru import TextGRUForSequenceClassification

TEXTS = [
    "a wonderful film",
    "the plot was dull and far too long for its own good , and the ending was silly",
    "ok",
    "Fine acting, weak script.",
]
LABELS = {0: "negative", 1: "neutral", 2: "positive"}


def make_classifier(tokenizer, seed: int = 0, **overrides) -> TextGRUForSequenceClassification:
    model = tiny_classifier(tokenizer, seed, **overrides)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)  # spread the logits so every check has something to see
    return model.eval()  # pipeline() does not switch dropout off itself


def logits_of(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(text, return_tensors="pt")).logits[0]


def by_label(result: list[dict]) -> dict[str, float]:
    return {item["label"]: item["score"] for item in result}


def test_single_label_scores_are_the_softmax_of_the_logits(tiny_tokenizer):
    model = make_classifier(tiny_tokenizer, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    classify = pipeline("text-classification", model=model, tokenizer=tiny_tokenizer)
    for text in TEXTS:
        result = classify(text, top_k=None)
        scores = by_label(result)
        assert set(scores) == set(LABELS.values())
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-6)
        assert [item["score"] for item in result] == sorted(scores.values(), reverse=True)
        probabilities = torch.softmax(logits_of(model, tiny_tokenizer, text), -1)
        for index, label in LABELS.items():
            assert scores[label] == pytest.approx(probabilities[index].item(), abs=1e-6)
        (top,) = classify(text)  # default: the best label only
        assert top["label"] == LABELS[int(probabilities.argmax())]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_batched_pipeline_matches_one_text_at_a_time(tiny_tokenizer, padding_side):
    model = make_classifier(tiny_tokenizer, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.padding_side = padding_side
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    one_by_one = [by_label(classify(text, top_k=None)) for text in TEXTS]
    batched = [by_label(result) for result in classify(TEXTS, top_k=None, batch_size=4)]  # padded to the longest
    for single, padded in zip(one_by_one, batched):
        assert padded == pytest.approx(single, abs=1e-6)


def test_multi_label_scores_are_independent_sigmoids(tiny_tokenizer):
    model = make_classifier(
        tiny_tokenizer,
        num_labels=3,
        problem_type="multi_label_classification",
        id2label={0: "funny", 1: "sad", 2: "long"},
        label2id={"funny": 0, "sad": 1, "long": 2},
    )
    classify = pipeline("text-classification", model=model, tokenizer=tiny_tokenizer)
    sums = []
    for text in TEXTS:
        logits = logits_of(model, tiny_tokenizer, text)
        scores = by_label(classify(text, top_k=None))
        assert scores == pytest.approx(dict(zip(["funny", "sad", "long"], torch.sigmoid(logits).tolist())), abs=1e-6)
        sums.append(sum(scores.values()))
        raw = by_label(classify(text, top_k=None, function_to_apply="none"))
        assert raw == pytest.approx(dict(zip(["funny", "sad", "long"], logits.tolist())), abs=1e-5)
        softmaxed = by_label(classify(text, top_k=None, function_to_apply="softmax"))
        assert sum(softmaxed.values()) == pytest.approx(1.0, abs=1e-6)
    assert any(abs(total - 1.0) > 0.05 for total in sums), "sigmoid scores should not be a distribution"


def test_regression_score_is_the_raw_output(tiny_tokenizer):
    model = make_classifier(tiny_tokenizer, num_labels=1, problem_type="regression")
    with torch.no_grad():
        model.classifier.bias.fill_(3.0)  # far outside [0, 1]: a sigmoid or softmax would show
    classify = pipeline("text-classification", model=model, tokenizer=tiny_tokenizer)
    for text in TEXTS:
        (result,) = classify(text)
        assert result["score"] == pytest.approx(logits_of(model, tiny_tokenizer, text).item(), abs=1e-5)
        assert result["score"] > 1.0


def test_pipeline_from_a_saved_folder(tiny_tokenizer, tmp_path):
    model = make_classifier(tiny_tokenizer, num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    in_memory = pipeline("text-classification", model=model, tokenizer=tiny_tokenizer)
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)

    loaded = pipeline("text-classification", model=str(tmp_path), trust_remote_code=True)
    assert isinstance(loaded.model, TextGRUForSequenceClassification)
    assert not loaded.model.training
    assert loaded.tokenizer.pad_token_id == tiny_tokenizer.pad_token_id
    for text in TEXTS:
        assert by_label(loaded(text, top_k=None)) == pytest.approx(by_label(in_memory(text, top_k=None)), abs=1e-6)
