"""How should a bidirectional GRU stack handle padding? Exactness and speed of the alternatives.

Compares, at equal width and depth, on the same random batch with mixed lengths:
  padded-bidir   one nn.GRU(bidirectional=True) over right-padded input (fast, but WRONG: the backward
                 direction reads the padding before the real tokens)
  packed-bidir   nn.GRU(bidirectional=True) over pack_padded_sequence (exact; several times slower to train)
  textgru        textgru's layer on nn.GRU: a forward GRU on right-padded input and a backward GRU that reads
                 each sequence reversed within its own length (exact; the padded kernel in both directions);
                 under no_grad textgru packs (see `packed_inference`)
  textgru-stepwise  the same layer as textgru trains it on the CPU: both directions through its own GRU
                 autograd (`_StepwiseGRU`, `TextGRUModel.stepwise_training`); same values

Run:  OMP_NUM_THREADS=1 python benchmarks/bench_rnn_paths.py [--hidden 256 --layers 2 --batch 64 --length 128]
Prints a markdown table (median seconds over --repeats) and the max deviation of each path from an unpadded
per-row reference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from textgru.modeling_textgru import TextGRUBidirectionalLayer, _reversal_index, _stepwise_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds  # noqa: E402  (benchmarks/ is on the path from here on)


class Stack(nn.Module):
    """`layers` bidirectional layers of one of the three kinds, sharing nothing but the interface."""

    def __init__(self, kind: str, size: int, hidden: int, layers: int):
        super().__init__()
        self.kind = kind
        if kind.startswith("textgru"):
            from textgru import TextGRUConfig

            config = TextGRUConfig(hidden_size=hidden, embedding_size=size, num_hidden_layers=layers)
            self.layers = nn.ModuleList(
                TextGRUBidirectionalLayer(config, size if i == 0 else 2 * hidden) for i in range(layers)
            )
        else:
            self.gru = nn.GRU(size, hidden, num_layers=layers, bidirectional=True, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, packed: bool = False) -> torch.Tensor:
        if self.kind == "padded-bidir":
            return self.gru(x)[0]
        if self.kind == "packed-bidir":
            seq = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            return nn.utils.rnn.pad_packed_sequence(self.gru(seq)[0], batch_first=True, total_length=x.size(1))[0]
        reversal = _reversal_index(lengths, x.size(1))
        on = self.kind == "textgru-stepwise" and torch.is_grad_enabled()
        stepwise = _stepwise_index(reversal, 2) if on else None
        for layer in self.layers:
            x = layer(x, lengths, reversal, packed, stepwise)
        return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--min-length", type=int, default=None, help="shortest row (default: length // 2)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    size, hidden = args.hidden, args.hidden
    lengths = torch.randint(args.min_length or args.length // 2, args.length + 1, (args.batch,))
    lengths[0] = args.length
    x = torch.randn(args.batch, args.length, size)
    mask = (torch.arange(args.length)[None] < lengths[:, None]).unsqueeze(-1).float()
    x = x * mask
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, hidden={hidden} per direction, "
        f"layers={args.layers}, batch={args.batch}, lengths {int(lengths.min())}..{args.length} "
        f"({100 * (1 - mask.mean().item()):.0f}% padding), median of {args.repeats}\n"
    )
    rows = []
    for kind in ("padded-bidir", "packed-bidir", "textgru", "textgru-stepwise"):
        stack = Stack(kind, size, hidden, args.layers)
        # exactness: each row alone, unpadded, is the reference (with gradients on for the stepwise training path)
        with torch.set_grad_enabled(kind == "textgru-stepwise"):
            batched = stack(x, lengths).detach()
            dev = 0.0
            for i in range(0, args.batch, max(1, args.batch // 8)):
                n = int(lengths[i])
                alone = stack(x[i : i + 1, :n], lengths[i : i + 1]).detach()
                dev = max(dev, (alone[0] - batched[i, :n]).abs().max().item())

        def train_step(stack=stack):
            stack.zero_grad(set_to_none=True)
            out = stack(x, lengths)
            (out * mask).sum().backward()

        def infer(stack=stack, packed=False):
            with torch.no_grad():
                stack(x, lengths, packed)

        train = median_seconds(train_step, args.repeats)
        inference = median_seconds(infer, args.repeats)
        rows.append((kind, dev, train, inference))
        if kind == "textgru":
            packed = median_seconds(lambda stack=stack: infer(stack, True), args.repeats)
            rows.append(("textgru (packed, no_grad)", dev, float("nan"), packed))

    print("| path | max deviation from unpadded | train fwd+bwd (s) | inference (s) |")
    print("|---|---|---|---|")
    for kind, dev, train, inference in rows:
        train_s = "–" if train != train else f"{train:.3f}"
        print(f"| {kind} | {dev:.1e} | {train_s} | {inference:.3f} |")


if __name__ == "__main__":
    main()
