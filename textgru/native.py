"""Native int8 inference: a TextGRU classifier run by textgru's own fused int8 kernels, on numpy, without torch.

The fastest CPU format for batches (`textgru export MODEL_DIR OUT --format native-int8`; docs/benchmarks.md):

- every GRU runs one fused C loop per direction (`textgru/kernels/int8_gru.c`): per time step one int8 product of
  the state with the recurrent weights (AVX512-VNNI where the CPU has it), then the gate math, the state's
  quantisation and the residual add in one pass over the gates. onnxruntime's int8 graph needs ~15 kernels a step;
- the batch is packed: only real tokens are computed (no padded steps, rows stop at their own length, the
  backward direction starts at each row's last token), so results do not depend on how a batch is padded;
- input products (and the skip projection and attention scorer) are one int8 product over all tokens of a layer,
  each token quantised on its own after the layer norm, each row's state at every step on its own too; weights
  are int8 per output feature. So a text's logits do not depend on the other texts in its batch (up to fp32
  rounding in the classifier). Layer 0's input products depend on the token alone and come from a fp32 table over
  the vocabulary (`table_max_bytes`; exact up to the embeddings' fp16 storage); the attention softmax, pooling
  and classifier stay fp32.

The kernels are compiled at first use with the machine's C compiler and cached (`textgru.kernels`). The folder
format (`export_native`, `load_native`, `NativeTextClassifier`) is in `textgru.native_format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from . import kernels


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"The native int8 weights of {what} do not fit the config's sizes; re-export the model.")


class Packed(NamedTuple):
    """A batch packed for the kernels (`NativeInt8Model.pack`)."""

    tokens: np.ndarray  # (real tokens,) ids, row after row
    lengths: np.ndarray  # (batch,) tokens per row, in row order
    offsets: np.ndarray  # (batch,) where each row starts in `tokens`
    sorted_offsets: np.ndarray  # the same, rows longest first (what the recurrence takes)
    sorted_lengths: np.ndarray


def quantize_weight(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output feature: `weight (N, K) ~= q * scale[:, None]`, `q` in [-127, 127]."""
    weight = np.asarray(weight, dtype=np.float32)
    amax = np.abs(weight).max(axis=1) if weight.size else np.zeros(len(weight), np.float32)
    scale = np.where(amax > 0, amax / 127, 1).astype(np.float32)
    return np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8), scale


