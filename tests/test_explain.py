"""Token attributions: the decisive token wins, IG is complete, padding and batching change nothing."""

import copy
import html
import logging
import random
import re
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_classifier

from textgru import TextGRUForSequenceClassification
from textgru.explain import Explanation, explain
from textgru.tokenization import train_tokenizer

FILLER = "the movie was a plot with an actor scene long story and very film it".split()
POSITIVE_TEXTS = ["the movie was good", "a long story with a good actor and a plot", "good"]
MIXED_TEXTS = ["a good film", "the plot was long and the actor was very good in it", "story", "a very long scene"]
METHODS = ["integrated_gradients", "occlusion", "attention"]


def _text(rng: random.Random, positive: bool) -> str:
    words = rng.choices(FILLER, k=rng.randint(2, 9))
    if positive:  # one token decides the label
        words.insert(rng.randint(0, len(words)), "good")
    return " ".join(words)


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    tok = train_tokenizer(
        [_text(rng, i % 2 == 0) for i in range(400)], algorithm="bpe", vocab_size=400, show_progress=False
    )
    assert len(tok.tokenize(" good")) == 1, "the test data needs 'good' to be one token"
    return tok


def _model(tokenizer, **overrides) -> TextGRUForSequenceClassification:
    return tiny_classifier(tokenizer, 0, **overrides)


