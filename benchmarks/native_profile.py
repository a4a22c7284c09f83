"""Where the native int8 path's time goes, and how each kernel build compares with eager PyTorch.

For the default `TextGRUConfig` (random weights: speed only) on real SST-2 test sentences in length-sorted batches
of 64 (what `predict(texts, batch_size=64)` runs), forward passes only (tokenisation is timed on its own):

1. eager PyTorch against `textgru.native.NativeInt8Model` built with each kernel variant (`best`: AVX512-VNNI
   where the CPU has it; `avx2`; `generic`, plain C), interleaved repeats, medians;
2. the `best` build's time split by stage: layer 0 (its fp32 table and recurrences), then per later layer the
   input products (norm + quantisation, int8 product) and the recurrences, then pooling and the classifier;
3. the int8 product's throughput (GMAC/s) at the two shapes that dominate: a recurrent step (64 rows x hidden ->
   3 x hidden) and a layer's input products (all tokens x 2 x hidden -> 2 x 3 x hidden).

Usage (1 thread, as speed.py; writes nothing unless --json is given):

    export OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
    python benchmarks/native_profile.py [--json benchmarks/results/native_profile.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _data import default_textgru_on_sst2  # noqa: E402  (benchmarks/ is on the path from here on)
from _report import write_json  # noqa: E402
from _timing import median_seconds  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--n-texts", type=int, default=512, help="SST-2 test sentences (seeded sample)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7, help="interleaved timed passes; medians reported")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--quick", action="store_true", help="small slice, 1 repeat (smoke test)")
    return p.parse_args(argv)


def stage_times(native, batches, repeats: int) -> dict:
    """Milliseconds per pass over `batches` for each stage of `NativeInt8Model.__call__` (same inputs, same order)."""
    packed = [native.pack(ids, mask) for ids, mask in batches]
    # the inputs of every stage, computed once
    inputs = []
    for p in packed:
        xs = [native._run_layer(native.layers[0], None, p.sorted_offsets, p.sorted_lengths, p.tokens)]
        for layer in native.layers[1:]:
            xs.append(native._run_layer(layer, xs[-1], p.sorted_offsets, p.sorted_lengths))
        inputs.append(xs)

    def timed(fn) -> float:
        return 1e3 * median_seconds(lambda: [fn(p, xs) for p, xs in zip(packed, inputs)], repeats)

    stages = {
        "layer 0 (table + recurrences)": timed(
            lambda p, xs: native._run_layer(native.layers[0], None, p.sorted_offsets, p.sorted_lengths, p.tokens)
        )
    }
    for i, layer in enumerate(native.layers[1:], start=1):
        whole = timed(
            lambda p, xs, layer=layer, i=i: native._run_layer(layer, xs[i - 1], p.sorted_offsets, p.sorted_lengths)
        )
        products = timed(lambda p, xs, layer=layer, i=i: layer["ih"](*native._quantize(xs[i - 1], layer["norm"])))
        stages[f"layer {i} input products (norm, quantise, int8 product)"] = products
        stages[f"layer {i} recurrences (and residual)"] = whole - products
    stages["final norm, pooling, classifier"] = timed(
        lambda p, xs: native._pool(xs[-1], p.lengths, p.offsets) @ native.classifier[0].T + native.classifier[1]
    )
    return stages


def product_gmacs(native, rows: int, k: int, repeats: int) -> float:
    """GMAC/s of the int8 product `rows x k -> 3 x hidden x directions` through the first layer's recurrent or a later
    layer's input weights."""
    layer = native.layers[1] if k != native.hidden else native.layers[0]
    linear = layer["ih"] if k != native.hidden else layer["hh"][0]
    q = np.random.default_rng(0).integers(0, 256, (rows, linear.kp)).astype(np.uint8)
    scale = np.ones(rows, np.float32)

    def twenty():  # each output freed before the next call, as in a forward pass (20 live ones would page-fault)
        for _ in range(20):
            linear(q, scale)

    seconds = median_seconds(twenty, repeats) / 20
    return rows * k * linear.np / seconds / 1e9


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.n_texts, args.repeats = 16, 1
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from textgru import kernels
    from textgru.inference import _encode as encode
    from textgru.inference import _pad as pad_encodings
    from textgru.inference import fast_backend
    from textgru.native import NativeInt8Model

    model, tokenizer, timed_texts, source = default_textgru_on_sst2(args.data_dir, args.n_texts, args.seed, args.quick)
    backend = fast_backend(tokenizer)
    encodings = sorted(encode(backend, timed_texts), key=lambda e: len(e.ids))  # as predict() batches them
    batches = [
        pad_encodings(encodings[i : i + args.batch_size], tokenizer.pad_token_id)
        for i in range(0, len(encodings), args.batch_size)
    ]
    torch_batches = [(torch.from_numpy(i), torch.from_numpy(m)) for i, m in batches]
    natives = {v: NativeInt8Model.from_model(model, kernel=v) for v in kernels.VARIANTS}

    def eager_pass():
        with torch.inference_mode():
            for ids, mask in torch_batches:
                model(input_ids=ids, attention_mask=mask)

    runs = {name: [] for name in ["eager", *natives]}
    for _ in range(args.repeats):  # interleaved, so drift of a shared machine hits every build alike
        runs["eager"].append(median_seconds(eager_pass, 1))
        for name, native in natives.items():
            runs[name].append(median_seconds(lambda native=native: [native(i, m) for i, m in batches], 1))
    ms = {name: 1e3 * float(np.median(times)) for name, times in runs.items()}
    best = natives["best"]
    tokens = sum(int(m.sum()) for _, m in batches)
    report = {
        "source": source,
        "texts": len(timed_texts),
        "batch_size": args.batch_size,
        "real_tokens": tokens,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "kernel_isa": {v: kernels.ISA_NAMES[n.lib.textgru_kernel_isa()] for v, n in natives.items()},
        "tokenize_ms": 1e3 * median_seconds(lambda: encode(backend, timed_texts), args.repeats),
        "forward_ms": ms,
        "speedup_vs_eager": {name: ms["eager"] / value for name, value in ms.items()},
        "stages_ms": stage_times(best, batches, args.repeats),
        "product_gmacs": {
            f"recurrent step ({args.batch_size} x {best.hidden} -> {3 * best.hidden})": product_gmacs(
                best, args.batch_size, best.hidden, args.repeats
            ),
            f"input products ({tokens // len(batches)} x {best.width} -> {best.layers[-1]['ih'].np})": product_gmacs(
                best, tokens // len(batches), best.width, args.repeats
            )
            if len(best.layers) > 1
            else None,
        },
    }
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(r: dict) -> None:
    print(f"{r['texts']} SST-2 test sentences ({r['source']}), {r['real_tokens']} tokens, length-sorted batches of "
          f"{r['batch_size']}, {r['threads']} thread(s), medians of {r['repeats']} interleaved passes")  # fmt: skip
    print(f"tokenisation (not in the forward figures): {r['tokenize_ms']:.1f} ms a pass")
    for name, value in r["forward_ms"].items():
        isa = f" ({r['kernel_isa'][name]})" if name in r["kernel_isa"] else ""
        print(f"  forward {name}{isa}: {value:.1f} ms a pass, {r['speedup_vs_eager'][name]:.2f}x eager")
    print("stages of the best build (ms a pass):")
    for name, value in r["stages_ms"].items():
        print(f"  {name}: {value:.2f}")
    for name, value in r["product_gmacs"].items():
        if value is not None:
            print(f"int8 product, {name}: {value:.0f} GMAC/s")


if __name__ == "__main__":
    main()
