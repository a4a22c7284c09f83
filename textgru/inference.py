"""Text in, predictions out: one small predictor for eager, int8, ONNX and native int8 TextGRU models.

`TextClassifier` runs a PyTorch model (fp32 or the int8 model of `textgru.export.quantize_dynamic`);
`OnnxTextClassifier` runs an ONNX export with onnxruntime, tokenizers and numpy only (this module imports
torch and transformers lazily, though `import textgru` itself still loads them); `NativeTextClassifier`
(`textgru.native_format`) runs textgru's own int8 kernels on numpy. All tokenise with the
`tokenizers` backend directly (right padding, to the longest text of each batch) and expose the same two calls:

- `predict(texts, batch_size)` -> logits, a float32 array (n_texts, num_labels), in input order. By default the
  texts are grouped into batches by token length (`sort_by_length=True`), which cuts padding for every backend,
  and the ONNX predictor runs a batch whose lengths still spread widely as a few length buckets
  (`length_buckets`); the results are put back in input order;
- `classify(texts, batch_size)` (also `__call__`) -> one dict per text: `{"label", "score"}` for single-label
  models, `{"labels", "scores"}` for multi-label ones, `{"score"}` for regression.

`load_classifier(path)` picks the right one for a folder written by `save_pretrained`, `save_quantized`,
`export_onnx` or `export_native`.

>>> clf = load_classifier("outputs/sst2-export-int8")  # doctest: +SKIP
>>> clf(["a gripping, beautifully shot film"])  # doctest: +SKIP
[{'label': 'positive', 'score': 0.97}]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

_NO_LIMIT = 1_000_000  # transformers' "no limit" model_max_length is ~1e30


def fast_backend(tokenizer) -> Tokenizer:
    """A private copy of a tokenizer's Rust backend with padding and truncation switched off.

    Args:
        tokenizer: A `PreTrainedTokenizerFast`, a `tokenizers.Tokenizer`, or a folder / `tokenizer.json` path.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        path = Path(tokenizer)
        path = path / "tokenizer.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"No tokenizer.json at {path}; save the tokenizer with `save_pretrained` there.")
        backend = Tokenizer.from_file(str(path))
    elif isinstance(tokenizer, Tokenizer):
        backend = Tokenizer.from_str(tokenizer.to_str())
    elif hasattr(tokenizer, "backend_tokenizer"):
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    else:
        raise TypeError(
            "Expected a fast tokenizer (PreTrainedTokenizerFast or tokenizers.Tokenizer), got "
            f"{type(tokenizer).__name__}."
        )
    backend.no_padding()
    backend.no_truncation()
    return backend


