"""textgru's offline `evaluate` metrics and the Trainer glue in `textgru.evaluation`.

Every number is checked against scikit-learn / scipy (dev dependencies only) on random data, and on small cases
worked out by hand.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from textgru.evaluation import (
    METRIC_DIRS,
    PROBLEM_TYPES,
    best_model_kwargs,
    build_compute_metrics,
    greater_is_better,
    load_metric,
    predictions_from_logits,
    primary_metric,
)

REPO = Path(__file__).resolve().parents[1]
SINGLE, MULTI, REGRESSION = PROBLEM_TYPES


@pytest.fixture
def classification():
    return load_metric(SINGLE)


@pytest.fixture
def multilabel():
    return load_metric(MULTI)


@pytest.fixture
def regression():
    return load_metric(REGRESSION)


# ---------------------------------------------------------------- single-label


def _sklearn_classification(y_true, y_pred, labels):
    kw = {"labels": labels, "zero_division": 0}
    return {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "precision_macro": skm.precision_score(y_true, y_pred, average="macro", **kw),
        "recall_macro": skm.recall_score(y_true, y_pred, average="macro", **kw),
        "f1_macro": skm.f1_score(y_true, y_pred, average="macro", **kw),
        "precision_micro": skm.precision_score(y_true, y_pred, average="micro", **kw),
        "recall_micro": skm.recall_score(y_true, y_pred, average="micro", **kw),
        "f1_micro": skm.f1_score(y_true, y_pred, average="micro", **kw),
        "f1_weighted": skm.f1_score(y_true, y_pred, average="weighted", **kw),
        "matthews_correlation": skm.matthews_corrcoef(y_true, y_pred),
    }


@pytest.mark.filterwarnings("ignore:A single label was found")  # sklearn, when only one class occurs
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("num_labels", [2, 5, 12])
def test_classification_matches_sklearn_with_absent_classes(classification, seed, num_labels):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    # Some classes never occur in the references, others are never predicted: both must count in macro averages.
    seen_true = rng.choice(num_labels, size=max(1, num_labels - 2), replace=False)
    seen_pred = rng.choice(num_labels, size=max(1, num_labels - 1), replace=False)
    y_true = rng.choice(seen_true, size=n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.choice(seen_pred, size=n))

    ours = classification.compute(predictions=y_pred, references=y_true, num_labels=num_labels)
    expected = _sklearn_classification(y_true, y_pred, list(range(num_labels)))
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key

    # Without num_labels the classes are those observed, as scikit-learn's default.
    ours = classification.compute(predictions=list(y_pred), references=list(y_true))
    expected = _sklearn_classification(y_true, y_pred, None)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_classification_labels_subset_matches_sklearn(classification):
    rng = np.random.default_rng(7)
    y_true, y_pred = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    labels = [1, 3, 4, 8]  # 8 is absent everywhere, 0/2/5 are left out of the averages
    ours = classification.compute(predictions=y_pred, references=y_true, labels=labels)
    expected = _sklearn_classification(y_true, y_pred, labels)
    for key in ("precision_macro", "recall_macro", "f1_macro", "precision_micro", "recall_micro", "f1_micro"):
        assert ours[key] == pytest.approx(expected[key], abs=1e-12), key
    assert ours["accuracy"] == pytest.approx(np.mean(y_true == y_pred))


def test_classification_by_hand(classification):
    # classes 0..3; class 3 never appears. Confusion (rows true): [[1,1,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,0]]
    out = classification.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2], num_labels=4)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["precision_macro"] == pytest.approx((1 + 0.5 + 1 + 0) / 4)
    assert out["recall_macro"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert out["f1_macro"] == pytest.approx((2 / 3 + 2 / 3 + 1 + 0) / 4)
    assert out["f1_micro"] == pytest.approx(0.75)
    assert out["f1_weighted"] == pytest.approx((2 * 2 / 3 + 2 / 3 + 1) / 4)
    # MCC: c=3, s=4, t=(2,1,1,0), p=(1,2,1,0): (12 - 5) / sqrt((16 - 6) * (16 - 6)) = 0.7
    assert out["matthews_correlation"] == pytest.approx(0.7)


def test_classification_degenerate_cases_are_zero_not_nan(classification):
    out = classification.compute(predictions=[1, 1, 1], references=[1, 1, 1], num_labels=3)
    assert out["accuracy"] == 1.0
    assert out["matthews_correlation"] == 0.0  # undefined with one class: scikit-learn's convention
    assert out["f1_macro"] == pytest.approx(1 / 3)  # the two absent classes count as 0
    out = classification.compute(predictions=[0, 0], references=[1, 1], num_labels=2)
    assert out["precision_macro"] == 0.0 and out["f1_micro"] == 0.0
    assert all(np.isfinite(v) for v in out.values())


def test_classification_rejects_bad_ids(classification):
    with pytest.raises(ValueError, match="out of range for num_labels=2"):
        classification.compute(predictions=[0, 2], references=[0, 1], num_labels=2)
    with pytest.raises(ValueError, match="-100"):
        classification.compute(predictions=[0, 1], references=[0, -100], num_labels=2)


# ---------------------------------------------------------------- multi-label


@pytest.mark.parametrize("seed", range(4))
def test_multilabel_matches_sklearn(multilabel, seed):
    rng = np.random.default_rng(seed)
    n, num_labels = int(rng.integers(10, 200)), int(rng.integers(2, 9))
    y_true = (rng.random((n, num_labels)) < rng.random(num_labels)).astype(int)
    y_pred = np.where(rng.random((n, num_labels)) < 0.7, y_true, 1 - y_true)
    y_true[:, 0] = 0  # a label that never occurs ...
    y_pred[:, -1] = 0  # ... and one never predicted

    ours = multilabel.compute(predictions=y_pred.tolist(), references=y_true.tolist())
    kw = {"zero_division": 0}
    expected = {
        "f1_micro": skm.f1_score(y_true, y_pred, average="micro", **kw),
        "f1_macro": skm.f1_score(y_true, y_pred, average="macro", **kw),
        "precision_micro": skm.precision_score(y_true, y_pred, average="micro", **kw),
        "recall_micro": skm.recall_score(y_true, y_pred, average="micro", **kw),
        "precision_macro": skm.precision_score(y_true, y_pred, average="macro", **kw),
        "recall_macro": skm.recall_score(y_true, y_pred, average="macro", **kw),
        "exact_match": skm.accuracy_score(y_true, y_pred),
        "hamming_loss": skm.hamming_loss(y_true, y_pred),
    }
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-12), key


def test_multilabel_by_hand(multilabel):
    out = multilabel.compute(predictions=[[1, 0, 0], [1, 1, 0]], references=[[1, 0, 0], [0, 1, 0]])
    # tp=(1,1,0) predicted=(2,1,0) actual=(1,1,0): micro P=2/3 R=1 F1=0.8; label 2 has neither -> F1 0
    assert out["precision_micro"] == pytest.approx(2 / 3)
    assert out["recall_micro"] == pytest.approx(1.0)
    assert out["f1_micro"] == pytest.approx(0.8)
    assert out["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert out["exact_match"] == pytest.approx(0.5)
    assert out["hamming_loss"] == pytest.approx(1 / 6)


def test_multilabel_rejects_bad_input(multilabel):
    with pytest.raises(ValueError, match="0 or 1"):
        multilabel.compute(predictions=[[2, 0]], references=[[1, 0]])
    with pytest.raises(ValueError, match="same length"):
        multilabel.compute(predictions=[[1, 0], [1, 0, 1]], references=[[1, 0, 0], [1, 0, 1]])


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize("seed", range(4))
def test_regression_matches_sklearn_and_scipy(regression, seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 5, 80).astype(float)  # ties exercise Spearman's average ranks
    y_pred = y_true + rng.normal(0, 1.0, 80)
    ours = regression.compute(predictions=y_pred, references=y_true)
    assert ours["mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred))
    assert ours["mae"] == pytest.approx(skm.mean_absolute_error(y_true, y_pred))
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, y_pred))
    assert ours["pearson"] == pytest.approx(stats.pearsonr(y_pred, y_true).statistic)
    assert ours["spearman"] == pytest.approx(stats.spearmanr(y_pred, y_true).statistic)


def test_regression_several_targets_average_per_target(regression):
    rng = np.random.default_rng(3)
    y_true = rng.normal(size=(50, 3))
    y_pred = y_true * np.array([1.0, 0.5, -1.0]) + rng.normal(0, 0.3, (50, 3))
    ours = regression.compute(predictions=y_pred.tolist(), references=y_true.tolist())
    assert ours["mse"] == pytest.approx(skm.mean_squared_error(y_true, y_pred))
    assert ours["rmse"] == pytest.approx(skm.root_mean_squared_error(y_true, y_pred))
    pearson = np.mean([stats.pearsonr(y_pred[:, t], y_true[:, t]).statistic for t in range(3)])
    spearman = np.mean([stats.spearmanr(y_pred[:, t], y_true[:, t]).statistic for t in range(3)])
    assert ours["pearson"] == pytest.approx(pearson)
    assert ours["spearman"] == pytest.approx(spearman)


def test_regression_by_hand(regression):
    out = regression.compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 2.0, 3.0])
    assert out["mse"] == pytest.approx(1 / 3)
    assert out["mae"] == pytest.approx(1 / 3)
    assert out["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert out["spearman"] == pytest.approx(1.0)


def test_regression_constant_input_gives_nan_with_a_warning(regression):
    with pytest.warns(RuntimeWarning, match="constant"):
        out = regression.compute(predictions=[0.1, 0.1, 0.1], references=[1.0, 2.0, 3.0])
    assert np.isnan(out["pearson"]) and np.isnan(out["spearman"])
    assert out["mse"] == pytest.approx(np.mean((0.1 - np.array([1.0, 2.0, 3.0])) ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a varying input must not warn
        regression.compute(predictions=[0.1, 0.2, 0.3], references=[1.0, 2.0, 3.0])


# ---------------------------------------------------------------- loading, offline


def test_metric_dirs_hold_same_named_scripts_covered_by_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "metrics/*/*.py" in package_data["textgru"]
    package = REPO / "textgru"
    packaged = {p.resolve() for p in package.glob("metrics/*/*.py")}
    for problem_type, folder in METRIC_DIRS.items():
        assert (folder / f"{folder.name}.py").resolve() in packaged, problem_type


def test_evaluate_load_from_the_package_path_in_a_fresh_offline_process(tmp_path):
    code = """
