"""Where TextGRU's inference time goes, eager PyTorch vs onnxruntime: the bounds behind docs/benchmarks.md.

`speed.py` says how fast each format is; this script says why, with the numbers that decide what a faster path
could still gain. For the default `TextGRUConfig` (random weights: speed only) and real SST-2 test sentences:

1. **Batch 64, length-sorted** (what `predict(texts, batch_size=64)` does): the forward pass per batch, eager and
   ONNX, split by operator (torch.profiler / onnxruntime's profiler). It reports the GRU kernels' share and the
   achieved GFLOP/s of the GRUs' matrix products, against this machine's fp32 matmul peak, and the
   **ceiling**: the speed-up over eager a fast path would get if its GRU matrix products ran at that peak and
   everything else (gates, norms, attention, tokenisation) cost nothing.
2. **Batch 1**: the cost of one GRU time step in `torch.gru` (one direction, one text), in onnxruntime's GRU and in
   textgru's stepwise recurrence (both directions at once: what eager inference runs at batch 1), so the GRU time
   of a text of L tokens is about `layers x L x stepwise step` (on nn.GRU: `2 x layers x L x step`).
3. **A training step** (batch 32 of SST-2 training sentences, as speed.py trains: length-grouped batches for
   TextGRU, random ones for the plain BiGRU of equal width and depth, fused AdamW): the step's wall time and, from
   torch.profiler, its parts: the GRUs (TextGRU's stepwise autograd function, forward and backward), the AdamW
   step and zeroing the embedding's fresh gradient (the last two are fixed costs of the vocabulary, not of the text).

Usage (1 thread, as speed.py; writes nothing unless --json is given):

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/where_time_goes.py [--data-dir ../shared/data] [--json benchmarks/results/where_time_goes.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _data import default_textgru_on_sst2  # noqa: E402  (benchmarks/ is on the path from here on)
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--n-texts", type=int, default=256, help="SST-2 test sentences (seeded sample)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5, help="timed passes over the batches; medians reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quick", action="store_true", help="small slice, 1 repeat (smoke test)")
    return p.parse_args(argv)


def gru_matmul_flops(config, tokens: int) -> float:
    """FLOPs of the GRUs' matrix products (input and recurrent, every layer and direction) over `tokens` tokens.

    Counted over the *real* tokens: the least any implementation must compute (eager TextGRU packs a batch that is
    more than a quarter padding, and onnxruntime's GRU stops each row at its `sequence_lens`)."""
    directions = 2 if config.bidirectional else 1
    flops = 0.0
    for layer in range(config.num_hidden_layers):
        input_size = config.embedding_size if layer == 0 else config.output_size
        flops += directions * 2 * 3 * config.hidden_size * (input_size + config.hidden_size) * tokens
    return flops


def eager_breakdown(model, batches) -> dict:
    """Self CPU time per operator over one pass (torch.profiler), grouped: GRU kernels (and their GEMMs), rest."""
    from torch.profiler import profile

    with torch.no_grad(), profile() as prof:
        for ids, mask in batches:
            model(input_ids=ids, attention_mask=mask)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    gru_total = sum(e.cpu_time_total for e in events if e.key == "aten::gru")
    # inside aten::gru on CPU: one mm for all input products, one addmm per step for the recurrent ones
    gemm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm"))
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:8]
    return {
        "total_us": total,
        "gru_us": gru_total,
        "gemm_us": gemm,
        "top_ops": {e.key: round(e.self_cpu_time_total) for e in top},
    }


def onnx_breakdown(path: Path, batches) -> dict:
    """Kernel time per ONNX operator type over one pass (onnxruntime's profiler)."""
    from textgru.export import onnx_session

    session = onnx_session(path, enable_profiling=True, profile_file_prefix=str(Path(tempfile.mkdtemp()) / "ort"))
    for ids, mask in batches:
        session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    trace = Path(session.end_profiling())
    per_op: collections.Counter = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    return {"total_us": sum(per_op.values()), "gru_us": per_op["GRU"], "per_op_us": dict(per_op.most_common(8))}


