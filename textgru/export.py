"""Fast inference formats for TextGRU models: dynamic int8 quantisation and ONNX (the native int8 format, textgru's
own kernels, is in `textgru.native_format` and shares this module's manifest).

Three formats here, each a folder that holds the fp32 `config.json`, the tokenizer and a `textgru_export.json` manifest
(format, format version, torch/textgru versions, file checksums):

- **int8** (`quantize_dynamic`, `save_quantized`, `load_quantized`): every `nn.GRU` and `nn.Linear` gets int8
  weights and dynamically quantised activations, the embedding table 8-bit weights
  (`torch.ao.quantization.quantize_dynamic`). About 4x smaller; faster than fp32 on batches of long documents
  (1.4-2.1x measured), not reliably on short sentences; logits close to, not equal to, fp32. A quantised model
  cannot go through `save_pretrained`, so its state dict is saved with `torch.save` and loaded back into a freshly
  quantised copy of the architecture rebuilt from the config.
- **onnx** (`export_onnx`): the legacy TorchScript exporter traces the model's packed path, which becomes one
  bidirectional ONNX `GRU` per layer with `sequence_lens` (each row stops at its own length, the backward
  direction starts at each row's last token: no reversal gathers), with dynamic batch and sequence axes. The
  export is checked against eager PyTorch on mixed-length batches of several sizes before anything is written.
  Run it with `textgru.inference.OnnxTextClassifier`, which runs on onnxruntime, tokenizers and numpy (no torch
  calls). This is the recommended fast path: exact (logits within ~1e-6), several times faster at batch size 1;
  see docs/benchmarks.md for the measured figures.
- **int8 ONNX** (`export_onnx(..., int8=True)`): the same export with each `GRU` op rewritten as an equivalent
  `Scan` over time (`textgru.onnx_graph`), then quantised by onnxruntime's dynamic quantisation, recurrent matmuls
  included (onnxruntime has no int8 `GRU` op). ~3.5x smaller; approximate (the manifest records the largest logit
  difference and the label agreement on the check batches); on length-sorted batches (what the predictors do) the
  fastest format, at batch size 1 slower than fp32 ONNX. Same `textgru-onnx` format: `OnnxTextClassifier` runs it.

`torch.ao.quantization` is deprecated (it still works in torch 2.13). int8 ONNX is its successor: when torch removes
it, the PyTorch int8 format goes; the manifest's `format` field lets a loader tell the formats apart. See
docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .configuration_textgru import TextGRUConfig
from .modeling_textgru import TextGRUForSequenceClassification, TextGRUModel

logger = logging.getLogger(__name__)

MANIFEST_NAME = "textgru_export.json"
QUANTIZED_WEIGHTS_NAME = "quantized_state_dict.pt"
ONNX_NAME = "model.onnx"
INT8_FORMAT = "textgru-int8-dynamic"
ONNX_FORMAT = "textgru-onnx"
FORMAT_VERSION = 1
INSTALL_HINT = 'pip install "textgru[export]"'
_ARCHITECTURES = {cls.__name__: cls for cls in (TextGRUForSequenceClassification, TextGRUModel)}
_deprecation_logged = False


class ExportFormatError(ValueError):
    """An export folder is missing, corrupt, of another format, or does not match its config."""


def require_onnxruntime():
    """Import onnxruntime, or raise an `ImportError` that says how to install it (it is an optional extra)."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"ONNX export and inference need onnx and onnxruntime: {INSTALL_HINT}") from err
    return onnxruntime


def onnx_session(path, intra_op_num_threads: int = 1, **options):
    """An onnxruntime CPU session for the ONNX file at `path`.

    Args:
        path: The `.onnx` file.
        intra_op_num_threads: Threads onnxruntime may use inside an operator (between operators it uses one).
        **options: Other `onnxruntime.SessionOptions` attributes to set (e.g. `enable_profiling=True`).
    """
    ort = require_onnxruntime()
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = intra_op_num_threads
    session_options.inter_op_num_threads = 1
    for name, value in options.items():
        setattr(session_options, name, value)
    return ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------------------------------------------------------
