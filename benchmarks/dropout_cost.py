"""What TextGRU's dropout mask (`TextGRUDropout`) saves against `nn.Dropout` on the CPU.

`nn.Dropout` draws its mask with `bernoulli_`, one random number per element; `TextGRUDropout` cuts four 16-bit
lanes out of every 64-bit draw and keeps an element where its lane clears a threshold (same keep probability to
1/65536). This script measures, for the default `TextGRUConfig` (dropout 0.1 on embeddings, layer outputs, head):

1. one dropout layer, forward + backward, on a (32, 21, width) activation (a batch of 32 SST-2 sentences of
   median length) for width 128 (embeddings) and 256 (layer outputs): microseconds per call, both masks;
2. whole training steps (forward, loss, backward, fused AdamW) on length-grouped batches of 32 SST-2 train
   sentences (`_training.grouped_batches`, drawn from across an epoch), the same model switching between the two
   masks, interleaved repeats: real tokens/s with each and the median of the per-repeat ratios.

Usage (1 thread, as speed.py):

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/dropout_cost.py [--json benchmarks/results/dropout_cost.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _training  # noqa: E402  (benchmarks/ is on the path from here on)
from _data import default_textgru, sst2_train  # noqa: E402
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data", help="Parquet data sets.")
    p.add_argument("--repeats", type=int, default=12, help="Interleaved repeats of the training steps (default 12).")
    p.add_argument("--steps", type=int, default=30, help="Timed training steps per mask and repeat (default 30).")
    p.add_argument("--quick", action="store_true", help="Tiny run (smoke test): 2 repeats of 2 steps, 20 calls.")
    p.add_argument("--json", type=Path, help="Also write the figures here.")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def layer_cost_us(p: float, width: int, calls: int) -> dict:
    """Forward + backward of one dropout layer on a (32, 21, width) activation, microseconds per call."""
    from textgru.modeling_textgru import TextGRUDropout

    x = torch.randn(32, 21, width, requires_grad=True)
    out = {}
    for name, layer in (("nn.Dropout", nn.Dropout(p)), ("TextGRUDropout", TextGRUDropout(p))):
        layer.train()
        out[name] = median_seconds(lambda layer=layer: layer(x).sum().backward(), calls, warmup=5) * 1e6
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    from textgru.modeling_textgru import TextGRUDropout

    torch.set_num_threads(1)
    repeats, steps, calls = (2, 2, 20) if args.quick else (args.repeats, args.steps, 300)
    texts, labels, source = sst2_train(args.data_dir, args.seed)
    torch.manual_seed(args.seed)
    model, tokenizer = default_textgru(texts, args.quick)
    config = model.config
    widths = (config.embedding_size, config.output_size)  # the embedding dropout's, the layers' (and their outputs)
    layers = {width: layer_cost_us(config.hidden_dropout, width, calls) for width in widths}
    token_ids = [e.ids for e in tokenizer.backend_tokenizer.encode_batch(texts)]
    lengths = [max(len(t), 1) for t in token_ids]
    optimizer = _training.make_optimizer(model)
    masks = {"nn.Dropout": nn.Dropout.forward, "TextGRUDropout": TextGRUDropout.forward}
    tokens_per_s: dict[str, list[float]] = {name: [] for name in masks}
    try:
        for repeat in range(repeats):
            batches = _training.grouped_batches(lengths, 32, steps + 1, args.seed + repeat)
            for name in list(masks)[:: 1 if repeat % 2 == 0 else -1]:  # alternate which mask runs first
                TextGRUDropout.forward = masks[name]
                run = _training.train_steps(model, optimizer, batches, token_ids, labels, config.pad_token_id, True)
                tokens_per_s[name].append(run["real_tokens_per_s"])
    finally:
        TextGRUDropout.forward = masks["TextGRUDropout"]
    ratios = [new / old for new, old in zip(tokens_per_s["TextGRUDropout"], tokens_per_s["nn.Dropout"])]
    report = {
        "data": source,
        "threads": torch.get_num_threads(),
        "layer_fwd_bwd_us": {str(width): costs for width, costs in layers.items()},
        "training": {
            "repeats": repeats,
            "steps": steps,
            "real_tokens_per_s": {name: statistics.median(v) for name, v in tokens_per_s.items()},
            "ratio_repeats": ratios,
            "ratio_median": statistics.median(ratios),
        },
    }
    for width, costs in layers.items():
        print(
            f"dropout on (32, 21, {width}), forward + backward: nn.Dropout {costs['nn.Dropout']:.0f} us, "
            f"TextGRUDropout {costs['TextGRUDropout']:.0f} us"
        )
    print(
        f"training steps on {source} ({repeats} repeats x {steps} steps): real tokens/s "
        + ", ".join(f"{name} {v:,.0f}" for name, v in report["training"]["real_tokens_per_s"].items())
        + f"; TextGRUDropout / nn.Dropout median {report['training']['ratio_median']:.3f}x "
        f"(repeats {min(ratios):.2f}-{max(ratios):.2f})"
    )
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
