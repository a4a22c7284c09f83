"""The native int8 folder format: `export_native` writes it, `load_native` and `NativeTextClassifier` read it.

A folder with the fp32 `config.json`, the tokenizer, `native_int8.npz` (int8 weights with their scales, layer 0's
weights in fp32 for its table, fp16 embeddings) and the `textgru_export.json` manifest of `textgru.export`
(checksums); `load_classifier` and `textgru export --format native-int8` use it. It is approximate like every int8
format: `export_native` checks the logits against eager PyTorch before saving and records the largest difference,
the label agreement and the kernels' instruction set in the manifest. The model itself: `textgru.native`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import kernels
from .inference import _Classifier, fast_backend, folder_max_length
from .native import NativeInt8Model, state_arrays

logger = logging.getLogger(__name__)

NATIVE_FORMAT = "textgru-native-int8"
NATIVE_WEIGHTS_NAME = "native_int8.npz"


def _check_batches(model, tokenizer, check_texts) -> list[tuple[np.ndarray, np.ndarray]]:
    from .export import _CHECK_LENGTHS, _example_batch

    config = model.config
    batches = [
        tuple(t.numpy() for t in _example_batch(config.vocab_size, config.pad_token_id or 0, lengths, seed))
        for seed, lengths in enumerate(_CHECK_LENGTHS)
    ]
    if check_texts:
        if tokenizer is None:
            raise ValueError("check_texts needs the tokenizer.")
        encoded = tokenizer(list(check_texts), padding=True, return_tensors="np")
        batches.append((encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)))
    return batches


def export_native(
    model,
    tokenizer,
    output_dir: str | os.PathLike,
    check_texts: Sequence[str] | None = None,
    overwrite: bool = False,
    atol: float = 0.25,
) -> Path:
    """Quantise a `TextGRUForSequenceClassification` for the native int8 kernels, check it, save the folder.

    The int8 model is run against eager PyTorch on mixed-length random batches (an empty row among them) and on
    `check_texts`; the largest logit difference and the label agreement go to the manifest, and nothing is written
    when the difference exceeds `atol`. Compiles the kernels if this machine has not yet (needs a C compiler).

    Args:
        model: The fp32 classifier (any device; it is read, not changed).
        tokenizer: Its tokenizer, saved alongside (needed by `load_classifier`).
        output_dir: Folder to create. Written atomically: nothing is left behind on failure.
        check_texts: Extra texts to compare on.
        overwrite: Replace an existing non-empty `output_dir`.
        atol: Largest absolute logit difference from eager PyTorch accepted on the check batches.

    Returns:
        The output folder.

    >>> export_native(model, tokenizer, "outputs/sst2-native")  # doctest: +SKIP
    >>> load_classifier("outputs/sst2-native")(["a gripping film"])  # doctest: +SKIP
    """
    import torch

    from .export import _staging_dir, _write_manifest

    arrays = state_arrays(model)
    native = NativeInt8Model(model.config.to_dict(), arrays)
    device = next(model.parameters()).device
    diffs, agree, total = [], 0, 0
    was_training = model.training
    model.eval()
    try:
        for ids, mask in _check_batches(model, tokenizer, check_texts):
            with torch.no_grad():
                ref = model(
                    input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
                )
            ref = ref.logits.float().cpu().numpy()
            got = native(ids, mask)
            diffs.append(float(np.abs(ref - got).max()) if ref.size else 0.0)
            agree, total = agree + int((ref.argmax(-1) == got.argmax(-1)).sum()), total + len(ref)
    finally:
        model.train(was_training)
    max_diff = max(diffs)
    if not np.isfinite(max_diff) or max_diff > atol:
        raise ValueError(
            f"The native int8 model's logits differ from eager PyTorch by up to {max_diff:.4g} (atol={atol}); "
            "nothing was written. Use the exact onnx format, or pass a larger atol if that is acceptable."
        )
    with _staging_dir(output_dir, overwrite) as staging:
        config = model.config.to_dict()
        config["architectures"] = [type(model).__name__]
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        np.savez(staging / NATIVE_WEIGHTS_NAME, **arrays)
        _write_manifest(
            staging,
            NATIVE_FORMAT,
            [NATIVE_WEIGHTS_NAME, "config.json"],  # the config decides how the weights are used: checksummed too
            max_abs_diff=max_diff,
            label_agreement=agree / max(total, 1),
            kernel_isa=kernels.ISA_NAMES[native.lib.textgru_kernel_isa()],
        )
    logger.info("Saved the native int8 model to %s (largest logit difference %.3g).", output_dir, max_diff)
    return Path(output_dir)


def load_native(path: str | os.PathLike, **kwargs) -> NativeInt8Model:
    """Load the model of a folder written by `export_native` (`textgru export ... --format native-int8`).

    Args:
        path: The folder.
        **kwargs: Passed to `NativeInt8Model` (`kernel`, `table_max_bytes`).
    """
    from .export import ExportFormatError, read_manifest

    folder = Path(path)
    read_manifest(folder, NATIVE_FORMAT)  # checksums: a truncated or edited file is refused here
    try:
        config = json.loads((folder / "config.json").read_text())
        with np.load(folder / NATIVE_WEIGHTS_NAME, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        return NativeInt8Model(config, arrays, **kwargs)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExportFormatError(f"{folder} does not hold a usable native int8 model ({err}); re-export it.") from err


class NativeTextClassifier(_Classifier):
    """Predictor for a folder written by `export_native`: tokenizers, numpy and textgru's int8 kernels (CPU).

    Args:
        path: The export folder.
        max_length: Truncate texts to this many tokens. Default: `model_max_length` from tokenizer_config.json.
        batch_size: Default texts per forward pass.
        sort_by_length: Default for `predict`: batch texts in order of token length, results in input order. The
            kernels skip padding whatever the batch, but rows of similar lengths keep each step's product full.
        **kwargs: Passed to `load_native` (`kernel`, `table_max_bytes`).
    """

    bucket_costs = None  # the kernels never compute padding, so splitting a batch gains nothing

    def __init__(
        self,
        path: str | os.PathLike,
        max_length: int | None = None,
        batch_size: int = 32,
        sort_by_length: bool = True,
        **kwargs,
    ):
        folder = Path(path)
        self.model = load_native(folder, **kwargs)
        max_length = max_length if max_length is not None else folder_max_length(folder)
        super().__init__(fast_backend(folder), self.model.config, max_length, batch_size, sort_by_length)

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.model(ids, mask)


__all__ = ["NATIVE_FORMAT", "NativeTextClassifier", "export_native", "load_native"]
