"""Speed on a GPU: TextGRU against the tutorial BiGRU and a DistilBERT-size transformer, in fp32 and bf16.

The CPU harness (`benchmarks/speed.py`) is what issue 4's targets are measured with. This script answers the GPU
user's question with the same models: the default `TextGRUConfig`, the tutorial BiGRU (`Embedding(128)` +
`nn.GRU(bidirectional, hidden 256)`, padded, max-pool) and `DistilBertForSequenceClassification(DistilBertConfig())`
with random weights. It times, interleaved over `--repeats` rounds (medians reported):

- inference throughput at batch 64 on SST-2 test sentences and on IMDB test reviews cut at `--max-tokens`, in the
  sample's order (not sorted by length), inputs already tokenised, padded and on the device (tokenisation is the
  CPU's work whatever the model), synchronised after every batch;
- batch-1 latency on the first `--n-single` (64) sentences;
- training throughput in real (non-padding) tokens per second, TextGRU on length-grouped batches of 32 against the
  tutorial BiGRU on random batches of 32 (as `speed.py` trains them), fused AdamW.

Every figure in fp32 (TF32 as torch's defaults allow: on for cuDNN, off for matmuls) and under bf16 autocast.

    python benchmarks/gpu_speed.py --repeats 7 --json benchmarks/results/gpu_speed.json  # on a CUDA machine
    python benchmarks/gpu_speed.py --device cpu --quick                              # smoke run anywhere
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import time
from pathlib import Path

for _name, _value in (("TOKENIZERS_PARALLELISM", "false"), ("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1")):
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _contenders import tutorial_bigru  # noqa: E402
from _data import default_textgru, sample, sst2_train  # noqa: E402
from _report import write_json  # noqa: E402
from _training import _pad, grouped_batches, random_batches  # noqa: E402

logger = logging.getLogger("benchmarks.gpu_speed")
REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = ("textgru", "plain-bigru", "distilbert")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="Parquet data sets.")
    p.add_argument("--device", default="cuda", help="torch device (default cuda)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 round (smoke test)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--n-texts", type=int, default=1024, help="SST-2 test sentences timed at batch 64")
    p.add_argument("--n-docs", type=int, default=256, help="IMDB test reviews timed at batch 64")
    p.add_argument("--max-tokens", type=int, default=512, help="truncate reviews at this many tokens")
    p.add_argument("--n-single", type=int, default=64, help="SST-2 sentences timed one at a time")
    p.add_argument("--train-steps", type=int, default=60, help="timed training steps per model and round")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.n_texts, args.n_docs, args.max_tokens, args.train_steps = 1, 64, 8, 64, 3
        args.n_single = 4
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: no CUDA device is visible to torch (use --device cpu for a smoke run)")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def build_models(vocab_size: int, pad_id: int, device: torch.device, seed: int, quick: bool = False) -> dict:
    """The three models (random weights, seeded), on `device`. `quick`: a one-layer, 64-wide DistilBERT (a smoke
    run checks the plumbing, not the figures)."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    from textgru import TextGRUConfig, TextGRUForSequenceClassification

    torch.manual_seed(seed)
    config = TextGRUConfig(vocab_size=vocab_size, pad_token_id=pad_id, num_labels=2)
    distilbert = {"num_labels": 2, "pad_token_id": pad_id}
    if quick:
        distilbert.update(n_layers=1, dim=64, hidden_dim=128, n_heads=2)
    return {
        "textgru": TextGRUForSequenceClassification(config).to(device),
        "plain-bigru": tutorial_bigru(vocab_size, 128, 256, 1, pad_id).to(device),
        "distilbert": DistilBertForSequenceClassification(DistilBertConfig(**distilbert)).to(device),
    }


