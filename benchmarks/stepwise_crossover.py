"""Where does TextGRU's stepwise GRU beat `nn.GRU`? A sweep, for training and for inference.

`--mode training` (default): for each hidden size, batch size and sequence length, times one training step (forward
+ backward) of a stack of TextGRU bidirectional layers on the stepwise path (textgru's own autograd) with its per-step
loops in PyTorch and in textgru's compiled recurrence (`TextGRUModel.native_training`, where it builds), and on
`nn.GRU` (the same layers and weights, interleaved repeats, median), and prints the speed-ups (`nn.GRU` time /
stepwise time; > 1 = the stepwise path is faster). This is what `TextGRUModel.stepwise_max_batch` rests on.

`--mode inference`: the same stack's forward pass as `textgru.inference.TextClassifier` runs it (under
`torch.inference_mode()`, stacked weights cached): the stepwise recurrence (nothing saved) against `nn.GRU` on the
padded batch and on packed sequences, the two paths the model otherwise takes. This is what
`TextGRUModel.stepwise_inference_max_batch` (16) rests on.

    OMP_NUM_THREADS=1 python benchmarks/stepwise_crossover.py --json benchmarks/results/stepwise_crossover.json
    OMP_NUM_THREADS=1 python benchmarks/stepwise_crossover.py --mode inference --hidden 128 256 \
        --batch 1 2 4 8 16 32 64 --length 22 276 --json benchmarks/results/stepwise_crossover_inference.json
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
from textgru.modeling_textgru import TextGRUBidirectionalLayer, _reversal_index, _stepwise_index


def _stack(hidden: int, batch: int, length: int, layers: int, seed: int):
    torch.manual_seed(seed)
    config = TextGRUConfig(hidden_size=hidden, embedding_size=hidden, num_hidden_layers=layers)
    stack = [TextGRUBidirectionalLayer(config, hidden if i == 0 else 2 * hidden) for i in range(layers)]
    lengths = torch.randint(length // 2, length + 1, (batch,))
    lengths[0] = length
    reversal = _reversal_index(lengths, length)
    return stack, torch.randn(batch, length, hidden), lengths, reversal, _stepwise_index(reversal, 2)


def _interleaved(paths: dict, repeats: int, inner: int = 1) -> dict[str, float]:
    """Median seconds per call of each `paths[name]()` over interleaved repeats of `inner` calls (after one warm-up
    call each)."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for run in paths.values():
        run()
    for _ in range(repeats):
        for name, run in paths.items():
            start = time.perf_counter()
            for _ in range(inner):
                run()
            times[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(t) for name, t in times.items()}


def speedup(hidden: int, batch: int, length: int, layers: int, repeats: int, seed: int = 0) -> dict:
    """One configuration: median training-step seconds on both paths and their ratio."""
    stack, x, lengths, reversal, index = _stack(hidden, batch, length, layers, seed)

    def step(stepwise) -> None:
        h = x
        for layer in stack:
            h = layer(h, lengths, reversal, False, stepwise)
        h.sum().backward()

    paths = {
        "stepwise": lambda: step((*index, False)),
        "nn_gru": lambda: step(None),
    }
    if _compiled_recurrence():
        paths["native"] = lambda: step((*index, True))
    t = _interleaved(paths, repeats)
    out = {
        "hidden": hidden,
        "batch": batch,
        "length": length,
        "stepwise_s": t["stepwise"],
        "nn_gru_s": t["nn_gru"],
        "speedup": t["nn_gru"] / t["stepwise"],
    }
    if "native" in t:
        out.update(
            native_s=t["native"],
            native_speedup=t["nn_gru"] / t["native"],
            native_vs_stepwise=t["stepwise"] / t["native"],
        )
    return out


def _compiled_recurrence() -> bool:
    from textgru.kernels import KernelUnavailableError, load_training

    try:
        load_training()
        return True
    except KernelUnavailableError as err:
        print(f"(the compiled recurrence is unavailable here: {err}; timing the PyTorch loop only)")
        return False


def inference_speedup(hidden: int, batch: int, length: int, layers: int, repeats: int, seed: int = 0) -> dict:
    """One configuration: median forward seconds under no_grad, stepwise vs nn.GRU padded and packed."""
    stack, x, lengths, reversal, index = _stack(hidden, batch, length, layers, seed)

    for layer in stack:  # as `textgru.inference.TextClassifier` runs it
        layer.cache_stepwise_weights = True

    def forward(packed: bool, stepwise: bool) -> None:
        with torch.inference_mode():
            h = x
            for layer in stack:
                h = layer(h, lengths, reversal, packed, index if stepwise else None)

    paths = {
        "stepwise": lambda: forward(False, True),
        "padded": lambda: forward(False, False),
        "packed": lambda: forward(True, False),
    }
    t = _interleaved(paths, repeats)
    return {
        "hidden": hidden,
        "batch": batch,
        "length": length,
        "fill": float(lengths.sum()) / (batch * length),
        "stepwise_s": t["stepwise"],
        "nn_gru_padded_s": t["padded"],
        "nn_gru_packed_s": t["packed"],
        "speedup_vs_padded": t["padded"] / t["stepwise"],
        "speedup_vs_packed": t["packed"] / t["stepwise"],
    }


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["training", "inference"], default="training")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 64, 128])
    p.add_argument("--length", type=int, nargs="+", default=[40, 128], help="longest row (rows: length/2..length)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="Also write the results here.")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, threads={threads}, {args.layers} layers, {args.mode}, median of {args.repeats}")
    if args.mode == "training":
        print(
            "| hidden | batch | length | nn.GRU step (s) | stepwise step (s) | speed-up | compiled step (s) "
            "| speed-up |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    else:
        print(
            "| hidden | batch | length | fill | nn.GRU padded (s) | nn.GRU packed (s) | stepwise (s) | vs padded |",
            end="",
        )
        print(" vs packed |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for hidden in args.hidden:
        for batch in args.batch:
            for length in args.length:
                if args.mode == "training":
                    r = speedup(hidden, batch, length, args.layers, args.repeats)
                    row = f"{r['nn_gru_s']:.4f} | {r['stepwise_s']:.4f} | {r['speedup']:.2f}x"
                    row += f" | {r['native_s']:.4f} | {r['native_speedup']:.2f}x" if "native_s" in r else " | - | -"
                else:
                    r = inference_speedup(hidden, batch, length, args.layers, args.repeats)
                    row = (
                        f"{r['fill']:.0%} | {r['nn_gru_padded_s']:.4f} | {r['nn_gru_packed_s']:.4f} | "
                        f"{r['stepwise_s']:.4f} | {r['speedup_vs_padded']:.2f}x | {r['speedup_vs_packed']:.2f}x"
                    )
                results.append(r)
                print(f"| {hidden} | {batch} | {length} | {row} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "threads": threads, "layers": args.layers, "mode": args.mode}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
