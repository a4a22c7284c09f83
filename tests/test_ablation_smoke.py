"""Smoke test of benchmarks/ablation.py: a --quick run on generated texts writes every field, table and plot, and
a second run resumes instead of retraining (no accuracy claims)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"
RUN_FIELDS = {
    "dataset",
    "depth",
    "residual",
    "layer_norm",
    "seed",
    "test_accuracy",
    "train_time_s",
    "final_train_loss",
    "grad_norm_first_layer_init",
    "grad_norm_first_layer_after",
    "grad_norm_per_layer_init",
    "loss_curve",
    "settings",
}


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("textgru_benchmarks_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(ablation, tmp_path_factory):
    """--quick on generated texts (a data dir that does not exist), so it runs the same everywhere."""
    out = tmp_path_factory.mktemp("ablation")
    argv = ["--quick", "--out", str(out), "--data-dir", str(out / "no-data"), "--depths", "2"]
    report = ablation.main(argv)
    return ablation, out, argv, report


def test_every_run_is_recorded_with_its_fields(quick_run):
    _, out, _, report = quick_run
    on_disk = json.loads((out / "ablation.json").read_text())
    assert on_disk["runs"] == report["runs"]
    keys = {(r["dataset"], r["depth"], r["residual"]) for r in on_disk["runs"]}
    assert keys == {(d, n, m) for d in ("sst2", "imdb") for n in (2,) for m in ("none", "add")}
    for run in on_disk["runs"]:
        assert RUN_FIELDS <= run.keys()
        assert 0.0 <= run["test_accuracy"] <= 1.0
        assert len(run["grad_norm_per_layer_init"]) == run["depth"]
        assert run["grad_norm_first_layer_init"] > 0 and run["grad_norm_first_layer_after"] > 0
        assert run["grad_norm_after_step"] == on_disk["meta"]["args"]["grad_steps"]
        assert run["loss_curve"] and all(e["loss"] > 0 for e in run["loss_curve"])
    assert on_disk["meta"]["data"]["imdb"]["source"] == "generated"
    assert on_disk["meta"]["environment"]["versions"]["torch"]


def test_table_and_plots_are_written(quick_run):
    _, out, _, _ = quick_run
    table = (out / "ablation.md").read_text()
    assert "## sst2" in table and "## imdb" in table and "| 2 |" in table
    for name in ("accuracy_vs_depth.png", "loss_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_skips_finished_runs(quick_run):
    ablation, out, argv, report = quick_run
    before = (out / "ablation.json").read_text()
    again = ablation.main(argv)
    assert len(again["runs"]) == len(report["runs"])
    assert json.loads(before)["runs"] == again["runs"]


def test_epochs_flag_needs_a_value_per_dataset(ablation):
    assert ablation.parse_args(["--epochs", "sst2=3", "imdb=2"]).epochs == {"sst2": 3.0, "imdb": 2.0}
    with pytest.raises(SystemExit):
        ablation.parse_args(["--datasets", "sst2", "imdb", "--epochs", "sst2=3"])


def test_merge_combines_shards_once_and_trains_nothing(quick_run, tmp_path):
    """Shards run in parallel (each its own --out) merge into one report; a run present twice is kept once."""
    ablation, out, _, report = quick_run
    shard = tmp_path / "shard"
    ablation.main(["--quick", "--out", str(shard), "--data-dir", str(tmp_path / "no-data"), "--depths", "1"])
    merged = tmp_path / "merged"
    result = ablation.main(["--out", str(merged), "--merge", str(out), str(shard), str(out)])
    keys = [(r["dataset"], r["depth"], r["residual"], r["seed"]) for r in result["runs"]]
    assert len(keys) == len(set(keys)) == len(report["runs"]) + 4  # depth 1 adds 2 data sets x 2 modes
    assert {k[1] for k in keys} == {1, 2}
    on_disk = json.loads((merged / "ablation.json").read_text())
    assert on_disk["runs"] == result["runs"] and "| 1 |" in (merged / "ablation.md").read_text()
    assert set(on_disk["meta"]["data"]) == {"sst2", "imdb"}
    shard_meta = json.loads((out / "ablation.json").read_text())["meta"]
    assert on_disk["meta"]["args"] == shard_meta["args"]  # the first shard's flags, not the merge call's defaults
    assert on_disk["meta"]["args"]["quick"] and on_disk["meta"]["environment"] == shard_meta["environment"]

    other = tmp_path / "other-width"  # runs made with another setting must not be averaged into the same cells
    other.mkdir()
    changed = json.loads((shard / "ablation.json").read_text())
    for run in changed["runs"]:
        run["settings"]["hidden"] += 1
    (other / "ablation.json").write_text(json.dumps(changed))
    with pytest.raises(ValueError, match="different settings"):
        ablation.main(["--out", str(tmp_path / "mixed"), "--merge", str(shard), str(other)])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error where no GPU is visible")
def test_device_cuda_without_a_gpu_is_a_clear_error(ablation, capsys):
    with pytest.raises(SystemExit):
        ablation.parse_args(["--device", "cuda"])
    assert "no CUDA device is visible" in capsys.readouterr().err