@pytest.fixture(scope="module")
def classifier(tokenizer):
    """Single-label model trained briefly on texts where 'good' (and only 'good') means positive."""
    model = _model(
        tokenizer, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    rng = random.Random(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(40):
        labels = [rng.random() < 0.5 for _ in range(32)]
        batch = tokenizer([_text(rng, y) for y in labels], padding=True, return_tensors="pt")
        loss = model(**batch, labels=torch.tensor(labels, dtype=torch.long)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        batch = tokenizer(POSITIVE_TEXTS + ["the plot was long"], padding=True, return_tensors="pt")
        assert model(**batch).logits.argmax(-1).tolist() == [1, 1, 1, 0], "brief training did not learn the task"
    return model


def _f_baseline(model, tokenizer, explanation: Explanation) -> float:
    """The explained score at the pad baseline, computed independently: all-[PAD] ids, every position real."""
    n = len(explanation.tokens)
    ids = torch.full((1, n), tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    return _log_odds(model, logits, explanation.target)


def _log_odds(model, logits: torch.Tensor, target: int) -> float:
    """The explained score, by its definition: log(p / (1 - p)) of the target, or the value for regression."""
    if model.config.problem_type == "regression":
        return float(logits[0, target])
    logits = logits.double()
    p = logits.softmax(-1) if model.config.problem_type == "single_label_classification" else logits.sigmoid()
    p = p[0, target]
    return float(torch.log(p) - torch.log1p(-p))


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_decisive_token_ranks_first(classifier, tokenizer, method):
    for e in explain(classifier, tokenizer, POSITIVE_TEXTS, method=method):
        assert e.label == "positive" and e.probability > 0.5
        token, score = e.top(1)[0]
        assert token == "good" and score > 0, (e.text, e.top(3))


def test_integrated_gradients_is_complete(classifier, tokenizer):
    for e in explain(classifier, tokenizer, MIXED_TEXTS, steps=128):
        change = e.output - _f_baseline(classifier, tokenizer, e)
        gap = abs(sum(e.scores) - change)
        assert gap == pytest.approx(e.delta, abs=1e-4)
        assert gap < 0.05 * abs(change), (e.text, gap, change)
    # TextGRU keeps the pad embedding at zero, so both baselines are the same path
    pad, zeros = (explain(classifier, tokenizer, MIXED_TEXTS[0], steps=8, baseline=b)[0] for b in ("pad", "zeros"))
    assert pad.scores == pytest.approx(zeros.scores, abs=1e-6)


@pytest.mark.parametrize("problem_type", ["multi_label_classification", "regression"])
def test_integrated_gradients_other_problem_types(tokenizer, problem_type):
    num_labels = 3 if problem_type == "multi_label_classification" else 1
    # larger initial weights, so that the untrained output moves visibly along the path
    model = _model(tokenizer, num_labels=num_labels, problem_type=problem_type, initializer_range=0.1).eval()
    target = 2 if num_labels == 3 else None
    explanations = explain(model, tokenizer, MIXED_TEXTS, target=target, steps=256)
    for e in explanations:
        assert e.target == (2 if num_labels == 3 else 0)
        assert (e.probability is None) == (problem_type == "regression")
        change = e.output - _f_baseline(model, tokenizer, e)
        assert abs(change) > 1e-3
        assert abs(sum(e.scores) - change) < 0.05 * abs(change) + 1e-3, (e.text, sum(e.scores), change)


def test_attention_weights_sum_to_one_over_real_tokens(classifier, tokenizer):
    for text, e in zip(MIXED_TEXTS, explain(classifier, tokenizer, MIXED_TEXTS, method="attention")):
        assert len(e.scores) == len(e.tokens) == len(tokenizer(text)["input_ids"])  # no padding positions
        assert tokenizer.pad_token not in e.tokens
        assert min(e.scores) >= 0 and sum(e.scores) == pytest.approx(1.0, abs=1e-5)


def test_occlusion_is_the_drop_of_the_score_without_the_token(classifier, tokenizer):
    text = "the movie was good"
    [for_positive] = explain(classifier, tokenizer, text, method="occlusion", target="positive")
    [for_negative] = explain(classifier, tokenizer, text, method="occlusion", target=0)
    assert for_positive.tokens == text.split()  # readable: no byte-level markers
    good = for_positive.tokens.index("good")
    assert for_positive.scores[good] > 0 > for_negative.scores[good]
    # masking a token out is exactly reading the text without it
    ids = tokenizer(text)["input_ids"]
    del ids[good]
    with torch.no_grad():
        without = _log_odds(classifier, classifier(input_ids=torch.tensor([ids])).logits, 1)
    assert for_positive.scores[good] == pytest.approx(for_positive.output - without, abs=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_batch_gives_the_same_scores_as_one_by_one(classifier, tokenizer, method, monkeypatch):
    monkeypatch.setattr("textgru.explain._TEXTS_PER_BATCH", 3)  # the 4 texts span two padded batches
    batch = explain(classifier, tokenizer, MIXED_TEXTS, method=method, steps=8)
    for text, together in zip(MIXED_TEXTS, batch):
        [alone] = explain(classifier, tokenizer, text, method=method, steps=8)
        assert together.tokens == alone.tokens and together.label == alone.label
        assert together.scores == pytest.approx(alone.scores, rel=1e-5, abs=1e-5)  # float32 rounding


@pytest.mark.parametrize("method", METHODS)
def test_empty_text_has_no_tokens(classifier, tokenizer, method):
    empty, other = explain(classifier, tokenizer, ["", "a good film"], method=method)
    assert empty.tokens == [] and empty.scores == [] and empty.offsets == []
    assert empty.label in ("negative", "positive") and 0 <= empty.probability <= 1
    assert empty.to_html().endswith("</div>") and empty.top(3) == []
    assert len(other.tokens) == 3
    [alone] = explain(classifier, tokenizer, "", method=method)
    assert alone.tokens == []


def test_html_escapes_the_text_and_colours_by_sign(classifier, tokenizer):
    text = "a good film <script>alert('x')</script> & <b>more</b>"
    [e] = explain(classifier, tokenizer, text, method="occlusion", target="positive")
    page = e.to_html()
    assert set(re.findall(r"</?(\w+)", page)) <= {"div", "strong", "br", "span"}  # no tag from the text
    assert html.unescape(re.sub(r"<[^>]+>", "", page)).endswith(text)  # the whole text, nothing lost
    spans = re.findall(r'rgba\(([\d,]+),([\d.]+)\)" title="([^"]+)"', page)
    assert (
        len(spans) == len({(s, t) for s, t in e.offsets if t > s})
        and max(float(alpha) for _, alpha, _ in spans) == 1.0
    )
    for rgb, _, score in spans:  # green for scores that support the label, red against
        assert rgb == ("0,160,0" if float(score) >= 0 else "220,0,0")
    assert {rgb for rgb, _, _ in spans} == {"0,160,0", "220,0,0"}


def test_attention_method_needs_attention_pooling(tokenizer):
    model = _model(tokenizer, num_labels=2, pooling="mean")
    with pytest.raises(ValueError, match="integrated_gradients"):
        explain(model, tokenizer, "a good film", method="attention")


def test_bad_arguments_are_explained(classifier, tokenizer):
    with pytest.raises(ValueError, match="choose one of"):
        explain(classifier, tokenizer, "a film", method="shap")
    with pytest.raises(ValueError, match="model's labels are"):
        explain(classifier, tokenizer, "a film", target="neutral")
    with pytest.raises(ValueError, match="num_labels=2"):
        explain(classifier, tokenizer, "a film", target=2)


def test_eval_mode_inside_and_mode_restored(classifier, tokenizer):
    model = copy.deepcopy(classifier).train()  # dropout 0.1 everywhere: scores would vary in train mode
    first = explain(model, tokenizer, MIXED_TEXTS[1], steps=8)[0].scores
    assert model.training and all(m.training for m in model.modules())
    assert explain(model, tokenizer, MIXED_TEXTS[1], steps=8)[0].scores == first


def test_long_text_is_truncated_to_model_max_length(classifier, tokenizer, caplog):
    short = copy.deepcopy(tokenizer)
    short.model_max_length = 5
    with caplog.at_level(logging.WARNING, logger="textgru.explain"):
        [e] = explain(classifier, short, "the movie was very long and good " * 20, method="occlusion")
    assert len(e.tokens) == len(e.scores) == 5
    assert "model_max_length=5" in caplog.text


def test_docs_example_runs(capsys):
    doc = Path(__file__).resolve().parents[1] / "docs" / "explain.md"
    [example] = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)[:1]
    exec(compile(example, str(doc), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all("[('good'" in line for line in lines), lines