def step_cost_us(config, steps: int, repeats: int) -> dict:
    """Microseconds per time step on one text: one direction of torch.gru and of onnxruntime's GRU, and both
    directions of textgru's stepwise recurrence (what eager inference runs at batch 1, as TextClassifier runs it)."""
    from textgru.modeling_textgru import TextGRUBidirectionalLayer, _reversal_index, _stepwise_index

    input_size, hidden = config.embedding_size, config.hidden_size
    gru = torch.nn.GRU(input_size, hidden, batch_first=True).eval()
    x = torch.randn(1, steps, input_size)
    with torch.no_grad():
        torch_s = median_seconds(lambda: gru(x), repeats * 20)
    layer = TextGRUBidirectionalLayer(config, input_size).eval()
    layer.cache_stepwise_weights = True
    lengths = torch.tensor([steps])
    reversal = _reversal_index(lengths, steps)
    with torch.inference_mode():
        index = _stepwise_index(reversal, 2)
        stepwise_s = median_seconds(lambda: layer(x, lengths, reversal, False, index), repeats * 20)
    out = {"torch_us_per_step": torch_s / steps * 1e6, "stepwise_us_per_step": stepwise_s / steps * 1e6}
    try:
        import onnxruntime  # noqa: F401

        from textgru.export import onnx_session
    except ImportError:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gru.onnx"
        torch.onnx.export(gru, (x,), str(path), input_names=["x"], output_names=["y", "h"], dynamo=False)
        session = onnx_session(path)
        feed = {"x": x.numpy()}
        ort_s = median_seconds(lambda: session.run(None, feed), repeats * 20)
    out["onnxruntime_us_per_step"] = ort_s / steps * 1e6
    return out


def _per_step_ms(events, keys: set, steps: int) -> float:
    return sum(e.cpu_time_total for e in events if e.key in keys) / steps / 1e3


