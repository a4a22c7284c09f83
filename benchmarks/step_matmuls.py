"""Probe: the matrix products of one bidirectional TextGRU layer at batch 64, fp32 against int8. (Not the library.)

Why the batched fast path stalls short of 2x eager (docs/benchmarks.md): a GRU layer's work is the input projection
(one large product over all time steps) and, per step, the recurrent product of the (batch, hidden) state with
`W_hh` plus the gate math. This script times each product as eager textgru runs it (fp32 batched matmuls) and as an
int8 path could (torch's dynamic int8 `linear_dynamic`, fbgemm / x86; onnxruntime's `DynamicQuantizeLinear` +
`MatMulIntegerToFloat`, what the int8 ONNX export's `Scan` step runs per gate), per time step and both directions,
at TextGRU's default width (hidden 128 per direction, layer input 256). Random weights and inputs.

    export OMP_NUM_THREADS=1
    python benchmarks/step_matmuls.py [--batch 64] [--json benchmarks/results/step_matmuls.json]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402  (benchmarks/ is on the path from here on)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64, help="rows (default 64: the throughput figure's batch)")
    p.add_argument("--hidden", type=int, default=128, help="hidden size per direction (default 128)")
    p.add_argument("--input", type=int, default=256, help="layer input size (default 256: a layer above the first)")
    p.add_argument("--steps", type=int, default=32, help="time steps of the input projection (default 32)")
    p.add_argument("--repeats", type=int, default=200, help="timed calls per figure (median)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def median_us(fn, repeats: int) -> float:
    return median_seconds(fn, repeats, warmup=10) * 1e6


def torch_int8(weight: torch.Tensor, bias: torch.Tensor):
    """`weight` (out, in) quantised per output channel to int8 and packed for `quantized.linear_dynamic`."""
    scales = weight.abs().amax(1).clamp_min(1e-8) / 127
    with warnings.catch_warnings():  # quantised tensors are deprecated in torch 2.13; this probe measures them
        warnings.simplefilter("ignore")
        q = torch.quantize_per_channel(weight, scales, torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, bias)


def onnx_int8_matmuls(weights: list[np.ndarray], rows: int, folder: Path):
    """An onnxruntime int8 session computing `x @ w` for each of `weights` from one input `x` (quantised once, as
    in the `Scan` step), and the same graph in fp32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from textgru.export import onnx_session

    k = weights[0].shape[0]
    nodes = [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(len(weights))]
    graph = helper.make_graph(
        nodes,
        "products",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(len(weights))],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, folder / "fp32.onnx")
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(str(folder / "fp32.onnx"), str(folder / "int8.onnx"), weight_type=QuantType.QInt8)
    finally:
        logging.disable(logging.NOTSET)
    return onnx_session(folder / "int8.onnx"), onnx_session(folder / "fp32.onnx")


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    b, h, i, steps, r = args.batch, args.hidden, args.input, args.steps, args.repeats
    w_hh, b_hh = torch.randn(2, 3 * h, h) * 0.1, torch.randn(2, 3 * h) * 0.1
    w_ih, b_ih = torch.randn(2, 3 * h, i) * 0.1, torch.randn(2, 3 * h) * 0.1
    state, x = torch.rand(2, b, h) * 2 - 1, torch.randn(steps * b, i)
    w_hh_t, bias = w_hh.transpose(1, 2).contiguous(), b_hh.unsqueeze(1)
    out = torch.empty(2, b, 3 * h)
    packed_hh = [torch_int8(w_hh[d], b_hh[d]) for d in range(2)]
    packed_ih = [torch_int8(w_ih[d], b_ih[d]) for d in range(2)]
    w_ih_t = w_ih.transpose(1, 2).contiguous()
    figures = {}
    with torch.inference_mode():
        figures["recurrent fp32, torch baddbmm (eager textgru)"] = median_us(
            lambda: torch.baddbmm(bias, state, w_hh_t, out=out), r
        )
        figures["recurrent int8, torch linear_dynamic x 2"] = median_us(
            lambda: [torch.ops.quantized.linear_dynamic(state[d], packed_hh[d], True) for d in range(2)], r
        )
        gates_in = torch.randn(2, b, 3 * h)
        rz, candidate, new_state = torch.empty(2, b, 2 * h), torch.empty(2, b, h), torch.empty(2, b, h)

        def gate_math():  # _gru_recurrence's step after its matmul
            torch.add(gates_in[..., : 2 * h], out[..., : 2 * h], out=rz).sigmoid_()
            torch.addcmul(gates_in[..., 2 * h :], rz[..., :h], out[..., 2 * h :], out=candidate).tanh_()
            torch.lerp(candidate, state, rz[..., h:], out=new_state)

        figures["gate math, torch (5 ops, both directions)"] = median_us(gate_math, r)
        per_step = lambda us: us / steps  # noqa: E731 - the input projection covers every step at once
        figures["input projection fp32, torch baddbmm, per step"] = per_step(
            median_us(lambda: torch.baddbmm(b_ih.unsqueeze(1), x.expand(2, -1, -1), w_ih_t), max(r // 10, 5))
        )
        figures["input projection int8, torch linear_dynamic, per step"] = per_step(
            median_us(
                lambda: [torch.ops.quantized.linear_dynamic(x, packed_ih[d], True) for d in range(2)],
                max(r // 10, 5),
            )
        )
    with tempfile.TemporaryDirectory() as tmp:
        # the Scan step: per direction one quantised state, three per-gate products
        gates = [np.ascontiguousarray(w_hh[0, g * h : (g + 1) * h].T.numpy()) for g in range(3)]
        int8, fp32 = onnx_int8_matmuls(gates, b, Path(tmp))
        feed = {"x": state[0].numpy()}
        figures["recurrent int8, onnxruntime (Scan step: 1 quantise + 3 products) x 2"] = 2 * median_us(
            lambda: int8.run(None, feed), r
        )
        figures["recurrent fp32, onnxruntime (3 products) x 2"] = 2 * median_us(lambda: fp32.run(None, feed), r)
        ih = [np.ascontiguousarray(w_ih[d].T.numpy()) for d in range(2)]
        int8, fp32 = onnx_int8_matmuls(ih, steps * b, Path(tmp))
        feed = {"x": x.numpy()}
        figures["input projection int8, onnxruntime, per step"] = per_step(median_us(lambda: int8.run(None, feed), r))
        figures["input projection fp32, onnxruntime, per step"] = per_step(median_us(lambda: fp32.run(None, feed), r))
    flops = 2 * 2 * b * h * 3 * h
    report = {
        "batch": b,
        "hidden": h,
        "input": i,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "us_per_step_both_directions": figures,
        "recurrent_fp32_gflops": flops / figures["recurrent fp32, torch baddbmm (eager textgru)"] / 1e3,
    }
    print(f"batch {b}, hidden {h} per direction, layer input {i}; microseconds per time step, both directions:")
    for name, us in figures.items():
        print(f"  {name:70s} {us:8.1f}")
    print(f"  (the fp32 recurrent product runs at {report['recurrent_fp32_gflops']:.0f} GFLOP/s)")
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