class _QLinear:
    """An int8 linear map in the kernels' layout: weights packed [N/16][K/4][16][4], N and K padded with zeros."""

    def __init__(self, lib, qweights: Sequence[np.ndarray], scales: Sequence[np.ndarray], biases: Sequence):
        # several maps with the same input (both directions' input products) become one, each padded to 16 outputs
        self.lib = lib
        self.k, self.n = qweights[0].shape[1], qweights[0].shape[0]  # inputs, outputs of each part
        for q, scale, bias in zip(qweights, scales, biases):
            ok = q.shape == (self.n, self.k) and q.dtype == np.int8 and scale.shape == (self.n,)
            _expect(ok and (bias is None or np.shape(bias) == (self.n,)), "a product")
        self.kp = _round_up(self.k, 4)
        self.block = _round_up(qweights[0].shape[0], 16)  # padded outputs of each part
        packed, scale, bias = [], [], []
        for q, s, b in zip(qweights, scales, biases):
            n = q.shape[0]
            padded = np.zeros((self.block, self.kp), np.int8)
            padded[:n, : self.k] = q
            packed.append(padded.reshape(self.block // 16, 16, self.kp // 4, 4).transpose(0, 2, 1, 3))
            scale.append(np.pad(s, (0, self.block - n), constant_values=1))
            bias.append(np.pad(np.zeros(n, np.float32) if b is None else b, (0, self.block - n)))
        self.weight = np.ascontiguousarray(np.concatenate(packed))
        self.np = self.block * len(qweights)
        self.scale = np.ascontiguousarray(np.concatenate(scale), dtype=np.float32)
        self.bias = np.ascontiguousarray(np.concatenate(bias), dtype=np.float32)
        colsum = np.concatenate([p.reshape(self.block // 16, -1, 16, 4).sum(axis=(1, 3)).reshape(-1) for p in packed])
        self.offset = np.ascontiguousarray(128 * colsum, dtype=np.int32)  # cancels the +128 of the activations
        self.ptrs = tuple(_ptr(a) for a in (self.weight, self.scale, self.offset, self.bias))  # fixed; ~1 us each

    def __call__(self, q: np.ndarray, qscale: np.ndarray) -> np.ndarray:
        y = np.empty((len(q), self.np), np.float32)
        weight, scale, offset, bias = self.ptrs
        self.lib.textgru_qgemm(_ptr(q), self.kp, _ptr(qscale), len(q), weight, self.kp, self.np, scale, offset, bias,
                               _ptr(y), self.np)  # fmt: skip
        return y


class NativeInt8Model:
    """A `TextGRUForSequenceClassification` forward pass through the int8 kernels (CPU, numpy in and out).

    Args:
        config: The model's config as a dict (`TextGRUConfig.to_dict()`).
        arrays: The weights, as `state_arrays` returns them (or `native_int8.npz` holds them).
        kernel: Which product code to run: `"best"` (AVX512-VNNI, else AVX2, else plain C: whatever the CPU
            supports), or `"avx2"` / `"generic"` (plain C) to force a lesser one. All compute the same integer sums.
        table_max_bytes: The first layer's input products (and its skip path) depend on the token alone, so they
            are precomputed in fp32 for the whole vocabulary when that table fits in this many bytes (default
            256 MiB; 64 MiB for a 16k vocabulary at the default width): exact, and the layer's int8 products are
            skipped. 0 turns it off.

    >>> native = NativeInt8Model.from_model(model)  # doctest: +SKIP
    >>> logits = native(input_ids, attention_mask)  # numpy (batch, num_labels)  # doctest: +SKIP
    """

    def __init__(
        self, config: dict, arrays: dict[str, np.ndarray], kernel: str = "best", table_max_bytes: int = 256 << 20
    ):
        self.lib = kernels.load(kernel)
        self.config = config
        self.hidden = int(config["hidden_size"])
        self.directions = 2 if config.get("bidirectional", True) else 1
        self.width = self.hidden * self.directions
        self.residual = config.get("residual", "add")
        self.pooling = config.get("pooling", "attention")
        self.eps = float(arrays.get("layer_norm_eps", np.float32(1e-5)))
        try:
            self.embeddings = np.ascontiguousarray(arrays["embeddings"], dtype=np.float32)
            self.layers = [self._layer(arrays, i) for i in range(int(config["num_hidden_layers"]))]
            self.final_norm = self._norm(arrays, "final_norm", self.width)
            self.classifier = (_f32(arrays["classifier.weight"]), _f32(arrays["classifier.bias"]))
            heads = 1
            if self.pooling == "attention":
                self.scorer = self._linear(arrays, ["pooler.scorer"])
                self.heads = _f32(arrays["pooler.heads.weight"])  # (heads, attention_hidden)
                heads = len(self.heads)
                _expect(self.scorer.k == self.width and self.heads.shape[1] == self.scorer.n, "the attention pooler")
            _expect(self.classifier[0].shape[1:] == (heads * self.width,), "the classifier")
            self.table = None
            if self.layers:
                first = self.layers[0]
                table_bytes = 4 * len(self.embeddings) * (first["ih"].np + self.width)
                if table_bytes <= table_max_bytes:
                    self.table = self._first_layer_table(arrays)
        except KeyError as err:
            raise ValueError(f"Native int8 weights are missing {err} for this config; re-export the model.") from err

    def _first_layer_table(self, arrays) -> tuple[np.ndarray, np.ndarray | None]:
        """fp32 input products of layer 0 for every token id, in the kernels' column layout, and its skip path."""
        emb, first, p = self.embeddings, self.layers[0], "layers.0"
        normed = emb if first["norm"] is None else self._layer_norm(emb, first["norm"])
        products = np.zeros((len(emb), first["ih"].np), np.float32)
        for d, name in enumerate(["forward", "backward"][: self.directions]):
            weight = arrays[f"{p}.{name}.ih.fweight"]
            block = first["ih"].block
            products[:, d * block : d * block + 3 * self.hidden] = normed @ weight.T + arrays[f"{p}.{name}.ih.bias"]
        skip = None
        if self.residual != "none":
            skip = emb
            if first["projection"] is not None:
                skip = emb @ arrays[f"{p}.projection.fweight"].T
            skip = np.ascontiguousarray(skip, dtype=np.float32)
        return products, skip

    @staticmethod
    def _norm(arrays, name, size):
        if f"{name}.weight" not in arrays:
            return None
        norm = _f32(arrays[f"{name}.weight"]), _f32(arrays[f"{name}.bias"])
        _expect(norm[0].shape == norm[1].shape == (size,), name)
        return norm

    def _linear(self, arrays, names, biases=None) -> _QLinear:
        biases = biases or [None] * len(names)
        qs = [arrays[f"{n}.qweight"] for n in names]
        return _QLinear(self.lib, qs, [arrays[f"{n}.scale"] for n in names], [b for b in biases])

    def _layer(self, arrays, i) -> dict:
        p, dirs = f"layers.{i}", ["forward", "backward"][: self.directions]
        size = int(self.config.get("embedding_size", self.width)) if i == 0 else self.width  # the layer's input
        layer = {
            "norm": self._norm(arrays, f"{p}.norm", size),
            "ih": self._linear(arrays, [f"{p}.{d}.ih" for d in dirs], [arrays[f"{p}.{d}.ih.bias"] for d in dirs]),
            "hh": [self._linear(arrays, [f"{p}.{d}.hh"], [arrays[f"{p}.{d}.hh.bias"]]) for d in dirs],
            "projection": self._linear(arrays, [f"{p}.projection"]) if f"{p}.projection.qweight" in arrays else None,
            "gate": (_f32(arrays[f"{p}.gate.weight"].T), _f32(arrays[f"{p}.gate.bias"]))
            if self.residual == "gated"
            else None,
        }
        _expect(layer["ih"].k == size and layer["ih"].n == 3 * self.hidden, f"layer {i}'s input weights")
        _expect(all(hh.k == self.hidden and hh.n == 3 * self.hidden for hh in layer["hh"]), f"layer {i}'s GRU")
        _expect(layer["projection"] is None or layer["projection"].k == size, f"layer {i}'s projection")
        _expect(layer["gate"] is None or layer["gate"][0].shape == (2 * self.width, self.width), f"layer {i}'s gate")
        return layer

    @classmethod
    def from_model(cls, model, **kwargs) -> NativeInt8Model:
        """Quantise a fp32 `TextGRUForSequenceClassification` (any residual, pooling and depth); `kwargs` as for
        the constructor (`kernel`, `table_max_bytes`)."""
        return cls(model.config.to_dict(), state_arrays(model), **kwargs)

    def _quantize(self, x: np.ndarray, norm) -> tuple[np.ndarray, np.ndarray]:
        m, k = x.shape
        q, scale = np.empty((m, _round_up(k, 4)), np.uint8), np.empty(m, np.float32)
        gamma, beta = (None, None) if norm is None else (_ptr(norm[0]), _ptr(norm[1]))
        scratch = np.empty(k, np.float32)
        self.lib.textgru_quantize_rows(_ptr(x), k, m, k, gamma, beta, self.eps, _ptr(q), q.shape[1], _ptr(scale),
                                       _ptr(scratch))  # fmt: skip
        return q, scale

    def _run_layer(
        self, layer: dict, x: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, ids: np.ndarray | None = None
    ) -> np.ndarray:
        """One residual block on packed tokens `x`; with `ids`, `x` is unused and layer 0's table is read."""
        hidden, width = self.hidden, self.width
        if ids is not None:  # layer 0 from the per-token table
            xproj, index = self.table[0], ids
            tokens = len(ids)
            skip = self.table[1][ids] if self.table[1] is not None else None
        else:
            xproj, index = layer["ih"](*self._quantize(x, layer["norm"])), None  # (tokens, directions * block)
            tokens, skip = len(x), x
            if layer["projection"] is not None:
                skip = np.ascontiguousarray(layer["projection"](*self._quantize(x, None))[:, :width])
        accumulate = self.residual == "add"
        out = skip.copy() if accumulate else np.zeros((tokens, width), np.float32)  # (tokens, width)
        batch = len(lengths)
        for d, hh in enumerate(layer["hh"]):
            h, gh = np.empty((batch, hidden), np.float32), np.empty((batch, hh.np), np.float32)
            hq, qscale = np.empty((batch, hh.kp), np.uint8), np.empty(batch, np.float32)
            self.lib.textgru_gru_direction(
                _ptr(xproj) + 4 * d * layer["ih"].block, xproj.shape[1], None if index is None else _ptr(index),
                _ptr(offsets), _ptr(lengths), batch,
                hh.ptrs[0], hidden, hh.kp, hh.np, *hh.ptrs[1:], d,
                _ptr(out) + 4 * d * hidden, width, int(accumulate), _ptr(h), _ptr(hq), _ptr(gh), _ptr(qscale),
            )  # fmt: skip
        if layer["gate"] is not None:  # highway: skip + sigmoid(gate([skip, update])) * (update - skip)
            gate = 1 / (1 + np.exp(-(np.concatenate([skip, out], 1) @ layer["gate"][0] + layer["gate"][1])))
            out = skip + gate * (out - skip)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _layer_norm(self, x: np.ndarray, norm: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        out, (m, k) = np.empty_like(x), x.shape
        self.lib.textgru_layer_norm(_ptr(x), k, m, k, _ptr(norm[0]), _ptr(norm[1]), self.eps, _ptr(out), k)
        return out

    def pack(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> Packed:
        """A batch as the kernels take it: its real tokens one row after another, and the rows longest first."""
        ids = np.asarray(input_ids)
        mask = np.ones(ids.shape, bool) if attention_mask is None else np.asarray(attention_mask).astype(bool)
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be the same 2-D shape.")
        lengths = mask.sum(1).astype(np.int64)
        offsets = np.cumsum(lengths) - lengths
        tokens = np.ascontiguousarray(ids[mask], dtype=np.int64)  # each row's real tokens in order
        if tokens.size and (tokens.min() < 0 or tokens.max() >= len(self.embeddings)):
            raise ValueError(f"Token ids must be in [0, {len(self.embeddings)}); got {tokens.min()}..{tokens.max()}.")
        order = np.argsort(-lengths, kind="stable")
        return Packed(
            tokens, lengths, offsets, np.ascontiguousarray(offsets[order]), np.ascontiguousarray(lengths[order])
        )

    def encode(self, batch: Packed) -> np.ndarray:
        """The stack's output for a packed batch, (tokens, width), after every layer (not yet the final norm)."""
        x = None if self.table is not None else self.embeddings[batch.tokens]  # (tokens, embedding_size)
        for i, layer in enumerate(self.layers):
            ids = batch.tokens if i == 0 and self.table is not None else None
            x = self._run_layer(layer, x, batch.sorted_offsets, batch.sorted_lengths, ids)
        return x

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray | None = None) -> np.ndarray:
        """Logits (batch, num_labels) for a batch of token ids (batch, seq_len); padding may sit anywhere."""
        batch = self.pack(input_ids, attention_mask)
        x = self.encode(batch)
        if self.final_norm is not None:
            x = self._layer_norm(x, self.final_norm)
        weight, bias = self.classifier
        return (self._pool(x, batch.lengths, batch.offsets) @ weight.T + bias).astype(np.float32)

    def _pool(self, x: np.ndarray, lengths: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Pool each row's tokens (rows of `x` packed in row order); empty rows pool to zeros, as in PyTorch."""
        heads = self.heads.shape[0] if self.pooling == "attention" else 1
        pooled = np.zeros((len(lengths), heads * self.width), np.float32)
        rows = lengths > 0
        if not rows.any():
            return pooled
        starts, counts = offsets[rows], lengths[rows]
        if self.pooling == "attention":
            scores = self.scorer(*self._quantize(x, None))  # (tokens, attention_hidden padded)
            w, th = np.empty((len(x), heads), np.float32), np.empty(self.heads.shape[1], np.float32)  # scratch
            self.lib.textgru_attention_pool(_ptr(x), self.width, _ptr(scores), scores.shape[1],
                                            self.heads.shape[1], _ptr(self.heads), heads, _ptr(offsets),
                                            _ptr(lengths), len(lengths), _ptr(pooled), _ptr(w),
                                            _ptr(th))  # fmt: skip
        elif self.pooling == "mean":
            pooled[rows] = np.add.reduceat(x, starts, axis=0) / counts[:, None]
        elif self.pooling == "max":
            pooled[rows] = np.maximum.reduceat(x, starts, axis=0)
        else:  # "last": the forward direction at each row's last token, the backward one at its first
            pooled[rows] = x[starts + counts - 1]
            if self.directions == 2:
                pooled[rows, self.hidden :] = x[starts, self.hidden :]
        return pooled


def state_arrays(model) -> dict[str, np.ndarray]:
    """The arrays `NativeInt8Model` runs on, from a fp32 `TextGRUForSequenceClassification`: what the format saves."""
    if not hasattr(model, "classifier") or not hasattr(model, "textgru"):
        raise ValueError(
            f"The native int8 format needs a TextGRUForSequenceClassification, not {type(model).__name__}."
        )
    sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    if any(not np.isfinite(v).all() for v in sd.values()):
        raise ValueError("The model has NaN or infinite weights; it cannot be quantised.")
    out: dict[str, np.ndarray] = {"embeddings": sd["textgru.embeddings.weight"].astype(np.float16)}
    norms = [m for m in model.modules() if type(m).__name__ == "LayerNorm"]
    if norms:
        out["layer_norm_eps"] = np.float32(norms[0].eps)

    def linear(name: str, weight: np.ndarray) -> None:
        out[f"{name}.qweight"], out[f"{name}.scale"] = quantize_weight(weight)
        if name.startswith("layers.0.") and not name.endswith(".hh"):  # fp32 too, for layer 0's table
            out[f"{name}.fweight"] = weight

    for i in range(model.config.num_hidden_layers):
        p = f"textgru.layers.{i}"
        for d in ["forward", "backward"][: 2 if model.config.bidirectional else 1]:
            linear(f"layers.{i}.{d}.ih", sd[f"{p}.rnn.{d}_gru.weight_ih_l0"])
            linear(f"layers.{i}.{d}.hh", sd[f"{p}.rnn.{d}_gru.weight_hh_l0"])
            out[f"layers.{i}.{d}.ih.bias"] = sd[f"{p}.rnn.{d}_gru.bias_ih_l0"]
            out[f"layers.{i}.{d}.hh.bias"] = sd[f"{p}.rnn.{d}_gru.bias_hh_l0"]
        if f"{p}.projection.weight" in sd:
            linear(f"layers.{i}.projection", sd[f"{p}.projection.weight"])
        for name in ("norm.weight", "norm.bias", "gate.weight", "gate.bias"):
            if f"{p}.{name}" in sd:
                out[f"layers.{i}.{name}"] = sd[f"{p}.{name}"]
    if "textgru.pooler.scorer.weight" in sd:
        linear("pooler.scorer", sd["textgru.pooler.scorer.weight"])
    for name in ("final_norm.weight", "final_norm.bias", "pooler.heads.weight"):
        if f"textgru.{name}" in sd:
            out[name] = sd[f"textgru.{name}"]
    out["classifier.weight"], out["classifier.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    return out


__all__ = ["NativeInt8Model", "Packed", "quantize_weight", "state_arrays"]