def training_breakdown(model, tokenizer, data_dir: Path, steps: int, seed: int, pool: int | None = None) -> dict:
    """Per training step (batch 32, SST-2 train sentences, as `_training.train_steps` runs it): wall ms without the
    profiler, and with it the ms of the GRUs (stepwise autograd, forward + backward; TextGRU only), of the AdamW step
    and of zero-filling the embedding's gradient, for TextGRU and the plain BiGRU of equal width and depth."""
    from _contenders import tutorial_bigru
    from _data import sst2_train
    from _training import grouped_batches, make_optimizer, random_batches, train_steps
    from torch.profiler import profile, record_function

    from textgru import TextGRUForSequenceClassification

    texts, labels, _ = sst2_train(data_dir, seed)
    texts, labels = texts[:pool], labels[:pool]  # pool: a slice for the smoke test
    token_ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts)]
    lengths = [max(len(t), 1) for t in token_ids]
    config = model.config
    pad = config.pad_token_id
    textgru = TextGRUForSequenceClassification(config)
    plain = tutorial_bigru(config.vocab_size, config.embedding_size, config.hidden_size, config.num_hidden_layers, pad)
    embedding_shape = [config.vocab_size, config.embedding_size]
    out = {"steps": steps, "batch_size": 32}
    for name, net, use_mask, draw in (
        ("textgru", textgru, True, lambda: grouped_batches(lengths, 32, 2 * steps + 1, seed)),
        ("plain-bigru", plain, False, lambda: random_batches(len(token_ids), 32, 2 * steps + 1, seed)),
    ):
        optimizer, batches = make_optimizer(net), draw()
        timed = train_steps(net, optimizer, batches[: steps + 1], token_ids, labels, pad, use_mask)
        with profile(record_shapes=True) as prof, record_function("textgru.probe.steps"):
            train_steps(net, optimizer, batches[steps:], token_ids, labels, pad, use_mask)
        events = prof.key_averages(group_by_input_shape=True)
        profiled = steps + 1  # train_steps runs an untimed warm-up step first, which the profile holds too
        fill = sum(
            e.self_cpu_time_total
            for e in events
            if e.key == "aten::fill_" and e.input_shapes and e.input_shapes[0] == embedding_shape
        )
        out[name] = {
            "step_ms": timed["step_seconds_median"] * 1e3,
            "profiled_step_ms": _per_step_ms(events, {"textgru.probe.steps"}, profiled),
            "gru_ms": _per_step_ms(events, {"_StepwiseGRU", "_StepwiseGRUBackward"}, profiled),
            "adamw_ms": _per_step_ms(events, {"Optimizer.step#AdamW.step"}, profiled),
            "embedding_grad_fill_ms": fill / profiled / 1e3,
            "real_tokens_per_step": timed["real_tokens"] / timed["steps"],
        }
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.n_texts, args.repeats = 16, 1
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from _training import matmul_peak_gflops

    from textgru.export import export_onnx, onnx_session
    from textgru.inference import _encode as encode
    from textgru.inference import _pad as pad_encodings
    from textgru.inference import fast_backend

    model, tokenizer, timed, source = default_textgru_on_sst2(args.data_dir, args.n_texts, args.seed, args.quick)
    config = model.config
    # part 1 splits nn.GRU's kernels, the path of batches above `stepwise_inference_max_batch` (also in --quick)
    model.textgru.stepwise_inference_max_batch = 0
    backend = fast_backend(tokenizer)
    # tokenise once; length-sorted batches, as predict() builds them
    encodings = sorted(encode(backend, timed), key=lambda e: len(e.ids))
    batches = []
    for i in range(0, len(encodings), args.batch_size):
        ids, mask = pad_encodings(encodings[i : i + args.batch_size], config.pad_token_id)
        batches.append((torch.from_numpy(ids), torch.from_numpy(mask)))
    real = sum(int(m.sum()) for _, m in batches)
    padded = sum(m.numel() for _, m in batches)
    peak = matmul_peak_gflops(threads=1)

    def eager_pass():
        with torch.no_grad():
            for ids, mask in batches:
                model(input_ids=ids, attention_mask=mask)

    tokenize_s = median_seconds(lambda: encode(backend, timed), args.repeats)  # as predict() tokenises
    eager_s = median_seconds(eager_pass, args.repeats)
    eager = eager_breakdown(model, batches)
    report = {
        "source": source,
        "texts": len(timed),
        "batch_size": args.batch_size,
        "real_tokens": real,
        "padded_tokens": padded,
        "matmul_peak_gflops": peak,
        "tokenize_ms": tokenize_s * 1e3,
        "eager_forward_ms": eager_s * 1e3,
        "eager_profile": eager,
    }
    flops = gru_matmul_flops(config, real)
    gru_gemm_at_peak_s = flops / (peak * 1e9)
    report["gru_matmul_gflop"] = flops / 1e9
    # mm / addmm are nearly all inside the GRUs (the rest: attention scorer, skip projection, head)
    report["eager_gru_gemm_gflops"] = flops / (eager["gemm_us"] / 1e6) / 1e9
    report["eager_gru_gflops"] = flops / (eager["gru_us"] / 1e6) / 1e9
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = export_onnx(model, tokenizer, Path(tmp) / "onnx")
            session = onnx_session(folder / "model.onnx")
            feeds = [{"input_ids": i.numpy(), "attention_mask": m.numpy()} for i, m in batches]
            onnx_s = median_seconds(lambda: [session.run(["logits"], f) for f in feeds], args.repeats)
            report["onnx_forward_ms"] = onnx_s * 1e3
            report["onnx_profile"] = onnx_breakdown(folder / "model.onnx", batches)
            report["onnx_gru_gflops"] = flops / (report["onnx_profile"]["gru_us"] / 1e6) / 1e9
    except ImportError:
        report["onnx_forward_ms"] = None
    # The ceiling: tokenisation and the GRU products at the matmul peak are all a fast path would pay.
    eager_end_to_end = eager_s + tokenize_s
    report["ceiling_speedup_vs_eager"] = eager_end_to_end / (gru_gemm_at_peak_s + tokenize_s)
    report["ceiling_speedup_vs_eager_gru_gemm_only"] = eager_s / gru_gemm_at_peak_s
    if report["onnx_forward_ms"]:
        report["onnx_speedup_vs_eager_end_to_end"] = eager_end_to_end / (onnx_s + tokenize_s)
    report["batch1_step"] = step_cost_us(config, 32, args.repeats)
    report["training_step"] = training_breakdown(
        model, tokenizer, args.data_dir, 1 if args.quick else 20, args.seed, 2000 if args.quick else None
    )
    print_report(report, config)
    write_json(args.json, report)
    return report


