"""Training throughput for benchmarks/speed.py: TextGRU vs a plain BiGRU of equal width and depth.

Each model is trained the way it would be in practice, for the same number of steps on the same examples:

- TextGRU: length-grouped batches (transformers' `LengthGroupedSampler`, what `Trainer` uses with
  `train_sampling_strategy="group_by_length"`), drawn at random from across an epoch (`grouped_batches`), padded
  to the batch's longest text; the model trims the rest.
- plain BiGRU: uniformly random batches padded to the batch's longest text, one `nn.GRU(num_layers=L,
  bidirectional=True)` straight over the padding, max-pool over time including padding.
- TextGRU on `nn.GRU` (`textgru-nn-gru`): the same TextGRU and batches with `stepwise_training = False`, so the
  gain of textgru's own GRU autograd (`_StepwiseGRU`) is measured in the same run.

Both: forward + cross-entropy + backward + AdamW step (the fused CPU kernel, `Trainer`'s default optimiser with
torch >= 2.8), dropout on, one warm-up step not timed. Throughput is in real (non-padding) tokens per second; the
padded rate and the padding fraction are reported beside it.

Repeats are interleaved: each repeat trains every model for `steps` steps on fresh batches (seed + repeat), the
order of the models rotating by one per repeat, so a drift in machine load falls on both alike. Per model the
figures are medians over repeats; the headline ratio is the median of the per-repeat ratios.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import nn


def grouped_batches(lengths: list[int], batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of indices drawn at random (seeded) from epochs of transformers' LengthGroupedSampler (the
    batches `Trainer` builds with `train_sampling_strategy="group_by_length"`), full batches only.

    Drawn from the whole epoch, not its first `steps` batches: the sampler sorts each megabatch (50 batches) longest
    first and puts the megabatch holding the longest text first, so an epoch's first batches are its longest and
    would flatter throughput (SST-2 train: 37 tokens per sentence in the first batches, 21-23 drawn across it).
    """
    from transformers.trainer_pt_utils import LengthGroupedSampler

    sampler = LengthGroupedSampler(batch_size, lengths=lengths, generator=torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    batches: list[list[int]] = []
    while len(batches) < steps:
        order = list(sampler)  # a new epoch each time: the sampler's generator moves on
        epoch = [order[i : i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)]
        if not epoch:
            raise ValueError(f"grouped_batches: {len(order)} examples make no full batch of {batch_size}.")
        batches += [epoch[i] for i in rng.permutation(len(epoch))[: steps - len(batches)]]
    return batches


def random_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` uniformly random batches of indices (a shuffled epoch, repeated if needed)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += rng.permutation(n).tolist()
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def _pad(token_ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(max(len(t) for t in token_ids), 1)
    ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, t in enumerate(token_ids):
        ids[row, : len(t)] = torch.tensor(t, dtype=torch.long)
        mask[row, : len(t)] = 1
    return ids, mask


def gru_flops_per_token(input_size: int, hidden_size: int) -> int:
    """Multiply-add FLOPs of one GRU direction per time step: 3 gates, input and recurrent matmuls."""
    return 2 * 3 * hidden_size * (input_size + hidden_size)


def textgru_forward_flops_per_token(config) -> int:
    """Forward FLOPs per (padded) token of TextGRU: GRUs, the skip projection, attention pooling. Norms, gates'
    elementwise work and the classifier (per text, not per token) are left out."""
    directions = 2 if config.bidirectional else 1
    width = config.output_size
    flops = 0
    for layer in range(config.num_hidden_layers):
        input_size = config.embedding_size if layer == 0 else width
        flops += directions * gru_flops_per_token(input_size, config.hidden_size)
        if input_size != width and config.residual != "none":
            flops += 2 * input_size * width  # projection on the skip path
        if config.residual == "gated":
            flops += 2 * 2 * width * width
    if config.pooling == "attention":
        flops += (
            2 * width * config.attention_hidden_size + 2 * config.attention_hidden_size * config.num_attention_heads
        )
    return flops


def plain_forward_flops_per_token(embedding_dim: int, hidden_size: int, num_layers: int) -> int:
    """Forward FLOPs per (padded) token of the plain BiGRU."""
    flops = 0
    for layer in range(num_layers):
        flops += 2 * gru_flops_per_token(embedding_dim if layer == 0 else 2 * hidden_size, hidden_size)
    return flops


def matmul_peak_gflops(n: int = 2048, threads: int = 1, repeats: int = 5) -> float:
    """Best achieved fp32 GFLOP/s of an n x n matmul on `threads` threads (the CPU's practical peak)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    finally:
        torch.set_num_threads(previous)
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as `Trainer` builds it by default on torch >= 2.8 (`adamw_torch_fused`), plain AdamW before."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a torch without the fused CPU kernel
        return torch.optim.AdamW(model.parameters(), lr=1e-3)


def train_steps(model: nn.Module, optimizer, batches, token_ids, labels, pad_id: int, use_mask: bool) -> dict:
    """Run `batches[0]` as an untimed warm-up step, then time the others; returns timings and token counts."""
    model.train()

    def step(batch) -> tuple[float, int, int]:
        ids, mask = _pad([token_ids[i] for i in batch], pad_id)
        target = torch.tensor([labels[i] for i in batch])
        start = time.perf_counter()
        if use_mask:
            loss = model(input_ids=ids, attention_mask=mask, labels=target).loss
        else:
            loss = nn.functional.cross_entropy(model(ids), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start, int(mask.sum()), ids.numel()

    step(batches[0])  # warm-up, not timed: allocator, lazily built state
    times, real, padded = zip(*(step(b) for b in batches[1:]))
    total = sum(times)
    return {
        "steps": len(batches) - 1,
        "batch_size": len(batches[0]),
        "step_seconds_median": statistics.median(times),
        "seconds_total": total,
        "real_tokens": sum(real),
        "padded_tokens": sum(padded),
        "real_tokens_per_s": sum(real) / total,
        "padded_tokens_per_s": sum(padded) / total,
        "padding_fraction": 1 - sum(real) / sum(padded),
    }


def _median_over_repeats(per_repeat: list[dict]) -> dict:
    """One model's figures: the median of every numeric figure over repeats, plus the per-repeat values."""
    keys = [k for k, v in per_repeat[0].items() if isinstance(v, (int, float))]
    out = {k: statistics.median(r[k] for r in per_repeat) for k in keys}
    out["repeats"] = per_repeat
    return out


def training_comparison(
    token_ids, labels, pad_id: int, vocab_size: int, steps: int, batch_size: int, seed: int, repeats: int = 3
):
    """Train TextGRU (default config; also on `nn.GRU`) and a plain BiGRU of equal width and depth, `repeats` x
    `steps` steps each.

    Returns a dict with one entry per model (median timings, tokens/s, achieved GFLOP/s, per-repeat values), the
    per-repeat and median textgru / plain and stepwise / nn.GRU ratios, and the configs.
    """
    from _contenders import tutorial_bigru

    from textgru import TextGRUConfig, TextGRUForSequenceClassification

    torch.manual_seed(seed)
    config = TextGRUConfig(vocab_size=vocab_size, pad_token_id=pad_id, num_labels=2)
    plain_hparams = {
        "embedding_dim": config.embedding_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_hidden_layers,
    }
    lengths = [max(len(t), 1) for t in token_ids]
    textgru_flops = 3 * textgru_forward_flops_per_token(config)
    torch_gru = TextGRUForSequenceClassification(config)  # the same model on torch's nn.GRU autograd
    torch_gru.textgru.stepwise_training = False
    models = {
        "textgru": (TextGRUForSequenceClassification(config), True, textgru_flops),
        "textgru-nn-gru": (torch_gru, True, textgru_flops),
        "plain-bigru": (
            tutorial_bigru(vocab_size=vocab_size, pad_id=pad_id, **plain_hparams),
            False,
            3 * plain_forward_flops_per_token(**plain_hparams),
        ),
    }
    optimizers = {name: make_optimizer(model) for name, (model, _, _) in models.items()}
    samplers = {
        "textgru": lambda s: grouped_batches(lengths, batch_size, steps + 1, s),
        "textgru-nn-gru": lambda s: grouped_batches(lengths, batch_size, steps + 1, s),
        "plain-bigru": lambda s: random_batches(len(token_ids), batch_size, steps + 1, s),
    }
    per_repeat: dict[str, list[dict]] = {name: [] for name in models}
    names = list(models)
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            model, use_mask, _ = models[name]
            batches = samplers[name](seed + repeat)
            per_repeat[name].append(train_steps(model, optimizers[name], batches, token_ids, labels, pad_id, use_mask))
    results = {}
    for name, (_, _, train_flops_per_token) in models.items():
        result = _median_over_repeats(per_repeat[name])
        # backward ~ 2x forward, so a training step ~ 3x the forward FLOPs. TextGRU trims each batch to its longest
        # text, which is what the padded count already is, so executed FLOPs = padded tokens x FLOPs per token.
        result["train_flops_per_token"] = train_flops_per_token
        result["gflops_per_s_executed"] = result["padded_tokens_per_s"] * train_flops_per_token / 1e9
        result["gflops_per_s_useful"] = result["real_tokens_per_s"] * train_flops_per_token / 1e9
        results[name] = result
    ratios = [
        t["real_tokens_per_s"] / p["real_tokens_per_s"]
        for t, p in zip(per_repeat["textgru"], per_repeat["plain-bigru"])
    ]
    results["textgru_vs_plain_real_tokens_per_s_repeats"] = ratios
    results["textgru_vs_plain_real_tokens_per_s"] = statistics.median(ratios)
    # what textgru's stepwise GRU autograd buys over nn.GRU's, same model and batches
    gains = [
        t["real_tokens_per_s"] / n["real_tokens_per_s"]
        for t, n in zip(per_repeat["textgru"], per_repeat["textgru-nn-gru"])
    ]
    results["stepwise_vs_nn_gru_real_tokens_per_s_repeats"] = gains
    results["stepwise_vs_nn_gru_real_tokens_per_s"] = statistics.median(gains)
    results["optimizer"] = type(optimizers["textgru"]).__name__ + (
        " (fused)" if optimizers["textgru"].defaults.get("fused") else ""
    )
    results["repeats"] = repeats
    results["configs"] = {"textgru": config.to_diff_dict(), "plain-bigru": plain_hparams}
    return results