import evaluate
from textgru.evaluation import METRIC_DIRS, load_metric
m = load_metric("single_label_classification")
assert m is not None
print(m.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"])
folder = METRIC_DIRS["regression"]
m = evaluate.load(str(folder / (folder.name + ".py")))
print(m.compute(predictions=[1.0, 2.0], references=[1.0, 3.0])["mae"])
"""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens: any network use would fail
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(2 / 3), "0.5"]


def test_load_metric_rejects_unknown_problem_type():
    with pytest.raises(ValueError, match="single_label_classification"):
        load_metric("classification")


# ---------------------------------------------------------------- Trainer glue


def test_predictions_from_logits():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert predictions_from_logits(logits, SINGLE).tolist() == [1, 0]
    assert predictions_from_logits((logits, np.zeros((2, 4, 3))), SINGLE).tolist() == [1, 0]  # extra outputs
    # sigmoid(0) = 0.5 is not above the 0.5 threshold
    assert predictions_from_logits(np.array([[0.0, 0.01, -5.0]]), MULTI).tolist() == [[0, 1, 0]]
    assert predictions_from_logits(np.array([[0.0, 0.01, -5.0]]), MULTI, threshold=0.001).tolist() == [[1, 1, 1]]
    assert predictions_from_logits(np.array([[1000.0, -1000.0]]), MULTI).tolist() == [[1, 0]]  # no overflow
    assert predictions_from_logits(np.array([[1.5], [2.5]]), REGRESSION).tolist() == [1.5, 2.5]
    with pytest.raises(ValueError, match="threshold"):
        predictions_from_logits(logits, MULTI, threshold=1.5)


def test_compute_metrics_on_eval_predictions():
    from transformers import EvalPrediction

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 4))
    labels = rng.integers(0, 4, 40)
    labels[:5] = -100  # ignored by the loss: left out of the metrics
    out = build_compute_metrics(SINGLE, num_labels=4)(EvalPrediction(predictions=(logits,), label_ids=labels))
    keep = labels != -100
    assert out["accuracy"] == pytest.approx(np.mean(logits.argmax(-1)[keep] == labels[keep]))
    assert out["f1_macro"] == pytest.approx(
        skm.f1_score(labels[keep], logits.argmax(-1)[keep], average="macro", labels=range(4), zero_division=0)
    )

    targets = (rng.random((40, 3)) < 0.4).astype(np.float32)  # BCE labels are floats
    out = build_compute_metrics(MULTI, num_labels=3, threshold=0.3)(EvalPrediction(logits[:, :3], targets))
    predicted = (1 / (1 + np.exp(-logits[:, :3])) > 0.3).astype(int)
    assert out["f1_micro"] == pytest.approx(skm.f1_score(targets.astype(int), predicted, average="micro"))
    with pytest.raises(ValueError, match="num_labels=4"):
        build_compute_metrics(MULTI, num_labels=4)(EvalPrediction(logits[:, :3], targets))

    values = rng.normal(size=40)
    out = build_compute_metrics(REGRESSION, num_labels=1)((logits[:, :1], values))
    assert out["mse"] == pytest.approx(np.mean((logits[:, 0] - values) ** 2))


def test_primary_metric_is_computed_and_ranked_the_right_way():
    assert best_model_kwargs(SINGLE) == {"metric_for_best_model": "accuracy", "greater_is_better": True}
    assert best_model_kwargs(MULTI) == {"metric_for_best_model": "f1_micro", "greater_is_better": True}
    assert best_model_kwargs(REGRESSION) == {"metric_for_best_model": "mse", "greater_is_better": False}
    assert not greater_is_better("eval_loss") and not greater_is_better("eval_hamming_loss")
    assert greater_is_better("eval_matthews_correlation")
    inputs = {
        SINGLE: (np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 2, 2])),
        MULTI: (np.array([[3.0, -3.0], [3.0, 3.0]]), np.array([[1, 0], [0, 1]])),
        REGRESSION: (np.array([[1.0], [2.0], [3.5]]), np.array([1.0, 2.0, 3.0])),
    }
    for problem_type, (logits, labels) in inputs.items():
        out = build_compute_metrics(problem_type, num_labels=logits.shape[1])((logits, labels))
        assert primary_metric(problem_type) in out, problem_type


def test_trainer_keeps_the_best_checkpoint_by_the_primary_metric(tmp_path):
    import torch
    from transformers import Trainer, TrainingArguments

    from textgru import TextGRUConfig, TextGRUForSequenceClassification

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 50, (32, 6))
    data = [{"input_ids": torch.tensor(row), "labels": int(row[0] % 2)} for row in ids]
    config = TextGRUConfig(vocab_size=50, embedding_size=16, hidden_size=8, attention_hidden_size=8, num_labels=2)
    model = TextGRUForSequenceClassification(config)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        max_steps=4,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        logging_steps=1,
        load_best_model_at_end=True,
        use_cpu=True,
        report_to="none",
        **best_model_kwargs(SINGLE),
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        eval_dataset=data[:16],
        compute_metrics=build_compute_metrics(SINGLE, num_labels=2),
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    assert len(evals) == 2
    assert trainer.state.best_metric == max(entry["eval_accuracy"] for entry in evals)
