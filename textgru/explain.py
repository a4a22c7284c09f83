"""Explain TextGRU predictions: how much each token pushed the model towards a label.

`explain(model, tokenizer, texts, method=...)` returns one `Explanation` per text. Methods: `"integrated_gradients"`
(Sundararajan et al. 2017, on the embeddings), `"occlusion"` (drop one token at a time) and `"attention"` (the
attention-pooling weights). The explained score `f` is the target's log-odds `log(p / (1 - p))` for classification
(a multi-label model's logit) and the output for regression. What each method means and when to trust it:
`docs/explain.md`.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby

import torch

from .tokenization import check_tokenizer_matches_model

logger = logging.getLogger(__name__)

METHODS = ("integrated_gradients", "occlusion", "attention")
BASELINES = ("pad", "zeros")
_TEXTS_PER_BATCH = 16  # texts tokenised and padded together (results do not depend on it)
_MAX_ROWS = 256  # rows per forward pass (IG path points x texts, or occlusion variants)
_MIX = 0.9  # IG: share of the path's steps placed by the change of f rather than evenly
_NO_LIMIT = 1_000_000  # transformers' "no limit" model_max_length is ~1e30


@dataclass
class Explanation:
    """Token attributions for one text.

    Attributes:
        text: The original text.
        tokens: One readable string per token: the slice of `text` it covers (the raw piece where it covers none).
        offsets: `(start, end)` character offsets of each token in `text`.
        scores: One score per token; positive scores support `label` (`"attention"`: weights summing to 1).
        label: Name of the explained label (the target; by default the prediction), from `config.id2label`.
        probability: The model's probability of `label` (softmax or sigmoid); `None` for regression.
        method: The method that produced the scores.
        target: Index of the explained output.
        output: The explained score `f(x)`: the target's log-odds (classification) or value (regression).
        delta: Integrated gradients only: the completeness gap `|sum(scores) - (f(x) - f(baseline))|`.
    """

    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]
    scores: list[float]
    label: str
    probability: float | None
    method: str
    target: int
    output: float
    delta: float | None = None

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The `k` most influential tokens (largest `|score|`) as `(token, score)`, most influential first.

        Args:
            k: How many tokens to return (fewer when the text is shorter).
        """
        return sorted(zip(self.tokens, self.scores), key=lambda pair: abs(pair[1]), reverse=True)[:k]

    def to_html(self) -> str:
        """The text as HTML, tokens highlighted green (supporting the label) or red (against), escaped.

        Intensity is `|score|` relative to the largest; hovering shows the score. Safe to embed, e.g. with
        `IPython.display.HTML(explanation.to_html())`.
        """
        peak = max((abs(s) for s in self.scores), default=0.0) or 1.0
        probability = "" if self.probability is None else f" ({self.probability:.1%})"
        parts = [
            '<div class="textgru-explanation" style="line-height:1.8">',
            f"<strong>{html.escape(self.label)}</strong>{probability} &middot; {html.escape(self.method)}<br>",
        ]
        cursor = 0
        # the byte pieces of one character share its span: one highlight with their summed score
        for (start, end), group in groupby(zip(self.offsets, self.scores), key=lambda pair: pair[0]):
            if end <= start or start < cursor:  # tokens that cover no text, overlapping offsets (rare)
                continue
            score = sum(s for _, s in group)
            rgb = "0,160,0" if score >= 0 else "220,0,0"
            parts.append(
                f'{html.escape(self.text[cursor:start])}<span style="background-color:rgba({rgb},'
                f'{abs(score) / peak:.2f})" title="{score:+.4g}">{html.escape(self.text[start:end])}</span>'
            )
            cursor = end
        return "".join(parts) + html.escape(self.text[cursor:]) + "</div>"


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Switch dropout off for the duration, then restore every submodule's own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _problem_type(config) -> str:
    if config.problem_type is not None:
        return config.problem_type
    return "regression" if config.num_labels == 1 else "single_label_classification"


def _score(logits: torch.Tensor, problem: str, target: torch.Tensor) -> torch.Tensor:
    """The explained score per row. Single-label log-odds `logit_t - logsumexp(other logits)` do not saturate
    like the log-probability does, so confident predictions still get informative scores."""
    chosen = logits.gather(1, target.unsqueeze(1)).squeeze(1)  # (batch,)
    if problem != "single_label_classification":
        return chosen  # a multi-label logit is already the label's log-odds; regression: the value
    return chosen - logits.scatter(1, target.unsqueeze(1), float("-inf")).logsumexp(-1)


def _resolve_target(target: int | str | None, config, logits: torch.Tensor, problem: str) -> torch.Tensor:
    if target is None:  # the prediction (multi-label: the most confident label; regression: the output)
        return torch.zeros_like(logits[:, 0], dtype=torch.long) if problem == "regression" else logits.argmax(-1)
    if isinstance(target, str):
        if target not in config.label2id:
            raise ValueError(f"Unknown target label {target!r}; the model's labels are {list(config.label2id)}.")
        target = int(config.label2id[target])
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < logits.size(1):
        raise ValueError(f"target={target!r} must be a label name or an index in [0, num_labels={logits.size(1)}).")
    return torch.full_like(logits[:, 0], target, dtype=torch.long)


