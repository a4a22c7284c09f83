"""Smoke test of benchmarks/speed.py: a --quick run reports every field for every contender (no timing claims)."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("textgru_benchmarks_speed", BENCHMARKS / "speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path for its _helpers
    yield module
    sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def quick_report(speed, tmp_path_factory):
    """One quick run for the module. Real SST-2 / IMDB slices where ../shared/data exists, generated texts elsewhere.
    Memory probes (a fresh interpreter per contender) are tested on one cheap contender below instead."""
    out = tmp_path_factory.mktemp("speed")
    saved = os.environ.get("OMP_NUM_THREADS")
    try:
        speed.main(["--quick", "--no-memory", "--out", str(out), "--data-dir", str(SHARED_DATA)])
    finally:
        os.environ["OMP_NUM_THREADS"] = saved if saved is not None else "1"
    return out, json.loads((out / "speed.json").read_text())


def test_every_contender_has_every_figure(speed, quick_report):
    import _contenders

    out, report = quick_report
    contenders, skipped = report["contenders"], report["skipped"]
    assert set(contenders) | set(skipped) == set(_contenders.CONTENDERS)
    assert set(skipped) <= {"fasttext"}  # the only optional contender
    repeats = report["meta"]["args"]["repeats"]
    for name, entry in contenders.items():
        assert entry["description"] and entry["disk_mb"] > 0, name
        for dataset in ("sst2", "imdb"):
            latency, throughput = entry["latency_b1_ms"][dataset], entry["throughput_b64"][dataset]
            assert len(latency["per_repeat"]) == len(throughput["per_repeat"]) == repeats, name
            assert latency["median"] > 0 and latency["p90"] >= latency["median"] * 0.5 and throughput["median"] > 0
        for reference in ("distilbert", "plain-bigru"):
            ratios = report["ratios"][f"vs_{reference}"][name]
            assert set(ratios) == {f"{k}_{d}" for k in ("latency_b1", "throughput_b64") for d in ("sst2", "imdb")}
        assert name in (out / "speed.md").read_text()
    assert contenders["distilbert"]["parameters"] > 60_000_000  # DistilBertConfig() defaults, not a toy
    assert report["ratios"]["vs_distilbert"]["distilbert"]["latency_b1_sst2"] == pytest.approx(1.0)
    assert (out / "speed.png").stat().st_size > 0
    targets = (out / "speed.md").read_text().split("## Targets")[1]
    assert targets.count("| ≥ ") == 7  # every target row of issue 4, from this run's ratios


def test_environment_and_inputs_are_recorded(quick_report):
    _, report = quick_report
    env = report["meta"]["environment"]
    assert env["OMP_NUM_THREADS"] == "1" and env["torch_num_threads"] == 1
    assert env["cpu_model"] and env["versions"]["torch"]
    inputs = report["meta"]["data"]["inputs"]
    assert inputs["imdb"]["tokens_max"] <= report["meta"]["data"]["max_tokens"]  # documents cut for every model
    assert "seed" in inputs["sst2"]["order"]


def test_training_comparison_fields(quick_report):
    _, report = quick_report
    training = report["training"]
    assert training["matmul_peak_gflops_1_thread"] > 0
    for dataset in ("sst2", "imdb"):
        for model in ("textgru", "plain-bigru"):
            run = training[dataset][model]
            assert run["steps"] == report["meta"]["args"]["train_steps"][dataset]
            assert run["real_tokens"] <= run["padded_tokens"]
            assert run["real_tokens_per_s"] > 0 and run["gflops_per_s_executed"] > 0
            assert 0 <= run["fraction_of_matmul_peak"]
        assert training[dataset]["textgru_vs_plain_real_tokens_per_s"] > 0
        assert training[dataset]["textgru-nn-gru"]["real_tokens"] == training[dataset]["textgru"]["real_tokens"]
        assert training[dataset]["stepwise_vs_nn_gru_real_tokens_per_s"] > 0
        # equal width and depth: the plain BiGRU mirrors TextGRU's default config
        configs = training[dataset]["configs"]
        assert configs["plain-bigru"]["num_layers"] == 2 and configs["plain-bigru"]["hidden_size"] == 128


def test_memory_probe_runs_in_a_fresh_process(speed, tmp_path):
    import _contenders

    texts = ["a fine film", "a dull , slow film"] * 20
    ctx = _contenders.Context(tmp_path, texts, [1, 0] * 20)
    _contenders.build_contender("tfidf-logreg", ctx, tmp_path / "tfidf")
    args = speed.parse_args(["--quick", "--threads", "1"])
    result = speed.measure_memory("tfidf-logreg", tmp_path / "tfidf", texts, args, dict(os.environ))
    assert "error" not in result, result
    assert 0 < result["baseline_rss_mb"] <= result["peak_rss_mb"]


def test_missing_data_falls_back_to_generated_texts(speed, tmp_path):
    import _data

    args = speed.parse_args(["--quick", "--data-dir", str(tmp_path / "absent")])
    data = _data.load_data(args)
    assert data["source"] == "synthetic"
    assert len(data["sst2_test"][0]) >= args.n_texts and len(data["imdb_test"][0]) >= args.n_docs


def test_training_repeats_are_interleaved_and_summarised(speed):
    """Each repeat trains both models on fresh batches; the headline ratio is the median of the per-repeat ratios."""
    import statistics

    import _training

    rng = __import__("random").Random(0)
    token_ids = [[rng.randrange(3, 200) for _ in range(rng.randrange(2, 12))] for _ in range(40)]
    labels = [i % 2 for i in range(40)]
    result = _training.training_comparison(token_ids, labels, 0, 200, steps=2, batch_size=4, seed=0, repeats=3)
    ratios = result["textgru_vs_plain_real_tokens_per_s_repeats"]
    assert len(ratios) == 3 and result["textgru_vs_plain_real_tokens_per_s"] == statistics.median(ratios)
    gains = result["stepwise_vs_nn_gru_real_tokens_per_s_repeats"]
    assert len(gains) == 3 and result["stepwise_vs_nn_gru_real_tokens_per_s"] == statistics.median(gains)
    for model in ("textgru", "textgru-nn-gru", "plain-bigru"):
        per_repeat = result[model]["repeats"]
        assert len(per_repeat) == 3 and all(r["steps"] == 2 for r in per_repeat)
        assert result[model]["real_tokens_per_s"] == statistics.median(r["real_tokens_per_s"] for r in per_repeat)
    # fresh batches per repeat (seed + repeat), not the same 8 examples three times
    assert len({r["real_tokens"] for r in result["textgru"]["repeats"]}) > 1
    assert result["optimizer"] == "AdamW (fused)"  # what Trainer uses by default with torch >= 2.8


def test_grouped_training_batches_span_the_epoch(speed):
    """TextGRU's timed batches are length-grouped like Trainer's, but drawn from across an epoch: the sampler puts an
    epoch's longest batches first, and timing those alone would flatter its tokens/s."""
    import statistics

    import _training

    rng = __import__("random").Random(0)
    lengths = [rng.randrange(1, 60) for _ in range(3200)]  # two megabatches of 50 batches of 32
    batches = _training.grouped_batches(lengths, 32, 20, seed=0)
    assert len(batches) == 20 and all(len(b) == 32 for b in batches)
    assert len({i for b in batches for i in b}) == 20 * 32  # one epoch: no text twice
    # grouped: a batch's lengths are close (a random batch of 32 spans most of 1..59)
    assert statistics.median(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) <= 5
    # across the epoch: the mean length of the drawn batches is near the data's, not the longest batches'
    drawn = statistics.mean(lengths[i] for b in batches for i in b)
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    order = list(LengthGroupedSampler(32, lengths=lengths, generator=torch.Generator().manual_seed(0)))
    longest_first = statistics.mean(lengths[i] for i in order[: 20 * 32])
    assert abs(drawn - statistics.mean(lengths)) < 5 < longest_first - statistics.mean(lengths)
    # more steps than an epoch has batches: a second epoch is drawn from
    assert len(_training.grouped_batches(lengths[:320], 32, 15, seed=1)) == 15
    with pytest.raises(ValueError, match="no full batch"):
        _training.grouped_batches([3] * 10, 32, 2, seed=0)