def _ops_line(label: str, microseconds: dict) -> str:
    return f"  {label}: " + ", ".join(f"{k} {v / 1e3:.1f}" for k, v in microseconds.items())


def print_report(r: dict, config) -> None:
    n_batches = -(-r["texts"] // r["batch_size"])
    per_batch = lambda ms: ms / n_batches  # noqa: E731
    eager = r["eager_profile"]
    print(f"data: {r['source']}; {r['texts']} sentences in {n_batches} length-sorted batches of {r['batch_size']}")
    print(
        f"padding: {1 - r['real_tokens'] / r['padded_tokens']:.1%}; matmul peak {r['matmul_peak_gflops']:.0f} GFLOP/s"
    )
    print(f"tokenisation: {per_batch(r['tokenize_ms']):.2f} ms per batch")
    print(
        f"eager forward: {per_batch(r['eager_forward_ms']):.2f} ms per batch; GRU kernels "
        f"{eager['gru_us'] / eager['total_us']:.0%} of it ({r['eager_gru_gflops']:.0f} useful GFLOP/s), their matrix "
        f"products {eager['gemm_us'] / eager['total_us']:.0%} ({r['eager_gru_gemm_gflops']:.0f} GFLOP/s while in them)"
    )
    print(_ops_line("top operators (self ms over all batches)", eager["top_ops"]))
    if r.get("onnx_forward_ms"):
        onnx = r["onnx_profile"]
        print(
            f"onnx forward: {per_batch(r['onnx_forward_ms']):.2f} ms per batch; GRU op "
            f"{onnx['gru_us'] / onnx['total_us']:.0%} of kernel time ({r['onnx_gru_gflops']:.0f} useful GFLOP/s); "
            f"end to end {r['onnx_speedup_vs_eager_end_to_end']:.2f}x eager"
        )
        print(_ops_line("operators (ms over all batches)", onnx["per_op_us"]))
    print(
        f"GRU matrix products on real tokens: {r['gru_matmul_gflop'] / n_batches:.3f} GFLOP per batch; at the matmul "
        f"peak {r['gru_matmul_gflop'] / n_batches / r['matmul_peak_gflops'] * 1e3:.2f} ms"
    )
    print(
        f"ceiling of any fp32 fast path (GRU products at peak, everything else free but tokenisation): "
        f"{r['ceiling_speedup_vs_eager']:.2f}x eager end to end"
    )
    step = r["batch1_step"]
    line = (
        f"batch 1, one GRU direction, hidden {config.hidden_size}: torch.gru {step['torch_us_per_step']:.1f} us/step"
    )
    if "onnxruntime_us_per_step" in step:
        line += f", onnxruntime {step['onnxruntime_us_per_step']:.1f} us/step"
    directions = 2 if config.bidirectional else 1
    line += (
        f"; textgru stepwise, all {directions} directions: {step['stepwise_us_per_step']:.1f} us/step. GRU time per "
        f"token of eager batch-1 inference: {config.num_hidden_layers} x {step['stepwise_us_per_step']:.1f} us = "
        f"{config.num_hidden_layers * step['stepwise_us_per_step'] / 1e3:.3f} ms (on nn.GRU: "
        f"{directions * config.num_hidden_layers * step['torch_us_per_step'] / 1e3:.3f} ms)"
    )
    print(line)
    train = r["training_step"]
    for name in ("textgru", "plain-bigru"):
        t = train[name]
        parts = f"GRUs {t['gru_ms']:.1f}, " if name == "textgru" else ""
        print(
            f"training step, {name}, batch {train['batch_size']} ({t['real_tokens_per_step']:.0f} real tokens): "
            f"{t['step_ms']:.1f} ms; profiled {t['profiled_step_ms']:.1f} ms, of which {parts}AdamW "
            f"{t['adamw_ms']:.1f}, zeroing the embedding gradient {t['embedding_grad_fill_ms']:.1f}"
        )


if __name__ == "__main__":
    main()
