"""Where does TextGRU's stepwise GRU (its own autograd for CPU training) beat `nn.GRU`? A sweep.

For each hidden size, batch size and sequence length, times one training step (forward + backward) of a stack of
TextGRU bidirectional layers on the stepwise path and on `nn.GRU` (the same layers and weights, interleaved
repeats, median), and prints the speed-up (`nn.GRU` time / stepwise time; > 1 = the stepwise path is faster).
This sweep is what `TextGRUModel.stepwise_max_batch` (32) rests on.

    OMP_NUM_THREADS=1 python benchmarks/stepwise_crossover.py --json benchmarks/results/stepwise_crossover.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from textgru import TextGRUConfig
from textgru.modeling_textgru import TextGRUBidirectionalLayer, _reversal_index


def speedup(hidden: int, batch: int, length: int, layers: int, repeats: int, seed: int = 0) -> dict:
    """One configuration: median step seconds on both paths and their ratio."""
    torch.manual_seed(seed)
    config = TextGRUConfig(hidden_size=hidden, embedding_size=hidden, num_hidden_layers=layers)
    stack = [TextGRUBidirectionalLayer(config, hidden if i == 0 else 2 * hidden) for i in range(layers)]
    lengths = torch.randint(length // 2, length + 1, (batch,))
    lengths[0] = length
    x = torch.randn(batch, length, hidden)
    reversal = _reversal_index(lengths, length)

    def step(stepwise: bool) -> float:
        start = time.perf_counter()
        h = x
        for layer in stack:
            h = layer(h, lengths, reversal, False, stepwise)
        h.sum().backward()
        return time.perf_counter() - start

    times: dict[bool, list[float]] = {True: [], False: []}
    for stepwise in times:
        step(stepwise)  # warm-up
    for _ in range(repeats):
        for stepwise in times:  # interleaved
            times[stepwise].append(step(stepwise))
    stepwise_s, torch_s = statistics.median(times[True]), statistics.median(times[False])
    return {
        "hidden": hidden,
        "batch": batch,
        "length": length,
        "stepwise_s": stepwise_s,
        "nn_gru_s": torch_s,
        "speedup": torch_s / stepwise_s,
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 64, 128])
    p.add_argument("--length", type=int, nargs="+", default=[40, 128], help="longest row (rows: length/2..length)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="Also write the results here.")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, threads={threads}, {args.layers} layers, median of {args.repeats}")
    print("| hidden | batch | length | nn.GRU step (s) | stepwise step (s) | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|")
    results = []
    for hidden in args.hidden:
        for batch in args.batch:
            for length in args.length:
                r = speedup(hidden, batch, length, args.layers, args.repeats)
                results.append(r)
                print(
                    f"| {hidden} | {batch} | {length} | {r['nn_gru_s']:.4f} | {r['stepwise_s']:.4f} | "
                    f"{r['speedup']:.2f}x |",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "layers": args.layers}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