def test_where_time_goes_reports_its_bounds(speed, tmp_path):
    """benchmarks/where_time_goes.py --quick: every figure the docs quote is present and sane (no timing claims)."""
    spec = importlib.util.spec_from_file_location("textgru_where_time_goes", BENCHMARKS / "where_time_goes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "where.json"
    report = module.main(["--quick", "--data-dir", str(SHARED_DATA), "--json", str(out)])
    assert json.loads(out.read_text())["texts"] == report["texts"] > 0
    eager = report["eager_profile"]
    assert 0 < eager["gemm_us"] < eager["gru_us"] <= eager["total_us"]  # the GRUs' products run inside aten::gru
    assert report["onnx_profile"]["gru_us"] > 0 and report["onnx_forward_ms"] > 0
    assert report["real_tokens"] <= report["padded_tokens"]
    # the ceiling divides eager time by a strictly smaller cost, so it must exceed 1
    assert report["ceiling_speedup_vs_eager"] > 1
    assert all(
        report["batch1_step"][k] > 0 for k in ("torch_us_per_step", "onnxruntime_us_per_step", "stepwise_us_per_step")
    )
    train = report["training_step"]
    for name in ("textgru", "plain-bigru"):
        t = train[name]
        assert t["step_ms"] > 0 and t["real_tokens_per_step"] > 0
        # the fixed costs are found in the profile, and are parts of the profiled step
        assert 0 < t["adamw_ms"] < t["profiled_step_ms"] and 0 < t["embedding_grad_fill_ms"] < t["profiled_step_ms"]
    assert 0 < train["textgru"]["gru_ms"] < train["textgru"]["profiled_step_ms"]  # the stepwise autograd function ran


def test_training_recurrence_script_times_both_loops(tmp_path):
    """benchmarks/training_recurrence.py on tiny sizes (odd widths): every loop timed both ways, JSON written."""
    from textgru.kernels import KernelUnavailableError

    spec = importlib.util.spec_from_file_location("textgru_training_recurrence", BENCHMARKS / "training_recurrence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "recurrence.json"
    args = ["--batch", "3", "--steps", "4", "--hidden", "5", "--repeats", "1", "--json", str(out)]
    try:
        report = module.main(args)
    except KernelUnavailableError as err:
        pytest.skip(f"the compiled training recurrence cannot be built here: {err}")
    assert report["shape"] == {"directions": 2, "steps": 4, "batch": 3, "hidden": 5}
    expected = {f"{part}_{how}" for part in ("forward", "backward", "layer") for how in ("pytorch", "compiled")}
    assert expected <= set(report["ms"]) and all(report["ms"][k] > 0 for k in expected)
    assert all(report[k] > 0 for k in ("backward_loop_speedup", "layer_speedup"))
    assert set(report["product_gflops"]) == {"compiled", "torch_addmm"}
    assert report["vector_width"] in (4, 8, 16)
    assert json.loads(out.read_text()) == report


def test_native_profile_reports_every_build_and_stage(speed, tmp_path):
    """benchmarks/native_profile.py --quick: every kernel build is timed against eager, every stage of the best build
    is timed, the products have a throughput (no timing claims)."""
    from textgru.kernels import VARIANTS, KernelUnavailableError

    spec = importlib.util.spec_from_file_location("textgru_native_profile", BENCHMARKS / "native_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "native.json"
    try:
        report = module.main(["--quick", "--data-dir", str(SHARED_DATA), "--json", str(out)])
    except KernelUnavailableError as err:
        pytest.skip(f"the native kernels cannot be built here: {err}")
    assert json.loads(out.read_text())["real_tokens"] == report["real_tokens"] > 0
    assert set(report["forward_ms"]) == {"eager", *VARIANTS} and all(v > 0 for v in report["forward_ms"].values())
    assert report["speedup_vs_eager"]["eager"] == 1
    assert len(report["stages_ms"]) == 4 and report["tokenize_ms"] > 0
    assert all(v > 0 for v in report["product_gmacs"].values())


def test_gpu_speed_reports_every_figure_on_the_cpu(speed, tmp_path):
    """benchmarks/gpu_speed.py --device cpu --quick: every model, data set and precision has its figure, and the
    JSON holds what the table shows (no timing claims; the real run needs a GPU)."""
    spec = importlib.util.spec_from_file_location("textgru_gpu_speed", BENCHMARKS / "gpu_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "gpu_speed.json"
    report = module.main(["--device", "cpu", "--quick", "--data-dir", str(SHARED_DATA), "--json", str(out)])
    assert json.loads(out.read_text())["inference"] == report["inference"]
    for name in module.MODELS:
        for precision in ("fp32", "bf16"):
            assert report["inference"][name]["sst2"][precision]["texts_per_s"] > 0
            assert report["inference"][name]["imdb"][precision]["texts_per_s"] > 0
            assert report["inference"][name]["sst2-batch1"][precision]["ms_per_text"] > 0
    for precision in ("fp32", "bf16"):
        textgru, plain = (report["training"][n][precision] for n in ("textgru", "plain-bigru"))
        assert textgru["real_tokens_per_s"] > 0 and 0 <= textgru["padding"] < plain["padding"]  # grouped vs random
        assert report["training"][f"textgru_vs_plain_{precision}"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the error where no GPU is visible")
def test_gpu_speed_without_a_gpu_is_a_clear_error(capsys):
    spec = importlib.util.spec_from_file_location("textgru_gpu_speed", BENCHMARKS / "gpu_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.parse_args(["--device", "cuda"])
    assert "no CUDA device is visible" in capsys.readouterr().err


@pytest.mark.slow
def test_fused_gru_probe_matches_torch(tmp_path):
    """benchmarks/probe_fused_gru.py compiles its C++ loop (~40 s) and reproduces nn.GRU's outputs (slow marker)."""
    import shutil

    if not (shutil.which("c++") or shutil.which("g++")) or not shutil.which("ninja"):
        pytest.skip("needs a C++ compiler and ninja (torch.utils.cpp_extension)")
    spec = importlib.util.spec_from_file_location("textgru_probe_fused_gru", BENCHMARKS / "probe_fused_gru.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--repeats", "2", "--json", str(tmp_path / "probe.json")])
    assert {(c["batch"], c["steps"]) for c in report["cases"]} == {(1, 22), (1, 276), (64, 22), (64, 276)}
    for case in report["cases"]:
        assert case["max_abs_diff"] < 1e-5, case  # the fused loop computes the same GRU
        assert case["torch_gru_ms"] > 0 and case["fused_ms"] > 0


def test_explain_cost_reports_gaps_and_seconds(tmp_path, shared_data, tiny_tokenizer):
    """benchmarks/explain_cost.py on a tiny saved classifier: a gap per step count, seconds per method."""
    from tiny_models import tiny_classifier

    folder = tmp_path / "model"
    tiny_classifier(tiny_tokenizer, num_labels=2).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    spec = importlib.util.spec_from_file_location("textgru_explain_cost", BENCHMARKS / "explain_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(
        [
            str(folder),
            "--data-dir",
            str(shared_data),
            "--n-texts",
            "3",
            "--steps",
            "4",
            "16",
            "--n-cost",
            "1",
            "--cost-tokens",
            "20",
            "--json",
            str(tmp_path / "cost.json"),
        ]  # fmt: skip
    )
    assert set(report["gap"]) == {4, 16} and all(g["max"] >= g["median"] >= 0 for g in report["gap"].values())
    assert set(report["seconds_per_text"]) == {"integrated_gradients", "occlusion"}
    assert json.loads((tmp_path / "cost.json").read_text())["texts"] == 3


@pytest.mark.parametrize("mode", ["training", "inference"])
def test_stepwise_crossover_reports_every_configuration(tmp_path, mode):
    """benchmarks/stepwise_crossover.py on tiny sizes: one row per configuration, every path timed, JSON written."""
    spec = importlib.util.spec_from_file_location("textgru_stepwise_crossover", BENCHMARKS / "stepwise_crossover.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "crossover.json"
    args = [
        "--mode",
        mode,
        "--hidden",
        "8",
        "--batch",
        "2",
        "3",
        "--length",
        "5",
        "--repeats",
        "1",
        "--json",
        str(out),
    ]
    results = module.main(args)
    assert [(r["hidden"], r["batch"], r["length"]) for r in results] == [(8, 2, 5), (8, 3, 5)]
    timed = [k for k in results[0] if k.endswith("_s")]
    if mode == "training":  # the PyTorch loop, nn.GRU, and the compiled loop where it builds
        assert {"stepwise_s", "nn_gru_s"} <= set(timed) <= {"stepwise_s", "nn_gru_s", "native_s"}
        assert ("native_s" in timed) == ("native_speedup" in results[0])
    else:
        assert len(timed) == 3
    assert all(r[k] > 0 for r in results for k in timed)
    assert all(r[k] > 0 for r in results for k in r if k.startswith("speedup"))
    if mode == "inference":
        assert all(0 < r["fill"] <= 1 for r in results)
    saved = json.loads(out.read_text())
    assert saved["results"] == results and saved["meta"]["mode"] == mode


def test_batched_throughput_is_the_median_pass(speed):
    """time_batched repeats passes for min_seconds and keeps the median: one slow pass (a hiccup of a shared machine)
    does not decide the figure; min_seconds=0 is a single pass."""
    import time

    class Predictor:
        def __init__(self):
            self.calls = 0

        def predict(self, texts):
            self.calls += 1
            time.sleep(0.2 if self.calls <= 2 else 0.002)  # the first pass (2 calls of 2 texts) is slow

    slow_first = Predictor()
    steady = speed.time_batched(slow_first, ["a"] * 4, batch_size=2, min_seconds=0.5)
    assert slow_first.calls > 6  # several passes
    assert steady > 400  # ~4 texts / 4 ms, not 4 texts / 0.4 s
    single = Predictor()
    assert speed.time_batched(single, ["a"] * 4, batch_size=2) < 20 and single.calls == 2


def test_textgru_contenders_run_a_call_as_one_batch(speed, tmp_path):
    """The harness's calls are its batches: textgru's predictors must not cut a call of 64 texts into their default
    batches of 32 (the batch-64 figures would then be batch-32 ones)."""
    import _contenders

    assert _contenders.ONE_BATCH >= 4096
    ctx = _contenders.Context(work_dir=tmp_path, fit_texts=["good film", "bad plot"] * 50, fit_labels=[1, 0] * 50)
    from textgru.tokenization import train_tokenizer

    train_tokenizer(ctx.fit_texts, vocab_size=600, show_progress=False).save_pretrained(tmp_path / "tokenizer")
    folder = tmp_path / "textgru"
    _contenders.build_contender("textgru", ctx, folder)
    predictor = _contenders.load_contender("textgru", folder, threads=1, max_tokens=64)
    assert predictor.batch_size == _contenders.ONE_BATCH


def test_length_buckets_script_fits_and_checks_every_backend(tmp_path):
    """benchmarks/length_buckets.py --quick: a cost fit and a buckets on/off check per backend (no timing claims)."""
    pytest.importorskip("onnxruntime")
    spec = importlib.util.spec_from_file_location("textgru_length_buckets", BENCHMARKS / "length_buckets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "buckets.json"
    report = module.main(["--quick", "--data-dir", str(SHARED_DATA), "--json", str(out)])
    assert set(report["backends"]) == {"textgru", "textgru-onnx", "textgru-onnx-int8"}
    for entry in report["backends"].values():
        fit = entry["fit"]
        assert fit["b_us"] > 0 and fit["call_cost"] >= 0 and fit["step_cost"] >= 0
        assert len(fit["samples"]) == 3 * 2  # --quick: 3 batch sizes x 2 widths
        for order in ("input order", "length-sorted"):
            check = entry["check"][order]
            assert check["buckets_on_texts_per_s"] > 0 and check["buckets_off_texts_per_s"] > 0
    assert json.loads(out.read_text())["texts"] == report["texts"]


def test_dropout_cost_script_measures_both_masks(tmp_path):
    """benchmarks/dropout_cost.py --quick: both masks timed per layer and in training steps, the model's own mask
    restored afterwards."""
    spec = importlib.util.spec_from_file_location("textgru_benchmarks_dropout_cost", BENCHMARKS / "dropout_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from textgru.modeling_textgru import TextGRUDropout

    forward = TextGRUDropout.forward
    report = module.main(["--quick", "--data-dir", str(SHARED_DATA), "--json", str(tmp_path / "d.json")])
    assert TextGRUDropout.forward is forward
    assert json.loads((tmp_path / "d.json").read_text()) == report
    for costs in report["layer_fwd_bwd_us"].values():
        assert costs["nn.Dropout"] > 0 and costs["TextGRUDropout"] > 0
    training = report["training"]
    assert len(training["ratio_repeats"]) == training["repeats"] == 2
    assert all(v > 0 for v in training["real_tokens_per_s"].values())


def test_step_matmuls_probe_times_every_product(tmp_path):
    """benchmarks/step_matmuls.py on a tiny problem: every product of a layer step, fp32 and int8, both runtimes."""
    spec = importlib.util.spec_from_file_location("textgru_benchmarks_step_matmuls", BENCHMARKS / "step_matmuls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(["--batch", "4", "--hidden", "8", "--input", "16", "--steps", "3", "--repeats", "3"])
    figures = report["us_per_step_both_directions"]
    assert len(figures) == 9 and all(us > 0 for us in figures.values())
    assert any("onnxruntime" in name and "int8" in name for name in figures)


def test_runtimes_probe_keeps_one_fp32_gru_per_mixed_graph(tmp_path, monkeypatch):
    """benchmarks/probe_runtimes.py: each mixed graph keeps exactly its one layer as a fused fp32 GRU op and still
    matches eager; OpenVINO rows appear only where it is installed, else a note says so."""
    import onnx

    spec = importlib.util.spec_from_file_location("textgru_probe_runtimes", BENCHMARKS / "probe_runtimes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kept = []
    build = module.int8_with_fp32_layer

    def recording(fp32_dir, int8_dir, layer, out):
        folder = build(fp32_dir, int8_dir, layer, out)
        ops = [node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node]
        kept.append((layer, ops.count("GRU"), ops.count("Scan")))
        return folder

    monkeypatch.setattr(module, "int8_with_fp32_layer", recording)
    report = module.main(
        [
            "--quick",
            "--texts",
            "12",
            "--batch",
            "4",
            "--repeats",
            "1",
            "--seconds",
            "0.01",
            "--calibration",
            "8",
            "--json",
            str(tmp_path / "probe.json"),
        ]
    )
    assert kept == [(0, 1, 1), (1, 1, 1)]  # default config: 2 layers, one left fp32 and one Scan in each graph
    rows = report["predictors"]
    assert {"eager", "onnx", "onnx-int8", "onnx-int8-layer0-fp32", "onnx-int8-layer1-fp32"} <= set(rows)
    for name, row in rows.items():
        assert row["texts_per_s_median"] > 0
        assert row["max_abs_diff_vs_eager"] < (1e-4 if name in ("eager", "onnx") else 0.25), name
    has_openvino = importlib.util.find_spec("openvino") is not None
    assert ("openvino" in rows) == has_openvino
    assert has_openvino or "not installed" in report["notes"]["openvino"]
    assert json.loads((tmp_path / "probe.json").read_text())["batch"] == 4
