"""The training recurrence's per-step loops: PyTorch against textgru's compiled ones (docs/design.md).

For one TextGRU layer's shapes in a training step (both directions, batch of `--batch` rows, `--steps` time steps,
hidden `--hidden`), times separately, median of interleaved repeats:

- the forward loop (`_gru_recurrence` with its buffers saved, vs `textgru_gru_train_forward`);
- the backward loop (`_recurrence_backward` vs `textgru_gru_train_backward`): the per-step half of the backward
  pass, before the weight-gradient matmuls both share;
- the whole `_StepwiseGRU` forward + backward of a layer (input width `--hidden`), both ways;
- one step's recurrent product, (batch x hidden) x (hidden x 3 hidden): the compiled tile against `torch.addmm`,
  in GFLOP/s.

Usage (1 thread, as speed.py):

    OMP_NUM_THREADS=1 python benchmarks/training_recurrence.py [--json benchmarks/results/training_recurrence.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stepwise_crossover import _interleaved  # noqa: E402  (benchmarks/ is on the path from here on)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=22, help="time steps (SST-2's length-grouped batches: 21-23)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--repeats", type=int, default=21)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    from textgru.kernels import load_training
    from textgru.modeling_textgru import (
        _gru_recurrence,
        _input_gates,
        _native_backward,
        _native_forward,
        _recurrence_backward,
        _StepwiseGRU,
    )

    lib = load_training()
    torch.manual_seed(0)
    directions, steps, batch, hidden = 2, args.steps, args.batch, args.hidden
    x = torch.randn(directions, steps, batch, hidden)
    weights = [
        torch.randn(directions, 3 * hidden, hidden) * hidden**-0.5,
        torch.randn(directions, 3 * hidden, hidden) * hidden**-0.5,
        torch.randn(directions, 3 * hidden) * 0.1,
        torch.randn(directions, 3 * hidden) * 0.1,
    ]
    weight_ih, weight_hh, bias_ih, bias_hh = weights
    gates_in = _input_gates(x, weight_ih.mT, bias_ih)
    weight_hh_t = weight_hh.mT.contiguous()
    grad_states = torch.randn(directions, steps, batch, hidden)
    states, saved = _gru_recurrence(gates_in, weight_hh_t, bias_hh.unsqueeze(1), save=True)
    native_states, native_saved = _native_forward(lib, x, *weights)

    def layer(native) -> None:
        leaves = [t.clone().requires_grad_(True) for t in (x, *weights)]
        _StepwiseGRU.apply(*leaves, native).backward(grad_states)

    loops = _interleaved(
        {
            "forward_pytorch": lambda: _gru_recurrence(gates_in, weight_hh_t, bias_hh.unsqueeze(1), save=True),
            "forward_compiled": lambda: _native_forward(lib, x, *weights),
            "backward_pytorch": lambda: _recurrence_backward(grad_states, states, *saved, weight_hh),
            "backward_compiled": lambda: _native_backward(lib, grad_states, native_states, *native_saved, weight_hh),
            "layer_pytorch": lambda: layer(None),
            "layer_compiled": lambda: layer(lib),
            # the compiled forward includes the input projection (one matmul): timed alone to compare loops with loops
            "input_projection": lambda: _input_gates(x, weight_ih.mT, bias_ih),
        },
        args.repeats,
        inner=3,
    )
    projection = loops.pop("input_projection")
    loops["forward_compiled_loop_only"] = loops["forward_compiled"] - projection

    a, w = torch.randn(batch, hidden), torch.randn(hidden, 3 * hidden)
    c = torch.zeros(batch, 3 * hidden)
    product = _interleaved(
        {
            "compiled": lambda: lib.textgru_train_gemm(
                batch, 3 * hidden, hidden, a.data_ptr(), hidden, w.data_ptr(), 3 * hidden, c.data_ptr(), 3 * hidden, 1
            ),
            "torch_addmm": lambda: torch.addmm(c, a, w, out=c),
        },
        args.repeats,
        inner=200,
    )
    flops = 2 * batch * hidden * 3 * hidden
    out = {
        "shape": {"directions": directions, "steps": steps, "batch": batch, "hidden": hidden},
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "vector_width": lib.textgru_train_vector_width(),
        "ms": {name: seconds * 1e3 for name, seconds in {**loops, "input_projection": projection}.items()},
        "forward_loop_speedup": loops["forward_pytorch"] / loops["forward_compiled_loop_only"],
        "backward_loop_speedup": loops["backward_pytorch"] / loops["backward_compiled"],
        "layer_speedup": loops["layer_pytorch"] / loops["layer_compiled"],
        "product_gflops": {name: flops / seconds / 1e9 for name, seconds in product.items()},
    }
    print(f"{directions} directions x {steps} steps x {batch} rows, hidden {hidden}, {out['threads']} thread(s)")
    print("| loop | PyTorch ms | compiled ms | speed-up |\n|---|---:|---:|---:|")
    ms = out["ms"]
    print(
        f"| forward (recurrence only) | {ms['forward_pytorch']:.3f} | {ms['forward_compiled_loop_only']:.3f} | "
        f"{out['forward_loop_speedup']:.2f}x |"
    )
    print(
        f"| backward (per-step half) | {ms['backward_pytorch']:.3f} | {ms['backward_compiled']:.3f} | "
        f"{out['backward_loop_speedup']:.2f}x |"
    )
    print(
        f"| layer, forward + backward | {ms['layer_pytorch']:.3f} | {ms['layer_compiled']:.3f} | "
        f"{out['layer_speedup']:.2f}x |"
    )
    gf = out["product_gflops"]
    print(
        f"recurrent product ({batch} x {hidden}) x ({hidden} x {3 * hidden}): compiled {gf['compiled']:.0f} GFLOP/s, "
        f"torch.addmm {gf['torch_addmm']:.0f} GFLOP/s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
