"""Probe: other ways to run the batched fast path than textgru's int8 ONNX export. (Not part of the library.)

Issue 4 asks for a fast path at 2x eager TextGRU on batches of 64 SST-2 sentences. textgru's int8 ONNX export
(every GRU rewritten as a `Scan`, all matmuls int8) measures 1.3-1.8x (docs/benchmarks.md). This script times, on the
same texts, in one process, interleaved, each predictor's `predict` (tokenisation included, length-sorted batches of
`--batch`):

- `eager`, `onnx`, `onnx-int8`: what textgru ships (fp32 PyTorch; `export_onnx`; `export_onnx(int8=True)`);
- `onnx-int8-layerN-fp32`: the int8 export with layer N's GRU left as onnxruntime's fused fp32 `GRU` op (the
  other layers rewritten and int8): does the fused fp32 kernel beat the int8 `Scan` on any layer?
- `openvino`, `openvino-dynquant` (when `pip install openvino` has been run): the fp32 ONNX export compiled by
  OpenVINO's CPU plugin (oneDNN), plain and with its dynamic activation quantisation hint;
- `openvino-nncf-int8` (when `nncf` is installed too): OpenVINO after NNCF's post-training int8 quantisation,
  calibrated on `--calibration` SST-2 training sentences.

For OpenVINO it also records which kernel ran each `GRUSequence` (`exec_type` from its performance counters) and
for every predictor the largest logit difference from eager and the label agreement on the timed texts.
Random weights (speed does not depend on them), the SST-2 tokenizer and sentences (`../shared/data`, or generated
texts when absent).

    export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
    pip install openvino nncf   # optional: without them the OpenVINO rows are reported as not installed
    python benchmarks/probe_runtimes.py [--json benchmarks/results/probe_runtimes.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from _data import default_textgru_on_sst2, sst2_train  # noqa: E402  (benchmarks/ is on the path from here on)
from _report import write_json  # noqa: E402
from _timing import time_batched  # noqa: E402

from textgru.export import ONNX_NAME, _write_manifest, export_onnx, read_manifest  # noqa: E402
from textgru.inference import OnnxTextClassifier, TextClassifier  # noqa: E402

PROBE_DOMAIN = "textgru.probe"  # a GRU node renamed into this domain is skipped by gru_to_scan, then restored
KEPT_GRU = "KeptGRU"
# fields `_write_manifest` fills itself
_MANIFEST_OWN_FIELDS = ("format", "format_version", "textgru_version", "torch_version", "files")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--texts", type=int, default=256, help="SST-2 test sentences timed (default 256)")
    p.add_argument("--batch", type=int, default=64, help="texts per forward pass (default 64)")
    p.add_argument("--calibration", type=int, default=512, help="SST-2 train sentences for NNCF's calibration")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds; each predictor's median is reported")
    p.add_argument("--seconds", type=float, default=1.0, help="minimum seconds of a round (median pass)")
    p.add_argument("--quick", action="store_true", help="small tokenizer, for the smoke test")
    p.add_argument("--json", type=Path, help="also write the report here")
    return p.parse_args(argv)


def _rewrite_manifest(folder: Path) -> None:
    """Re-sign the copied manifest for the rewritten model.onnx (export's own writer: checksums, versions)."""
    manifest = read_manifest(folder, verify=False)
    extra = {k: v for k, v in manifest.items() if k not in _MANIFEST_OWN_FIELDS}
    extra["gru"] = "probe: one layer's GRU op kept in fp32, the others int8 Scans"
    _write_manifest(folder, manifest["format"], list(manifest["files"]), **extra)


def int8_with_fp32_layer(fp32_dir: Path, int8_dir: Path, layer: int, out: Path) -> Path:
    """A copy of the int8 export in which layer `layer`'s GRU stays onnxruntime's fused fp32 `GRU` op."""
    import shutil

    import onnx
    from onnx import helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from textgru.onnx_graph import gru_to_scan

    model = onnx.load(str(fp32_dir / ONNX_NAME))
    grus = [node for node in model.graph.node if node.op_type == "GRU"]
    grus[layer].op_type, grus[layer].domain = KEPT_GRU, PROBE_DOMAIN  # not a GRU to gru_to_scan: left alone
    model.opset_import.append(helper.make_opsetid(PROBE_DOMAIN, 1))
    rewritten = gru_to_scan(model)
    for node in rewritten.graph.node:
        if node.domain == PROBE_DOMAIN:
            node.op_type, node.domain = "GRU", ""
    del rewritten.opset_import[[o.domain for o in rewritten.opset_import].index(PROBE_DOMAIN)]
    shutil.copytree(int8_dir, out)
    scan_path = out / "model.scan.onnx"
    onnx.save(rewritten, str(scan_path))
    logging.disable(logging.WARNING)  # the quantiser logs a line per tensor
    try:
        quantize_dynamic(
            str(scan_path), str(out / ONNX_NAME), weight_type=QuantType.QInt8, extra_options={"EnableSubgraph": True}
        )
    finally:
        logging.disable(logging.NOTSET)
    scan_path.unlink()
    _rewrite_manifest(out)
    return out


class OpenVinoClassifier(OnnxTextClassifier):
    """textgru's ONNX predictor (same tokenisation, sorting, buckets) with the graph compiled by OpenVINO."""

    def __init__(self, folder: Path, ov_model, config: dict, **kwargs):
        import openvino as ov

        super().__init__(folder, **kwargs)
        settings = {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True, **config}
        self.compiled = ov.Core().compile_model(ov_model, "CPU", settings)
        self.request = self.compiled.create_infer_request()

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        result = self.request.infer({"input_ids": ids, "attention_mask": mask})
        return result[self.compiled.output(0)].copy()

    def gru_kernels(self) -> list[str]:
        return sorted({p.exec_type for p in self.request.get_profiling_info() if p.node_type == "GRUSequence"})


def openvino_predictors(fp32_dir: Path, calibration: list[str], batch: int) -> tuple[dict, dict]:
    """(predictors, notes): the OpenVINO variants that the installed packages allow."""
    if importlib.util.find_spec("openvino") is None:
        return {}, {"openvino": "not installed (pip install openvino)"}
    import openvino as ov

    from textgru.inference import _encode, _pad

    model = ov.Core().read_model(str(fp32_dir / ONNX_NAME))
    predictors = {
        "openvino": OpenVinoClassifier(fp32_dir, model, {}, batch_size=batch),
        "openvino-dynquant": OpenVinoClassifier(
            fp32_dir, model, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 32}, batch_size=batch
        ),
    }
    notes = {"openvino_version": ov.get_version()}
    if importlib.util.find_spec("nncf") is None:
        notes["nncf"] = "not installed (pip install nncf)"
        return predictors, notes
    import nncf

    backend = predictors["openvino"].backend
    encodings = _encode(backend, calibration)
    batches = []
    for start in range(0, len(encodings), batch):
        ids, mask = _pad(encodings[start : start + batch], 0)
        batches.append({"input_ids": ids, "attention_mask": mask})
    quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))
    predictors["openvino-nncf-int8"] = OpenVinoClassifier(fp32_dir, quantized, {}, batch_size=batch)
    notes["nncf_version"] = nncf.__version__
    return predictors, notes


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(0)
    model, tokenizer, texts, source = default_textgru_on_sst2(args.data_dir, args.texts, 0, args.quick)
    work = Path(tempfile.mkdtemp(prefix="textgru-probe-runtimes-"))
    export_onnx(model, tokenizer, work / "onnx", overwrite=True)
    export_onnx(model, tokenizer, work / "onnx-int8", overwrite=True, int8=True)
    predictors = {
        "eager": TextClassifier(model, tokenizer, batch_size=args.batch),
        "onnx": OnnxTextClassifier(work / "onnx", batch_size=args.batch),
        "onnx-int8": OnnxTextClassifier(work / "onnx-int8", batch_size=args.batch),
    }
    for layer in range(model.config.num_hidden_layers):
        folder = int8_with_fp32_layer(work / "onnx", work / "onnx-int8", layer, work / f"mixed{layer}")
        predictors[f"onnx-int8-layer{layer}-fp32"] = OnnxTextClassifier(folder, batch_size=args.batch)
    calibration = sst2_train(args.data_dir, 1)[0][: args.calibration]
    more, notes = openvino_predictors(work / "onnx", calibration, args.batch)
    predictors.update(more)

    reference = predictors["eager"].predict(texts)
    report = {
        "texts": len(texts),
        "source": source,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "notes": notes,
        "predictors": {},
    }
    for name, predictor in predictors.items():
        logits = predictor.predict(texts)
        report["predictors"][name] = {
            "max_abs_diff_vs_eager": float(np.abs(logits - reference).max()),
            "label_agreement_vs_eager": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
            "texts_per_s": [],
        }
        if isinstance(predictor, OpenVinoClassifier):
            report["predictors"][name]["gru_sequence_kernels"] = predictor.gru_kernels()
    names = list(predictors)
    for repeat in range(args.repeats):  # interleaved, rotating who goes first
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            # one predict() call over all texts: the predictor batches (and length-sorts) them itself
            rate = time_batched(predictors[name], texts, len(texts), args.seconds)
            report["predictors"][name]["texts_per_s"].append(rate)
    eager = statistics.median(report["predictors"]["eager"]["texts_per_s"])
    print(
        f"{len(texts)} texts ({source}), batches of {args.batch}, length-sorted, 1 thread; medians of "
        f"{args.repeats} interleaved rounds"
    )
    for name, row in report["predictors"].items():
        row["texts_per_s_median"] = statistics.median(row["texts_per_s"])
        row["vs_eager"] = row["texts_per_s_median"] / eager
        kernels = f"  GRUSequence: {', '.join(row['gru_sequence_kernels'])}" if "gru_sequence_kernels" in row else ""
        print(
            f"{name:24s} {row['texts_per_s_median']:8.0f} texts/s  {row['vs_eager']:5.2f}x eager  "
            f"max |diff| {row['max_abs_diff_vs_eager']:.2g}  agreement {row['label_agreement_vs_eager']:.4f}"
            f"{kernels}"
        )
    for key, value in notes.items():
        print(f"{key}: {value}")
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