def _encode(tokenizer, texts: list[str], device: torch.device):
    """Right-pad the tokenised texts (at least one column, so empty texts work); keep each text's offsets."""
    limit = tokenizer.model_max_length
    truncate = limit is not None and limit < _NO_LIMIT
    enc = tokenizer(texts, truncation=truncate, max_length=limit if truncate else None, return_offsets_mapping=True)
    rows, offsets = enc["input_ids"], [[tuple(o) for o in row] for row in enc["offset_mapping"]]
    ids = torch.full((len(rows), max([len(r) for r in rows] + [1])), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (row, text) in enumerate(zip(rows, texts)):
        ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row, dtype=torch.long), 1
        if truncate and len(row) == limit and text[offsets[i][-1][1] :].strip():
            logger.warning("A text is longer than model_max_length=%d tokens: explaining its start only.", limit)
    return ids.to(device), mask.to(device), rows, offsets


def _along_path(model, base, diff, mask, target, problem, alphas, weights=None):
    """f(base + a * diff) for every `a` in `alphas` (k, batch) -> (k, batch); given `weights` (k, batch), also
    `sum_k weights[k] * grad f` at those points -> (batch, seq_len, dim)."""
    values, grads, per_pass = [], torch.zeros_like(base), max(1, _MAX_ROWS // base.size(0))
    for i in range(0, len(alphas), per_pass):
        chunk = alphas[i : i + per_pass]
        with torch.set_grad_enabled(weights is not None):  # the grad path runs the padded kernel: also exact
            path = (base + chunk.view(len(chunk), -1, 1, 1) * diff).reshape(-1, *base.shape[1:])  # (k * batch, ...)
            path.requires_grad_(weights is not None)
            logits = model(inputs_embeds=path, attention_mask=mask.repeat(len(chunk), 1)).logits
            f = _score(logits, problem, target.repeat(len(chunk)))
            if weights is not None:
                (grad,) = torch.autograd.grad(f.sum(), path)
                grads += (grad.view(len(chunk), *base.shape) * weights[i : i + per_pass, :, None, None]).sum(0)
        values.append(f.detach().view(len(chunk), -1))
    return torch.cat(values), grads


def _partition(model, base, diff, mask, target, problem, steps):
    """Per-text nodes 0 = a_0 < ... < a_steps = 1 of the path, most of them where f changes.

    LayerNorm makes f nearly constant along the path except very close to the (zero) baseline, where its
    epsilon matters; a confident model can swing there within 0.3% of the path, which even hundreds of evenly
    spaced steps miss. So f is first tabulated (forward passes only) on a log + linear grid, and the
    nodes split the path into steps of equal variation of f (share `_MIX`) and of equal length (the rest).
    """
    batch = base.size(0)
    grid = torch.cat([torch.logspace(-10, 0, 61), torch.linspace(0, 1, 21)]).unique().to(base)
    grid = grid.unsqueeze(1).repeat(1, batch)  # (G, batch)
    values = _along_path(model, base, diff, mask, target, problem, grid)[0]  # (G, batch)
    variation = torch.cat([torch.zeros_like(values[:1]), values.diff(dim=0).abs().cumsum(0)])
    total = variation[-1:]
    cdf = (1 - _MIX) * grid + _MIX * torch.where(total > 0, variation / total.clamp(min=1e-30), grid)
    cdf, grid = cdf.T.contiguous(), grid.T.contiguous()  # (batch, G), cdf increasing from 0 to 1
    levels = torch.linspace(0, 1, steps + 1).to(base).expand(batch, -1).contiguous()
    idx = torch.searchsorted(cdf, levels).clamp(1, grid.size(1) - 1)  # invert the cdf by linear interpolation
    low, high = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    share = ((levels - low) / (high - low).clamp(min=1e-30)).clamp(0, 1)
    nodes = grid.gather(1, idx - 1) + share * (grid.gather(1, idx) - grid.gather(1, idx - 1))
    nodes[:, 0], nodes[:, -1] = 0.0, 1.0
    return nodes, values[-1] - values[0]  # (batch, steps + 1), f(x) - f(baseline)


def _integrated_gradients(model, ids, mask, target, problem, steps, baseline):
    embeddings = model.get_input_embeddings()
    embeds = embeddings(ids).detach()  # (batch, seq_len, dim)
    pad = embeddings.weight[model.config.pad_token_id].detach()
    base = (pad.expand_as(embeds) if baseline == "pad" else torch.zeros_like(embeds)).contiguous()
    diff = embeds - base
    nodes, change = _partition(model, base, diff, mask, target, problem, steps)
    midpoints, widths = (nodes[:, 1:] + nodes[:, :-1]).T / 2, nodes.diff(dim=1).T  # (steps, batch): Riemann sum
    grads = _along_path(model, base, diff, mask, target, problem, midpoints, widths)[1]
    attributions = (diff * grads).sum(-1) * mask  # (batch, seq_len)
    delta = (attributions.sum(1) - change).abs()
    if bool(((delta > 0.05 * change.abs()) & (delta > 1e-3)).any()):
        i = int((delta / change.abs().clamp(min=1e-3)).argmax())
        message = "Integrated gradients: scores sum %.3g away from f(x) - f(baseline) = %.3g; raise `steps` (now %d)."
        logger.warning(message, float(delta[i]), float(change[i]), steps)
    return attributions, delta


def _occlusion(model, ids, mask, target, problem, full):
    rows, cols = mask.nonzero(as_tuple=True)  # one variant per real token
    scores = torch.zeros(mask.shape, dtype=full.dtype, device=full.device)
    for start in range(0, len(rows), _MAX_ROWS):
        r, c = rows[start : start + _MAX_ROWS], cols[start : start + _MAX_ROWS]
        occluded = mask[r].clone()
        occluded[torch.arange(len(r), device=r.device), c] = 0
        scores[r, c] = full[r] - _score(model(input_ids=ids[r], attention_mask=occluded).logits, problem, target[r])
    return scores


def _explain_batch(model, tokenizer, texts, method, target, steps, baseline) -> list[Explanation]:
    problem, config = _problem_type(model.config), model.config
    ids, mask, rows, offsets = _encode(tokenizer, texts, next(model.parameters()).device)
    out = model(input_ids=ids, attention_mask=mask, output_attentions=method == "attention")
    if getattr(out, "logits", None) is None:
        raise TypeError("explain needs a classification model with logits (TextGRUForSequenceClassification).")
    logits = out.logits.float()  # (batch, num_labels)
    targets = _resolve_target(target, config, logits, problem)
    full, delta = _score(logits, problem, targets), None
    if method == "attention":
        scores = out.attentions[0].mean(1)  # (batch, seq_len): mean over heads, zero at padding
    elif method == "occlusion":
        scores = _occlusion(model, ids, mask, targets, problem, full)
    else:
        scores, delta = _integrated_gradients(model, ids, mask, targets, problem, steps, baseline)
    probabilities = [None] * len(texts)
    if problem != "regression":
        probs = logits.softmax(-1) if problem == "single_label_classification" else logits.sigmoid()
        probabilities = probs.gather(1, targets.unsqueeze(1)).squeeze(1).tolist()
    explanations = []
    for i, text in enumerate(texts):
        pieces, t = tokenizer.convert_ids_to_tokens(rows[i]), int(targets[i])
        explanations.append(
            Explanation(
                text=text,
                tokens=[text[s:e] or piece for (s, e), piece in zip(offsets[i], pieces)],
                offsets=offsets[i],
                scores=scores[i, : len(rows[i])].tolist(),
                label=str(config.id2label.get(t, f"LABEL_{t}")),
                probability=probabilities[i],
                method=method,
                target=t,
                output=float(full[i]),
                delta=None if delta is None else float(delta[i]),
            )
        )
    return explanations


def explain(
    model,
    tokenizer,
    texts: str | list[str],
    *,
    method: str = "integrated_gradients",
    target: int | str | None = None,
    steps: int = 32,
    baseline: str = "pad",
) -> list[Explanation]:
    """Attribute a TextGRU classifier's predictions to the tokens of each text.

    Texts are tokenised in padded batches (exact: a text's scores do not depend on the others) and truncated to
    `tokenizer.model_max_length` tokens (with a warning). An empty text gives an `Explanation` without tokens.

    Args:
        model: A `TextGRUForSequenceClassification` (single-label, multi-label or regression). It runs in eval
            mode; its own mode is restored afterwards.
        tokenizer: The model's fast tokenizer (its offsets map tokens back to the text).
        texts: One text or a list of texts.
        method: `"integrated_gradients"` (default), `"occlusion"` or `"attention"` (attention pooling only).
        target: The label to explain, by name or index. Default: the predicted label (multi-label: the most
            probable one; regression: the output).
        steps: Integrated gradients: number of Riemann (midpoint) steps. More steps, smaller `delta`.
        baseline: Integrated gradients: `"pad"` (every embedding replaced by the pad token's) or `"zeros"`.

    Returns:
        One `Explanation` per text, in order.
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    if baseline not in BASELINES:
        raise ValueError(f"Unknown baseline {baseline!r}; choose one of {list(BASELINES)}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer (32 is usually enough; check `delta`).")
    pooling = getattr(model.config, "pooling", None)
    if method == "attention" and pooling != "attention":
        raise ValueError(
            f"method='attention' needs a model with attention pooling, but config.pooling={pooling!r}; use "
            "method='integrated_gradients' or method='occlusion'."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("explain needs a fast tokenizer (for offsets): load it with AutoTokenizer (use_fast=True).")
    check_tokenizer_matches_model(tokenizer, model.config)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("explain expects a string or a list of strings.")
    explanations = []
    with _eval_mode(model), torch.no_grad():
        for start in range(0, len(texts), _TEXTS_PER_BATCH):
            batch = texts[start : start + _TEXTS_PER_BATCH]
            explanations += _explain_batch(model, tokenizer, batch, method, target, steps, baseline)
    return explanations
