"""Probe: would a hand-fused GRU kernel make TextGRU's CPU inference much faster? (Not part of the library.)

torch's CPU GRU (`aten::gru`) runs each time step as a GEMM plus ~10 small element-wise ops, each a dispatcher call
that allocates. This script JIT-compiles a minimal fused alternative (one `addmm_out` into a preallocated buffer per
step, then all gate math for the step in one vectorised C++ loop; compiled with `-O3 -ffast-math -march=native`) and
times it against `torch.nn.GRU` for one direction of TextGRU's default width, at batch 1 and 64, on short
(sentence-length) and long (review-length) inputs. It also checks that both give the same outputs.

What it answers (see docs/benchmarks.md): at batch 1 the per-step op overhead is most of the cost, so a fused loop
is several times faster; at batch 64 the per-step GEMM dominates, so fusing the rest gains little, and a 2x faster
batched path needs faster GEMMs (int8), not less overhead.

Needs a C++ compiler and ninja (torch.utils.cpp_extension; the first run compiles for ~40 s, then it is cached).

    export OMP_NUM_THREADS=1
    python benchmarks/probe_fused_gru.py [--repeats 20] [--json benchmarks/results/probe_fused_gru.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402  (benchmarks/ is on the path from here on)

SOURCE = r"""
#include <torch/extension.h>
#include <cmath>

// One GRU direction over right-padded input. xproj = W_ih x + b_ih for every position, (batch, time, 3 * hidden);
// lengths (batch,) int64; the backward direction (reverse) reads each row from its last real token down. Writes the
// states into out[:, :, offset : offset + hidden] at real positions only.
void gru_direction(torch::Tensor xproj, torch::Tensor lengths, torch::Tensor w_hh, torch::Tensor b_hh,
                   bool reverse, torch::Tensor out, int64_t offset) {
  TORCH_CHECK(xproj.is_contiguous() && out.is_contiguous() && xproj.scalar_type() == torch::kFloat);
  const int64_t B = xproj.size(0), T = xproj.size(1), G = xproj.size(2), H = G / 3, W = out.size(2);
  auto h = torch::zeros({B, H}, xproj.options());
  auto hg = torch::empty({B, G}, xproj.options());
  auto wt = w_hh.t();
  const int64_t* len = lengths.data_ptr<int64_t>();
  const float* xp = xproj.data_ptr<float>();
  float* hp = h.data_ptr<float>();
  const float* hgp = hg.data_ptr<float>();
  float* op = out.data_ptr<float>();
  int64_t steps = 0;
  for (int64_t b = 0; b < B; ++b) steps = std::max(steps, len[b]);
  for (int64_t t = 0; t < steps; ++t) {
    at::addmm_out(hg, b_hh, h, wt);  // W_hh h + b_hh for all three gates, into the same buffer every step
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = len[b];
      if (t >= L) continue;
      const int64_t pos = reverse ? L - 1 - t : t;
      const float* x = xp + (b * T + pos) * G;
      const float* g = hgp + b * G;
      float* hb = hp + b * H;
      float* o = op + (b * T + pos) * W + offset;
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) {
        const float r = 1.f / (1.f + expf(-(x[j] + g[j])));
        const float z = 1.f / (1.f + expf(-(x[H + j] + g[H + j])));
        const float n = tanhf(x[2 * H + j] + r * g[2 * H + j]);
        const float hn = n + z * (hb[j] - n);
        hb[j] = hn;
        o[j] = hn;
      }
    }
  }
}
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=128, help="GRU hidden size (TextGRU default: 128 per direction)")
    p.add_argument("--input", type=int, default=128, help="input size (TextGRU default embedding: 128)")
    p.add_argument("--repeats", type=int, default=20, help="timed calls per case (median reported)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def compile_kernel():
    from torch.utils.cpp_extension import load_inline

    return load_inline(
        "textgru_probe_fused_gru",
        cpp_sources=SOURCE,
        functions=["gru_direction"],
        extra_cflags=["-O3", "-ffast-math", "-march=native", "-fopenmp-simd"],
    )


def median_ms(fn, repeats: int) -> float:
    return median_seconds(fn, repeats) * 1e3


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    started = time.perf_counter()
    kernel = compile_kernel()
    compile_s = time.perf_counter() - started
    gru = torch.nn.GRU(args.input, args.hidden, batch_first=True).eval()
    cases = []
    with torch.no_grad():
        for batch, steps in ((1, 22), (1, 276), (64, 22), (64, 276)):  # SST-2 / IMDB mean lengths in speed.py
            x = torch.randn(batch, steps, args.input)
            lengths = torch.full((batch,), steps, dtype=torch.long)
            out = torch.empty(batch, steps, args.hidden)

            def fused(x=x, lengths=lengths, out=out):
                xproj = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)  # one GEMM, every step
                kernel.gru_direction(xproj, lengths, gru.weight_hh_l0, gru.bias_hh_l0, False, out, 0)
                return out

            max_diff = float((fused() - gru(x)[0]).abs().max())
            torch_ms = median_ms(lambda x=x: gru(x), args.repeats)
            fused_ms = median_ms(fused, args.repeats)
            cases.append(
                {
                    "batch": batch,
                    "steps": steps,
                    "torch_gru_ms": torch_ms,
                    "fused_ms": fused_ms,
                    "speedup": torch_ms / fused_ms,
                    "torch_us_per_step": torch_ms / steps * 1e3,
                    "fused_us_per_step": fused_ms / steps * 1e3,
                    "max_abs_diff": max_diff,
                }
            )
        # the per-step recurrent GEMM alone, at batch 64: the floor of any fp32 loop
        h = torch.randn(64, args.hidden)
        hg = torch.empty(64, 3 * args.hidden)
        wt = gru.weight_hh_l0.t()
        gemm_ms = median_ms(lambda: [torch.addmm(gru.bias_hh_l0, h, wt, out=hg) for _ in range(100)], args.repeats)
    gemm_us = gemm_ms / 100 * 1e3
    report = {
        "hidden": args.hidden,
        "input": args.input,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "compile_seconds": compile_s,
        "cases": cases,
        "recurrent_gemm_b64_us": gemm_us,
        "recurrent_gemm_b64_gflops": 2 * 64 * args.hidden * 3 * args.hidden / gemm_us / 1e3,
    }
    print(f"one GRU direction, input {args.input}, hidden {args.hidden}, 1 thread (compiled in {compile_s:.0f} s)")
    print("| batch | steps | torch.gru ms | fused loop ms | speed-up | us/step torch | us/step fused | max diff |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cases:
        print(
            f"| {c['batch']} | {c['steps']} | {c['torch_gru_ms']:.3f} | {c['fused_ms']:.3f} | {c['speedup']:.2f}x | "
            f"{c['torch_us_per_step']:.1f} | {c['fused_us_per_step']:.1f} | {c['max_abs_diff']:.1e} |"
        )
    print(
        f"recurrent GEMM alone at batch 64 (64 x {args.hidden} @ {args.hidden} x {3 * args.hidden}): "
        f"{gemm_us:.1f} us per step, {report['recurrent_gemm_b64_gflops']:.0f} GFLOP/s"
    )
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