def encode_texts(backend: Tokenizer, texts: Sequence[str], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokenise and right-pad `texts` to the longest one (at least one column).

    Args:
        backend: A `tokenizers.Tokenizer` (truncation, if any, configured on it).
        texts: The texts.
        pad_id: Id written at padded positions.

    Returns:
        `input_ids` and `attention_mask`, int64 arrays of shape (len(texts), width).
    """
    return _pad(_encode(backend, texts), pad_id)


def _encode(backend: Tokenizer, texts: Sequence[str]) -> list:
    """`backend`'s encodings of `texts`, without character offsets where the tokenizers version can skip them
    (`encode_batch_fast`, tokenizers >= 0.20: same ids, ~18% faster on SST-2 sentences; predictions need no
    offsets)."""
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch
    return encode(list(texts))


def _pad(encodings: Sequence, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max([len(e.ids) for e in encodings] + [1])
    ids = np.full((len(encodings), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    return ids, mask


def length_buckets(lengths: Sequence[int], call_cost: float, step_cost: float) -> list[tuple[int, int]]:
    """Split a batch of texts, sorted by token length, into consecutive runs that are cheapest to run separately.

    Cost model of one forward pass over `n` rows padded to `width` tokens, in units of one row's time step:
    `call_cost + width * (n + step_cost)`. `step_cost` is what a time step costs whatever the batch (the per-step
    work of a recurrent layer that does not grow with the rows), `call_cost` what a call costs whatever its size.
    Splitting a batch pays `call_cost` and `width * step_cost` again per part and saves the padding of the short
    rows to the long ones' width. Exact minimum by dynamic programming over the distinct lengths.

    Args:
        lengths: Token lengths in ascending order.
        call_cost: Cost of a forward pass beyond its time steps, in row time steps.
        step_cost: Cost of a time step beyond its rows, in rows.

    Returns:
        `(start, stop)` index ranges covering `lengths` in order.

    >>> length_buckets([3, 4, 4, 30, 31], call_cost=10, step_cost=2)
    [(0, 3), (3, 5)]
    >>> length_buckets([3, 4, 4, 30, 31], call_cost=1000, step_cost=2)
    [(0, 5)]
    """
    if not (call_cost >= 0 and step_cost >= 0):  # also rejects NaN
        raise ValueError(f"length_buckets needs costs >= 0, got call_cost={call_cost}, step_cost={step_cost}.")
    n = len(lengths)
    if n == 0:
        return []
    if any(b < a for a, b in zip(lengths, lengths[1:])):
        raise ValueError("length_buckets expects lengths in ascending order.")
    widths = np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)  # an empty text still runs one step
    # a part may end only where the length changes (or at the end): equal lengths never gain from a split
    ends = [j for j in range(1, n + 1) if j == n or widths[j] != widths[j - 1]]
    starts, best = [0], [0.0]  # candidate part starts, and the cheapest cost of everything before each
    cut = {}  # end -> start of the last part in the cheapest split up to that end
    for j in ends:
        costs = np.array(best) + call_cost + widths[j - 1] * (j - np.array(starts) + step_cost)
        k = int(costs.argmin())
        cut[j] = starts[k]
        starts.append(j)
        best.append(float(costs[k]))
    parts, j = [], n
    while j > 0:
        parts.append((cut[j], j))
        j = cut[j]
    return parts[::-1]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class _Classifier:
    """Shared batching and post-processing; subclasses provide `_logits(ids, mask)`.

    `bucket_costs`: `(call_cost, step_cost)` of `length_buckets` for this backend (measured by
    `benchmarks/length_buckets.py`), or None to run every batch whole.
    """

    bucket_costs: tuple[float, float] | None = None

    def __init__(
        self, backend: Tokenizer, config: dict, max_length: int | None, batch_size: int, sort_by_length: bool
    ):
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length={max_length} must be a positive number of tokens (or None for no limit).")
        self.backend = backend
        if max_length is not None:
            self.backend.enable_truncation(max_length)
        self.max_length = max_length
        self.batch_size = batch_size
        self.sort_by_length = sort_by_length
        self.pad_id = int(config.get("pad_token_id") or 0)
        self.problem_type = config.get("problem_type")
        self.id2label = {int(k): v for k, v in (config.get("id2label") or {}).items()}

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(
        self, texts: Sequence[str], batch_size: int | None = None, sort_by_length: bool | None = None
    ) -> np.ndarray:
        """Logits for `texts`, a float32 array (n_texts, num_labels), in input order.

        Args:
            texts: The texts to classify.
            batch_size: Texts per forward pass (default: the one given at construction).
            sort_by_length: Batch the texts in order of token length, then restore the input order (default: the
                constructor's choice, on). Batches of similar lengths carry little padding, which every backend
                otherwise computes or at least sorts and packs; the logits are the same either way (up to float
                rounding; an int8 model's activation scales depend on the batch, so its logits move slightly).
                With it on, a batch whose lengths still spread widely may also run as a few consecutive parts of
                similar lengths, where the backend's cost model (`bucket_costs`, `length_buckets`) says that is
                cheaper; with it off, every forward pass is exactly `batch_size` texts in input order.
        """
        if isinstance(texts, str):
            raise TypeError("predict expects a list of texts; wrap a single text in a list.")
        batch_size = batch_size or self.batch_size
        sort_by_length = self.sort_by_length if sort_by_length is None else sort_by_length
        encodings = _encode(self.backend, texts)
        if not encodings:
            return np.zeros((0, max(len(self.id2label), 1)), dtype=np.float32)
        order = np.arange(len(encodings))
        lengths = [len(e.ids) for e in encodings]
        if sort_by_length:
            order = np.argsort(lengths, kind="stable")
        chunks = []
        for i in range(0, len(encodings), batch_size):
            rows = order[i : i + batch_size]
            parts = [(0, len(rows))]
            if sort_by_length and self.bucket_costs is not None:
                parts = length_buckets([lengths[j] for j in rows], *self.bucket_costs)
            for start, stop in parts:
                chunks.append(self._logits(*_pad([encodings[j] for j in rows[start:stop]], self.pad_id)))
        logits = np.concatenate(chunks).astype(np.float32, copy=False)
        if sort_by_length:
            restored = np.empty_like(logits)
            restored[order] = logits
            logits = restored
        return logits

    def classify(self, texts: Sequence[str], batch_size: int | None = None) -> list[dict]:
        """Predicted labels with scores, one dict per text (see the module docstring).

        Args:
            texts: The texts to classify.
            batch_size: Texts per forward pass.
        """
        logits = self.predict(texts, batch_size)
        name = lambda i: self.id2label.get(int(i), f"LABEL_{int(i)}")  # noqa: E731
        if self.problem_type == "regression":
            return [{"score": float(row[0]) if row.size == 1 else row.tolist()} for row in logits]
        if self.problem_type == "multi_label_classification":
            probs = 1.0 / (1.0 + np.exp(-logits))
            return [
                {
                    "labels": [name(i) for i in np.flatnonzero(p >= 0.5)],
                    "scores": {name(i): float(v) for i, v in enumerate(p)},
                }
                for p in probs
            ]
        probs = _softmax(logits)
        return [{"label": name(p.argmax()), "score": float(p.max())} for p in probs]

    __call__ = classify


def folder_max_length(folder: Path) -> int | None:
    """`model_max_length` from an export folder's tokenizer_config.json, or None when it sets no real limit."""
    if not (folder / "tokenizer_config.json").is_file():
        return None
    limit = json.loads((folder / "tokenizer_config.json").read_text()).get("model_max_length")
    return int(limit) if isinstance(limit, (int, float)) and 0 < limit < _NO_LIMIT else None


def _default_max_length(tokenizer) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_LIMIT else None


class TextClassifier(_Classifier):
    """Predictor for a PyTorch TextGRU classifier, fp32 or int8.

    Args:
        model: A `TextGRUForSequenceClassification` (or its `quantize_dynamic` copy). Put in eval mode. It runs
            where its parameters are: move it first (`model.to("cuda")`) to predict on a GPU.
        tokenizer: Its fast tokenizer (`PreTrainedTokenizerFast`, `tokenizers.Tokenizer` or a folder path).
        max_length: Truncate texts to this many tokens. Default: the tokenizer's `model_max_length`, if it has one.
        batch_size: Default texts per forward pass.
        sort_by_length: Default for `predict`: batch texts in order of token length (less padding), results
            returned in input order.

    Which recurrent path a batch takes is the model's own rule (`model.textgru.stepwise_inference_max_batch`: small
    batches run textgru's stepwise recurrence; `packed_min_fill`: larger ones pack only when enough of the batch is
    padding); every path gives the same logits. The predictor switches on `model.textgru.cache_stepwise_weights()`,
    so small batches do not re-stack the GRU weights on every call.
    """

    # Whole batches: eager PyTorch already packs a ragged batch (`packed_min_fill`), and its calls cost ~1.6-2 ms
    # each; splitting measured no gain (benchmarks/length_buckets.py: 0.80-1.17x). Set a (call_cost, step_cost)
    # pair to try it.
    bucket_costs = None

    def __init__(
        self, model, tokenizer, max_length: int | None = None, batch_size: int = 32, sort_by_length: bool = True
    ):
        import torch

        self._torch = torch
        self.model = model.eval()
        encoder = getattr(model, "textgru", None)
        if hasattr(encoder, "cache_stepwise_weights"):  # small batches skip re-stacking the GRU weights per call
            encoder.cache_stepwise_weights()
        max_length = max_length if max_length is not None else _default_max_length(tokenizer)
        super().__init__(fast_backend(tokenizer), model.config.to_dict(), max_length, batch_size, sort_by_length)

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        # the batch goes where the model is (a CUDA model reads CUDA inputs); logits come back as float32 numpy
        param = next(self.model.parameters(), None)  # None: an int8 copy may hold no fp32 parameter
        ids, mask = torch.from_numpy(ids), torch.from_numpy(mask)
        if param is not None and param.device.type != "cpu":
            ids, mask = ids.to(param.device), mask.to(param.device)
        with torch.inference_mode():  # no_grad without version-counter bookkeeping: ~15% faster at batch 1
            out = self.model(input_ids=ids, attention_mask=mask)
        return out.logits.float().cpu().numpy()


class OnnxTextClassifier(_Classifier):
    """Predictor for a folder written by `textgru.export.export_onnx`, run with onnxruntime on the CPU.

    Args:
        path: The export folder (model.onnx, tokenizer.json, config.json, textgru_export.json).
        intra_op_num_threads: Threads onnxruntime may use inside an operator (1 = no contention with other work).
        max_length: Truncate texts to this many tokens. Default: `model_max_length` from tokenizer_config.json.
        batch_size: Default texts per forward pass.
        sort_by_length: Default for `predict`: batch texts in order of token length (less padding), results
            returned in input order.
    """

    bucket_costs = (20.0, 4.0)  # benchmarks/length_buckets.py (fp32 and int8 ONNX): call ~0.2 ms, step ~1-5 rows

    def __init__(
        self,
        path: str | os.PathLike,
        intra_op_num_threads: int = 1,
        max_length: int | None = None,
        batch_size: int = 32,
        sort_by_length: bool = True,
    ):
        from .export import ONNX_FORMAT, ONNX_NAME, onnx_session, read_manifest

        folder = Path(path)
        manifest = read_manifest(folder, ONNX_FORMAT)
        if manifest.get("outputs", ["logits"])[0] != "logits":
            raise ValueError(f"{folder} holds an encoder export (no logits); OnnxTextClassifier needs a classifier.")
        config = json.loads((folder / "config.json").read_text())
        config["pad_token_id"] = manifest.get("pad_token_id", config.get("pad_token_id"))
        max_length = max_length if max_length is not None else folder_max_length(folder)
        self.session = onnx_session(folder / ONNX_NAME, intra_op_num_threads)
        super().__init__(fast_backend(folder), config, max_length, batch_size, sort_by_length)

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def load_classifier(path: str | os.PathLike, device=None, **kwargs) -> _Classifier:
    """Predictor for any saved TextGRU classifier folder: `save_pretrained` (fp32), int8, ONNX or native int8 export.

    Args:
        path: The folder.
        device: Where a `save_pretrained` (fp32) model runs, e.g. `"cuda"` (default: the CPU). The int8 and ONNX
            exports run on the CPU only; any other device for them is an error.
        **kwargs: Passed to the predictor (`max_length`, `batch_size`, `sort_by_length`; `intra_op_num_threads`
            for ONNX; `kernel`, `table_max_bytes` for native int8).
    """
    from .export import INT8_FORMAT, MANIFEST_NAME, ONNX_FORMAT, load_quantized, read_manifest
    from .native_format import NATIVE_FORMAT, NativeTextClassifier

    folder = Path(path)
    if (folder / MANIFEST_NAME).is_file():
        fmt = read_manifest(folder, verify=False)["format"]
        if fmt not in (ONNX_FORMAT, INT8_FORMAT, NATIVE_FORMAT):
            raise ValueError(f"{folder}: unknown export format {fmt!r}.")
        if device is not None and _device_type(device) != "cpu":
            raise ValueError(
                f"{folder} is a {fmt} export, which runs on the CPU only; drop device={device!r}, or load the "
                "fp32 model folder (written by save_pretrained) to run on that device."
            )
        if fmt == ONNX_FORMAT:
            return OnnxTextClassifier(folder, **kwargs)
        if fmt == NATIVE_FORMAT:
            return NativeTextClassifier(folder, **kwargs)
        return TextClassifier(load_quantized(folder), _load_tokenizer(folder), **kwargs)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folder)
    if device is not None:
        model = model.to(device)
    return TextClassifier(model, _load_tokenizer(folder), **kwargs)


def _device_type(device) -> str:
    import torch

    return torch.device(device).type  # "cpu", "cpu:0", torch.device("cpu", 0) and 0 (CUDA) all read right


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


__all__ = ["TextClassifier", "OnnxTextClassifier", "load_classifier", "encode_texts", "fast_backend", "length_buckets"]