# Dynamic int8 quantisation
# ---------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    """Silence torch.ao's deprecation warnings (logged once instead: the plan is in the module docstring)."""
    global _deprecation_logged
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        yield
    if not _deprecation_logged:
        _deprecation_logged = True
        logger.info(
            "torch.ao.quantization.quantize_dynamic is deprecated in torch %s (still supported); textgru will move "
            "its int8 format to onnxruntime quantisation or torchao when torch removes it.",
            torch.__version__,
        )


def quantize_dynamic(model: nn.Module, embeddings: bool = True) -> nn.Module:
    """Return an int8 copy of `model` for CPU inference.

    `nn.GRU` and `nn.Linear` get int8 weights and activations quantised on the fly; with `embeddings`, the
    embedding table gets 8-bit weights too (per-row scales; it is most of a small model's size). The copy is in eval
    mode; the input model is untouched. Both of TextGRU's paths work on the result: packed (under `torch.no_grad`)
    and padded (with gradients enabled, or while tracing).

    Args:
        model: A TextGRU model (its GRUs are unidirectional `nn.GRU`s) on the CPU.
        embeddings: Also quantise `nn.Embedding` weights (8-bit, weight only).

    Returns:
        The quantised model (same class, same `config`).

    Example:

    >>> from textgru import TextGRUConfig, TextGRUForSequenceClassification
    >>> model = TextGRUForSequenceClassification(TextGRUConfig(vocab_size=100, hidden_size=16))
    >>> type(quantize_dynamic(model).textgru.layers[0].rnn.forward_gru).__module__
    'torch.ao.nn.quantized.dynamic.modules.rnn'
    """
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    if {p.device.type for p in model.parameters()} - {"cpu"}:
        raise ValueError("Dynamic quantisation runs on the CPU only; move the model first: `model.to('cpu')`.")
    spec = {nn.GRU: default_dynamic_qconfig, nn.Linear: default_dynamic_qconfig}
    if embeddings:
        spec[nn.Embedding] = float_qparams_weight_only_qconfig
    was_training = model.training
    model.eval()  # quantize_dynamic deep-copies the model in its current mode
    try:
        with _quiet_quantization():
            quantized = torch.ao.quantization.quantize_dynamic(model, spec)
    finally:
        model.train(was_training)
    left = [name for name, module in quantized.named_modules() if type(module) in spec]
    if left:
        raise RuntimeError(f"quantize_dynamic left these modules in fp32: {left}")
    return quantized


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def _staging_dir(output_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Write into a temporary sibling folder and move it into place only when everything succeeded."""
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{output_dir} already exists and is not empty; pass overwrite=True (--overwrite).")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the export should get normal folder permissions
    try:
        yield staging
        if output_dir.exists():
            shutil.rmtree(output_dir) if output_dir.is_dir() else output_dir.unlink()
        staging.rename(output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(folder: Path, fmt: str, files: Sequence[str], **extra) -> None:
    manifest = {
        "format": fmt,
        "format_version": FORMAT_VERSION,
        "textgru_version": __version__,
        "torch_version": torch.__version__,
        "files": {name: {"sha256": _sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in files},
        **extra,
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest(path: str | os.PathLike, expected_format: str | None = None, verify: bool = True) -> dict:
    """Read and check an export folder's `textgru_export.json`.

    Args:
        path: The export folder.
        expected_format: Raise unless the manifest's `format` is this (`INT8_FORMAT`, `ONNX_FORMAT`, `NATIVE_FORMAT`).
        verify: Check every listed file's size and SHA-256 (catches truncated or edited files).

    Returns:
        The manifest as a dict.
    """
    folder = Path(path)
    how = "create one with `textgru export MODEL_DIR OUTPUT_DIR --format onnx|onnx-int8|native-int8|int8`"
    if not (folder / MANIFEST_NAME).is_file():
        raise ExportFormatError(f"{folder} is not a textgru export folder (no {MANIFEST_NAME}); {how}.")
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
        fmt, version = manifest["format"], int(manifest["format_version"])
    except (ValueError, KeyError, TypeError) as err:
        raise ExportFormatError(
            f"{folder / MANIFEST_NAME} is unreadable ({err}); re-export the model ({how})."
        ) from err
    if expected_format is not None and fmt != expected_format:
        raise ExportFormatError(f"{folder} holds a {fmt!r} export, not {expected_format!r}.")
    if version > FORMAT_VERSION:
        raise ExportFormatError(
            f"{folder} uses export format version {version}; this textgru ({__version__}) reads up to "
            f"{FORMAT_VERSION}. Upgrade textgru."
        )
    if verify:
        for name, info in manifest.get("files", {}).items():
            file = folder / name
            if not file.is_file():
                raise ExportFormatError(f"{folder} is incomplete: {name} is missing; re-export the model ({how}).")
            if file.stat().st_size != info["bytes"] or _sha256(file) != info["sha256"]:
                raise ExportFormatError(
                    f"{file} is corrupt (size or checksum differs from {MANIFEST_NAME}); re-export the model ({how})."
                )
    return manifest


def _is_quantized(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized")


def save_quantized(model: nn.Module, output_dir: str | os.PathLike, tokenizer=None, overwrite: bool = False) -> Path:
    """Save a model returned by `quantize_dynamic` (plus its tokenizer) in a folder `load_quantized` reads.

    Args:
        model: The quantised TextGRU model (it must carry its fp32 `config`).
        output_dir: Folder to create. Written atomically: on failure nothing is left behind.
        tokenizer: Optional tokenizer to save alongside (`save_pretrained`).
        overwrite: Replace an existing non-empty `output_dir`.

    Returns:
        The output folder.
    """
    if not any(_is_quantized(m) for m in model.modules()):
        raise ValueError("save_quantized expects a model returned by textgru.export.quantize_dynamic.")
    if type(model).__name__ not in _ARCHITECTURES:
        raise ValueError(f"save_quantized supports {sorted(_ARCHITECTURES)}, not {type(model).__name__}.")
    with _staging_dir(output_dir, overwrite) as staging:
        model.config.architectures = [type(model).__name__]
        model.config.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        torch.save(model.state_dict(), staging / QUANTIZED_WEIGHTS_NAME)
        _write_manifest(
            staging,
            INT8_FORMAT,
            [QUANTIZED_WEIGHTS_NAME],
            quantized_modules=sorted({type(m).__name__ for m in model.modules() if _is_quantized(m)}),
            engine=torch.backends.quantized.engine,
        )
    logger.info("Saved the int8 model to %s.", output_dir)
    return Path(output_dir)


def load_quantized(path: str | os.PathLike) -> nn.Module:
    """Load an int8 TextGRU model written by `save_quantized` (CPU, eval mode).

    The fp32 architecture is rebuilt from `config.json`, quantised, and given the saved int8 state dict, which is
    read with `torch.load(weights_only=True)` (only tensors and torch's own packed-weight objects are accepted).

    Args:
        path: The folder `save_quantized` (or `textgru export --format int8`) wrote.

    Returns:
        The quantised model, ready for inference.
    """
    folder = Path(path)
    manifest = read_manifest(folder, INT8_FORMAT)
    if manifest.get("torch_version") != torch.__version__:
        logger.warning(
            "%s was quantised with torch %s; loading it with torch %s.",
            folder,
            manifest["torch_version"],
            torch.__version__,
        )
    try:
        config = TextGRUConfig.from_pretrained(folder)
    except (OSError, ValueError) as err:
        raise ExportFormatError(f"{folder}/config.json is missing or invalid ({err}); re-export the model.") from err
    architecture = (config.architectures or ["TextGRUForSequenceClassification"])[0]
    if architecture not in _ARCHITECTURES:
        raise ExportFormatError(
            f"{folder}: unknown architecture {architecture!r}; expected one of {sorted(_ARCHITECTURES)}."
        )
    embeddings = "Embedding" in manifest.get("quantized_modules", ["Embedding"])
    model = quantize_dynamic(_ARCHITECTURES[architecture](config), embeddings=embeddings)
    try:
        with torch.serialization.safe_globals([torch.ScriptObject]), warnings.catch_warnings():
            # ScriptObject: torch's packed int8 weights. Loading quantised tensors still goes through TypedStorage.
            warnings.filterwarnings("ignore", message=r".*TypedStorage is deprecated.*")
            state_dict = torch.load(folder / QUANTIZED_WEIGHTS_NAME, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict, strict=True)
    except Exception as err:  # a file that passed the checksum but does not fit the config
        raise ExportFormatError(
            f"{folder / QUANTIZED_WEIGHTS_NAME} does not match {folder}/config.json ({type(err).__name__}: "
            f"{str(err)[:300]}); re-export the model."
        ) from err
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------------------


class _OnnxWrapper(nn.Module):
    """Plain-tensor outputs for the exporter (a ModelOutput is a dict)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.classifier = isinstance(model, TextGRUForSequenceClassification)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return out.logits if self.classifier else (out.last_hidden_state, out.pooler_output)


def _example_batch(
    vocab_size: int, pad_id: int, lengths: Sequence[int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids (never the pad id) with the given lengths."""
    generator = torch.Generator().manual_seed(seed)
    width = max(max(lengths), 1)
    ids = torch.randint(0, vocab_size - 1, (len(lengths), width), generator=generator)
    ids = ids + (ids >= pad_id).long()  # skip the pad id
    mask = (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).long()
    return ids * mask + pad_id * (1 - mask), mask


# Check batches: mixed lengths (an empty row too) at several batch sizes, since the graph follows the traced branch.
_CHECK_LENGTHS = ([23, 1, 9, 16, 0, 5], [5], [3, 3, 3], [2, 31, 31, 1, 17, 8, 30, 4, 12, 19, 1])


@contextlib.contextmanager
def _packed_trace(model: nn.Module) -> Iterator[None]:
    """Make the encoder take its packed path while being traced (see `TextGRUModel.trace_packed`)."""
    encoder = model if isinstance(model, TextGRUModel) else model.textgru
    previous = encoder.trace_packed
    encoder.trace_packed = True
    try:
        yield
    finally:
        encoder.trace_packed = previous


class _CheckBatches:
    """The check batches with eager PyTorch's outputs on them, computed once for every graph checked against them."""

    def __init__(self, wrapper: _OnnxWrapper, batches: list[tuple[torch.Tensor, torch.Tensor]]):
        self.batches = batches
        with torch.no_grad():
            outputs = [wrapper(ids, mask) for ids, mask in batches]
        self.expected = [tuple(o.numpy() for o in (out if isinstance(out, tuple) else (out,))) for out in outputs]

    def run(self, session) -> list[list]:
        """The graph's outputs on every check batch."""
        return [session.run(None, {"input_ids": i.numpy(), "attention_mask": m.numpy()}) for i, m in self.batches]

    def max_abs_diff(self, got: list[list]) -> float:
        """Largest absolute difference between `got` (from `run`) and eager PyTorch, over all outputs and batches."""
        return max(
            float(abs(e - g).max()) if e.size else 0.0
            for expected, outputs in zip(self.expected, got)
            for e, g in zip(expected, outputs)
        )


def export_onnx(
    model: nn.Module,
    tokenizer,
    output_dir: str | os.PathLike,
    opset: int = 17,
    atol: float = 1e-4,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
    int8: bool = False,
    int8_atol: float = 0.25,
) -> Path:
    """Export a TextGRU model to ONNX (legacy TorchScript exporter), check it against eager PyTorch, save it.

    The traced graph is the model's packed path: one bidirectional ONNX `GRU` per layer, fed the rows' lengths as
    `sequence_lens`, with dynamic `batch` and `sequence` axes. It expects right-padded input (what textgru's
    tokenizers and `OnnxTextClassifier` produce): unlike eager TextGRU it does not move the tokens of a
    left-padded row to the front. Mixed-length batches of several sizes are compared with eager PyTorch before
    anything is written.

    With `int8=True` the graph is then quantised for onnxruntime: every `GRU` op is first rewritten as an
    equivalent `Scan` over time (`textgru.onnx_graph.gru_to_scan`; the rewrite is checked against eager PyTorch
    with `atol` too), then `onnxruntime.quantization.quantize_dynamic` gives every `MatMul`/`Gemm` (the recurrent
    ones inside the `Scan` included) int8 weights and dynamically quantised activations, and the embedding table
    8-bit weights. Faster on batches, smaller, approximate: the largest logit difference from eager PyTorch and
    the label agreement on the check batches are written to the manifest, and nothing is saved when the
    difference exceeds `int8_atol`.

    Args:
        model: A fp32 `TextGRUForSequenceClassification` (outputs `logits`) or `TextGRUModel` (outputs
            `last_hidden_state`, `pooler_output`).
        tokenizer: Its tokenizer (saved alongside; `OnnxTextClassifier` reads its `tokenizer.json`), or `None`.
        output_dir: Folder to create. Written atomically: nothing is left behind when the check fails.
        opset: ONNX opset version.
        atol: Largest absolute difference from eager PyTorch accepted on the check batches.
        check_texts: Extra texts to compare on (needs `tokenizer`).
        overwrite: Replace an existing non-empty `output_dir`.
        int8: Quantise the exported graph to int8 (see above).
        int8_atol: Largest absolute logit difference from eager PyTorch accepted for the int8 graph.

    Returns:
        The output folder.
    """
    require_onnxruntime()  # fail before any work, saying how to install it
    if type(model).__name__ not in _ARCHITECTURES:
        raise ValueError(f"export_onnx supports {sorted(_ARCHITECTURES)}, not {type(model).__name__}.")
    config = model.config
    was_training = model.training
    # The export traces and checks on the CPU. A model elsewhere (CUDA) is exported from a CPU copy, so the
    # caller's model stays where it is.
    on_cpu = all(t.device.type == "cpu" for t in itertools.chain(model.parameters(), model.buffers()))
    wrapper = _OnnxWrapper(model if on_cpu else copy.deepcopy(model).cpu()).eval()  # exporter restores its mode
    outputs = ["logits"] if wrapper.classifier else ["last_hidden_state", "pooler_output"]
    dynamic_axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    dynamic_axes.update(
        {name: {0: "batch", 1: "sequence"} if name == "last_hidden_state" else {0: "batch"} for name in outputs}
    )
    try:
        with _staging_dir(output_dir, overwrite) as staging:
            with warnings.catch_warnings():
                # Shape checks become trace-time constants (the branch is fixed by `trace_packed`), and the GRU's
                # initial state is built from the input's shape, so other batch sizes work (checked below).
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=r".*batch_size other than 1.*GRU.*")
                # The legacy exporter is deliberate: the dynamo exporter cannot trace the model's packed/padded branch.
                warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
                # the example is sorted by decreasing length: the traced packing does not sort (ONNX needs no sort)
                with _packed_trace(wrapper.model):
                    torch.onnx.export(
                        wrapper,
                        _example_batch(config.vocab_size, config.pad_token_id, [7, 4, 1], seed=0),
                        str(staging / ONNX_NAME),
                        dynamo=False,
                        opset_version=opset,
                        input_names=["input_ids", "attention_mask"],
                        output_names=outputs,
                        dynamic_axes=dynamic_axes,
                    )
            session = onnx_session(staging / ONNX_NAME)
            batches = [
                _example_batch(config.vocab_size, config.pad_token_id, lengths, seed=1 + i)
                for i, lengths in enumerate(_CHECK_LENGTHS)
            ]
            if check_texts:
                from .inference import encode_texts, fast_backend

                ids, mask = encode_texts(fast_backend(tokenizer), list(check_texts), pad_id=config.pad_token_id)
                batches.append((torch.from_numpy(ids), torch.from_numpy(mask)))
            checks = _CheckBatches(wrapper, batches)
            diff = checks.max_abs_diff(checks.run(session))
            if not diff <= atol:
                raise RuntimeError(
                    f"The ONNX export differs from eager PyTorch by {diff:.3g} > atol={atol}; not saved."
                )
            extra = {"gru": "bidirectional ONNX GRU per layer with sequence_lens (packed trace)"}
            if int8:
                extra = _quantize_onnx(staging / ONNX_NAME, checks, wrapper.classifier, atol, int8_atol)
                diff = extra.pop("max_abs_diff_vs_eager")
            config.architectures = [type(model).__name__]
            config.save_pretrained(staging)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            _write_manifest(
                staging,
                ONNX_FORMAT,
                [ONNX_NAME],
                opset=opset,
                inputs=["input_ids", "attention_mask"],
                outputs=outputs,
                pad_token_id=config.pad_token_id,
                padding_side="right",
                max_abs_diff_vs_eager=diff,
                **extra,
            )
    finally:
        model.train(was_training)
    logger.info("Exported %sONNX to %s (max |onnx - eager| = %.2g).", "int8 " if int8 else "", output_dir, diff)
    return Path(output_dir)


def _quantize_onnx(path: Path, checks: _CheckBatches, classifier: bool, atol: float, int8_atol: float) -> dict:
    """Rewrite the GRUs of the ONNX graph at `path` as Scans, check, quantise to int8 in place, check again.

    Returns the manifest fields: how the GRUs run, the quantisation, the int8 graph's largest logit difference from
    eager PyTorch and its label agreement on the check batches.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .onnx_graph import gru_to_scan

    scan_path = path.with_name("model.scan.onnx")
    onnx.save(gru_to_scan(onnx.load(str(path))), str(scan_path))
    diff = checks.max_abs_diff(checks.run(onnx_session(scan_path)))
    if not diff <= atol:
        raise RuntimeError(
            f"The GRU-to-Scan rewrite differs from eager PyTorch by {diff:.3g} > atol={atol}; not saved."
        )
    previous = logging.root.manager.disable
    # the quantiser logs a line per tensor (INFO) and generic advice (WARNING) on the root logger; the result is
    # checked below instead
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            str(scan_path), str(path), weight_type=QuantType.QInt8, extra_options={"EnableSubgraph": True}
        )
    finally:
        logging.disable(previous)
    scan_path.unlink()
    got = checks.run(onnx_session(path))
    int8_diff = checks.max_abs_diff(got)
    if not int8_diff <= int8_atol:
        raise RuntimeError(
            f"The int8 ONNX graph differs from eager PyTorch by {int8_diff:.3g} > int8_atol={int8_atol}; not saved. "
            "Export without int8, or pass a larger int8_atol if this error is acceptable for your use."
        )
    agreement = None
    if classifier:  # logits are the one output
        labels = [(e[0].argmax(-1), g[0].argmax(-1)) for e, g in zip(checks.expected, got)]
        agreement = sum(int((e == g).sum()) for e, g in labels) / sum(len(e) for e, _ in labels)
    return {
        "gru": "Scan over time per layer (both directions; int8 MatMuls), rewritten from the bidirectional GRU op",
        "quantization": "onnxruntime dynamic int8 (QInt8 weights; MatMul/Gemm, embeddings; Scan bodies included)",
        "max_abs_diff_fp32_rewrite_vs_eager": diff,
        "max_abs_diff_vs_eager": int8_diff,
        "check_label_agreement": agreement,
    }


__all__ = [
    "ExportFormatError",
    "quantize_dynamic",
    "save_quantized",
    "load_quantized",
    "export_onnx",
    "read_manifest",
    "require_onnxruntime",
    "onnx_session",
    "MANIFEST_NAME",
    "INT8_FORMAT",
    "ONNX_FORMAT",
]
