"""Export fidelity of the fast formats: label agreement and logit differences vs eager fp32 on real test sets.

Exports a trained classifier folder (model + tokenizer, e.g. a recipe's output) to ONNX, int8 ONNX, native int8 and
int8, classifies the full SST-2 test set and a seeded sample of IMDB test reviews (truncated at `--max-tokens`) with
each, and reports, per format and data set, the share of texts whose label matches eager fp32 and the largest
|logit difference|. This measures fidelity, not accuracy, so a model trained on SST-2 may be used on IMDB reviews too.

    python benchmarks/agreement.py outputs/sst2 --n-imdb 1000 --out benchmarks/results/agreement.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("benchmarks.agreement")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path, help="Folder written by save_pretrained (model and tokenizer).")
    p.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data", help="Parquet data sets.")
    p.add_argument("--n-imdb", type=int, default=1000, help="IMDB test reviews (seeded sample; default 1000).")
    p.add_argument("--max-tokens", type=int, default=512, help="Truncate texts at this many tokens (default 512).")
    p.add_argument("--batch-size", type=int, default=64)
    formats = ["onnx", "onnx-int8", "native-int8", "int8"]
    p.add_argument("--formats", nargs="+", default=formats, choices=formats)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="Write the results as JSON here.")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    """Run the comparison; returns {format: {dataset: {agreement, max_abs_logit_diff, texts}}}."""
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    import numpy as np
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textgru.export import export_onnx, quantize_dynamic, save_quantized
    from textgru.inference import TextClassifier, load_classifier
    from textgru.native_format import export_native

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    model = AutoModelForSequenceClassification.from_pretrained(args.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    sst2 = pd.read_parquet(args.data_dir / "sst2" / "test.parquet", columns=["text"]).text.tolist()
    imdb = pd.read_parquet(args.data_dir / "imdb" / "test.parquet", columns=["text"])
    imdb = imdb.sample(n=min(args.n_imdb, len(imdb)), random_state=args.seed).text.tolist()  # files sorted by label
    data = {"sst2_test": sst2, "imdb_test": imdb}
    eager = TextClassifier(model, tokenizer, max_length=args.max_tokens, batch_size=args.batch_size)
    reference = {name: eager.predict(texts) for name, texts in data.items()}
    results = {"model_dir": str(args.model_dir), "max_tokens": args.max_tokens, "formats": {}}
    with tempfile.TemporaryDirectory() as work:
        for fmt in args.formats:
            folder = Path(work) / fmt
            if fmt in ("onnx", "onnx-int8"):
                export_onnx(model, tokenizer, folder, int8=fmt == "onnx-int8")
            elif fmt == "native-int8":
                export_native(model, tokenizer, folder)
            else:
                save_quantized(quantize_dynamic(model), folder, tokenizer=tokenizer)
            classifier = load_classifier(folder, max_length=args.max_tokens, batch_size=args.batch_size)
            results["formats"][fmt] = {}
            for name, texts in data.items():
                start = time.perf_counter()
                logits = classifier.predict(texts)
                ref = reference[name]
                results["formats"][fmt][name] = {
                    "texts": len(texts),
                    "agreement": float((logits.argmax(-1) == ref.argmax(-1)).mean()),
                    "max_abs_logit_diff": float(np.abs(logits - ref).max()),
                    "seconds": time.perf_counter() - start,
                }
                logger.info("%s %s: %s", fmt, name, results["formats"][fmt][name])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    sys.exit(print(json.dumps(main()["formats"], indent=2)))
