"""The `textgru` command line. One sub-command per task; `textgru --help` lists them.

    textgru export MODEL_DIR OUTPUT_DIR --format onnx|onnx-int8|native-int8|int8 [--check-text "..."]

A new sub-command is a function `_add_<name>(subparsers)` that registers its parser and sets `func`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .kernels import KernelUnavailableError

logger = logging.getLogger("textgru.cli")


def _export(args: argparse.Namespace) -> int:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from .export import export_onnx, quantize_dynamic, save_quantized
    from .inference import TextClassifier, load_classifier
    from .native_format import export_native

    try:
        model = AutoModelForSequenceClassification.from_pretrained(args.model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"Could not load a model and tokenizer from {args.model_dir} ({err}). Pass a folder written by "
            "`model.save_pretrained(...)` and `tokenizer.save_pretrained(...)` (e.g. a recipe's output folder)."
        ) from err
    if args.format == "int8":
        save_quantized(quantize_dynamic(model), args.output_dir, tokenizer=tokenizer, overwrite=args.overwrite)
    elif args.format == "native-int8":
        export_native(model, tokenizer, args.output_dir, check_texts=args.check_text, overwrite=args.overwrite)
    else:
        export_onnx(
            model,
            tokenizer,
            args.output_dir,
            opset=args.opset,
            check_texts=args.check_text,
            overwrite=args.overwrite,
            int8=args.format == "onnx-int8",
        )
    print(f"Wrote a {args.format} export of {args.model_dir} to {args.output_dir}")
    if args.check_text:
        reference = TextClassifier(model, tokenizer).classify(args.check_text)
        exported = load_classifier(args.output_dir).classify(args.check_text)
        for text, ref, got in zip(args.check_text, reference, exported):
            print(
                f"  {text!r}: fp32 {ref['label']} ({ref['score']:.3f}) | "
                f"{args.format} {got['label']} ({got['score']:.3f})"
            )
    return 0


def _add_export(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="Export a trained model for fast CPU inference (ONNX, int8 ONNX, native int8 or int8 PyTorch).",
        description=(
            "Export a saved TextGRU classifier to a fast inference format. "
            "native-int8 (the fastest on a CPU with AVX512-VNNI; needs a C compiler): textgru's own fused int8 GRU "
            "kernels, compiled at first use for this CPU, run on numpy: 2.5-3x eager PyTorch on batches there, "
            "~4.5x at batch size 1, approximate (checked against PyTorch before saving); on other CPUs measure "
            "before choosing. "
            "onnx (exact, no compiler needed): ONNX graph for onnxruntime, one fused bidirectional GRU op per layer "
            "that stops each text at its own length; checked against PyTorch before saving, several times faster "
            'than eager PyTorch at batch size 1, somewhat faster on batches; needs pip install "textgru[export]". '
            "onnx-int8: the ONNX graph with its GRUs rewritten as Scans and quantised to int8 by onnxruntime: ~3.5x "
            "smaller, approximate (label agreement written to the manifest), slower than onnx at batch size 1. "
            "int8: PyTorch dynamic quantisation (torch.ao, deprecated upstream; GRU, Linear and embedding weights in "
            "8 bits: ~4x smaller, approximate). See docs/benchmarks.md for measured figures."
        ),
    )
    parser.add_argument("model_dir", help="Folder written by save_pretrained (model and tokenizer).")
    parser.add_argument("output_dir", help="Folder to create.")
    parser.add_argument(
        "--format", choices=["onnx", "onnx-int8", "native-int8", "int8"], required=True, help="Export format."
    )
    parser.add_argument(
        "--check-text",
        action="append",
        metavar="TEXT",
        help="A text to classify with the original and the exported model (repeatable).",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (onnx and onnx-int8; default 17).")
    parser.add_argument("--overwrite", action="store_true", help="Replace OUTPUT_DIR if it exists.")
    parser.set_defaults(func=_export)


def build_parser() -> argparse.ArgumentParser:
    """The `textgru` argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(prog="textgru", description="TextGRU: deep residual GRU text classifiers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="Log at DEBUG level.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_export(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `textgru` command line; returns the exit status (errors a user can fix give 2, no traceback).

    Args:
        argv: Arguments without the program name (default: `sys.argv[1:]`).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except (ValueError, FileExistsError, FileNotFoundError, ImportError, KernelUnavailableError) as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