def _logits(name: str, model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if name == "plain-bigru":
        return model(ids)
    return model(input_ids=ids, attention_mask=mask).logits


def batches_on(token_ids: list[list[int]], batch_size: int, pad_id: int, device: torch.device) -> list:
    """Padded (ids, mask) batches in the given order, already on `device`."""
    out = []
    for start in range(0, len(token_ids), batch_size):
        ids, mask = _pad(token_ids[start : start + batch_size], pad_id)
        out.append((ids.to(device), mask.to(device)))
    return out


@torch.inference_mode()
def time_inference(name: str, model, batches: list, device: torch.device, precision: str) -> float:
    """Seconds for one pass over `batches` (one warm-up pass first, not timed)."""
    model.eval()
    with _autocast(device, precision):
        for ids, mask in batches[:2]:
            _logits(name, model, ids, mask)
        _sync(device)
        start = time.perf_counter()
        for ids, mask in batches:
            _logits(name, model, ids, mask)
        _sync(device)
    return time.perf_counter() - start


def train_round(name: str, model, optimizer, batches, token_ids, labels, pad_id, device, precision) -> dict:
    """One warm-up step, then the timed steps; real and padded tokens per second."""
    model.train()

    def step(batch) -> tuple[int, int]:
        ids, mask = _pad([token_ids[i] for i in batch], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        target = torch.tensor([labels[i] for i in batch], device=device)
        with _autocast(device, precision):
            loss = torch.nn.functional.cross_entropy(_logits(name, model, ids, mask).float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(mask.sum()), ids.numel()

    step(batches[0])
    _sync(device)
    start = time.perf_counter()
    counts = [step(b) for b in batches[1:]]
    _sync(device)
    seconds = time.perf_counter() - start
    real, padded = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return {"real_tokens_per_s": real / seconds, "padded_tokens_per_s": padded / seconds, "padding": 1 - real / padded}


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    args = parse_args(argv)
    device = torch.device(args.device)
    corpus, labels, source = sst2_train(args.data_dir, args.seed)
    _, tokenizer = default_textgru(corpus, args.quick)
    pad_id = tokenizer.pad_token_id
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(args.max_tokens)
    encode = lambda texts: [e.ids for e in backend.encode_batch(texts)]  # noqa: E731
    test = args.data_dir / "sst2" / "test.parquet"
    imdb = args.data_dir / "imdb" / "test.parquet"
    if test.is_file() and imdb.is_file():
        import pandas as pd

        sentences = sample(pd.read_parquet(test, columns=["text"]).text.tolist(), args.n_texts, args.seed)
        reviews = sample(pd.read_parquet(imdb, columns=["text"]).text.tolist(), args.n_docs, args.seed)
    else:
        logger.warning("No SST-2/IMDB test data at %s: timing training sentences only", args.data_dir)
        sentences, reviews = corpus[: args.n_texts], [" ".join(corpus[i : i + 20]) for i in range(args.n_docs)]
    inputs = {"sst2": encode(sentences), "imdb": encode(reviews)}
    train_ids = encode(corpus)
    models = build_models(len(tokenizer), pad_id, device, args.seed, args.quick)
    batches = {data: batches_on(ids, 64, pad_id, device) for data, ids in inputs.items()}
    singles = batches_on(inputs["sst2"][: args.n_single], 1, pad_id, device)

    inference = {(m, d, p): [] for m in MODELS for d in (*inputs, "sst2-batch1") for p in ("fp32", "bf16")}
    trained = ("textgru", "plain-bigru")
    training = {(m, p): [] for m in trained for p in ("fp32", "bf16")}
    fused = device.type == "cuda"
    optimizers = {m: torch.optim.AdamW(models[m].parameters(), lr=1e-3, fused=fused) for m in trained}
    lengths = [max(len(t), 1) for t in train_ids]
    for round_ in range(args.repeats):
        order = MODELS[round_ % 3 :] + MODELS[: round_ % 3]
        for precision in ("fp32", "bf16"):
            for name in order:
                for data in inputs:
                    seconds = time_inference(name, models[name], batches[data], device, precision)
                    inference[(name, data, precision)].append(len(inputs[data]) / seconds)
                seconds = time_inference(name, models[name], singles, device, precision)
                inference[(name, "sst2-batch1", precision)].append(1000 * seconds / len(singles))
            for name in [n for n in order if n in trained]:
                seed = args.seed + round_
                drawn = (  # as speed.py trains them: TextGRU length-grouped, the tutorial model at random
                    grouped_batches(lengths, 32, args.train_steps + 1, seed)
                    if name == "textgru"
                    else random_batches(len(train_ids), 32, args.train_steps + 1, seed)
                )
                run = (models[name], optimizers[name], drawn, train_ids, labels, pad_id, device, precision)
                training[(name, precision)].append(train_round(name, *run))
        logger.info("round %d/%d done", round_ + 1, args.repeats)

    results = {"inference": {}, "training": {}}
    for (name, data, precision), values in inference.items():
        key = "ms_per_text" if data.endswith("batch1") else "texts_per_s"
        results["inference"].setdefault(name, {}).setdefault(data, {})[precision] = {
            key: statistics.median(values),
            "rounds": values,
        }
    for (name, precision), rounds in training.items():
        results["training"].setdefault(name, {})[precision] = {
            k: statistics.median(r[k] for r in rounds) for k in rounds[0]
        } | {"rounds": rounds}
    for precision in ("fp32", "bf16"):
        ratios = [
            t["real_tokens_per_s"] / p["real_tokens_per_s"]
            for t, p in zip(training[("textgru", precision)], training[("plain-bigru", precision)])
        ]
        results["training"][f"textgru_vs_plain_{precision}"] = statistics.median(ratios)
    results["environment"] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "threads": torch.get_num_threads(),
        "data": source,
        "tokens_mean": {d: float(np.mean([len(t) for t in ids])) for d, ids in inputs.items()},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    print(report(results))
    if args.json:
        write_json(args.json, results)
    return results


def report(results: dict) -> str:
    """The figures as a markdown table (throughput, latency, training) with the ratios that matter."""
    inf = results["inference"]
    lines = [
        "| model | precision | SST-2 batch 64 (sentences/s) | IMDB batch 64 (reviews/s) | SST-2 batch 1 (ms) |",
        "|---|---|---:|---:|---:|",
    ]
    for name in MODELS:
        for precision in ("fp32", "bf16"):
            cells = [
                f"{inf[name]['sst2'][precision]['texts_per_s']:,.0f}",
                f"{inf[name]['imdb'][precision]['texts_per_s']:,.0f}",
                f"{inf[name]['sst2-batch1'][precision]['ms_per_text']:.2f}",
            ]
            lines.append(f"| {name} | {precision} | " + " | ".join(cells) + " |")
    train = results["training"]
    lines += ["", "| training, SST-2, batch 32 | precision | real tokens/s | padding |", "|---|---|---:|---:|"]
    for name in ("textgru", "plain-bigru"):
        for precision in ("fp32", "bf16"):
            r = train[name][precision]
            lines.append(f"| {name} | {precision} | {r['real_tokens_per_s']:,.0f} | {100 * r['padding']:.0f}% |")
    lines.append(
        f"\ntextgru / plain BiGRU, real tokens/s: {train['textgru_vs_plain_fp32']:.2f}x (fp32), "
        f"{train['textgru_vs_plain_bf16']:.2f}x (bf16)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
