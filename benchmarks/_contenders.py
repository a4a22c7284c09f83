"""The contenders of benchmarks/speed.py: each turns raw texts into class scores, end to end.

Every contender has the same life cycle, so the main process and the memory probe (a fresh subprocess per
contender) measure exactly the same thing:

- `build(ctx, folder)`: create / fit the model (neural models keep random weights: this is a speed benchmark) and
  save everything needed at inference time into `folder` (its size is the "size on disk");
- `load(folder, threads)`: read it back and return a predictor whose `predict(texts)` returns scores.

Timed work always starts from raw strings, so tokenisation is included for every contender. All neural
contenders share one tokenizer (trained on the train split) and truncate at `ctx.max_tokens` tokens.
Heavy libraries are imported inside the functions: the memory probe imports only what its contender needs
(`IMPORTS`, loaded before its baseline reading, so "model memory" excludes the libraries themselves).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TOKENIZER_DIR = "tokenizer"


@dataclass
class Context:
    """What `build` may use: the shared tokenizer and a fitting corpus (texts and binary labels)."""

    work_dir: Path
    fit_texts: list[str]
    fit_labels: list[int]
    max_tokens: int = 512
    threads: int = 1
    quick: bool = False
    seed: int = 0
    cache: dict = field(default_factory=dict)  # e.g. the fp32 textgru model, reused by the int8 / onnx builds

    @property
    def tokenizer(self):
        """The shared `PreTrainedTokenizerFast`, saved under `work_dir/tokenizer`."""
        if "tokenizer" not in self.cache:
            from transformers import AutoTokenizer

            self.cache["tokenizer"] = AutoTokenizer.from_pretrained(self.work_dir / TOKENIZER_DIR)
        return self.cache["tokenizer"]


class _Predictor:
    """A contender's predictor made from one function: raw texts -> class scores."""

    def __init__(self, predict):
        self.predict = predict


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class _TokenizedTorch:
    """Predictor for a torch module fed with right-padded `input_ids` (+ `attention_mask` when it takes one)."""

    def __init__(self, model, folder: Path, pad_id: int, max_tokens: int, use_mask: bool):
        import torch

        from textgru.inference import fast_backend

        self.torch, self.model, self.pad_id, self.use_mask = torch, model.eval(), pad_id, use_mask
        self.backend = fast_backend(folder)
        self.backend.enable_truncation(max_tokens)

    def predict(self, texts):
        from textgru.inference import encode_texts

        ids, mask = encode_texts(self.backend, texts, self.pad_id)
        with self.torch.no_grad():
            if self.use_mask:
                out = self.model(input_ids=self.torch.from_numpy(ids), attention_mask=self.torch.from_numpy(mask))
            else:
                out = self.model(self.torch.from_numpy(ids))
        return getattr(out, "logits", out).numpy()


# ---------------------------------------------------------------------------------------------------------------
# textgru: eager fp32, int8, ONNX, native int8
# ---------------------------------------------------------------------------------------------------------------


def _textgru_fp32(ctx: Context):
    if "textgru" not in ctx.cache:
        import torch

        from textgru import TextGRUConfig, TextGRUForSequenceClassification

        torch.manual_seed(ctx.seed)
        tok = ctx.tokenizer
        config = TextGRUConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, num_labels=2)  # default size
        ctx.cache["textgru"] = TextGRUForSequenceClassification(config).eval()
    return ctx.cache["textgru"]


_TEXTGRU_IMPORTS = ("torch", "transformers", "textgru.inference", "textgru.export")
# textgru's predictors split a call into batches of `batch_size` texts (default 32); the harness's calls are its
# batches, so the predictors get a batch size no call reaches
ONE_BATCH = 1 << 20


class TextGRUEager:
    name = "textgru"
    IMPORTS = _TEXTGRU_IMPORTS
    description = "TextGRU, default TextGRUConfig (2 residual BiGRU layers, hidden 128/direction), eager fp32"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        _textgru_fp32(ctx).save_pretrained(folder)
        ctx.tokenizer.save_pretrained(folder)

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        from textgru.inference import load_classifier

        # one call's texts are one batch (as for every other contender), run as textgru's predictor runs a batch
        return load_classifier(folder, max_length=max_tokens, batch_size=ONE_BATCH)


class TextGRUInt8:
    name = "textgru-int8"
    IMPORTS = _TEXTGRU_IMPORTS
    description = "the same TextGRU after dynamic int8 quantisation (textgru.export.quantize_dynamic)"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        from textgru.export import quantize_dynamic, save_quantized

        save_quantized(quantize_dynamic(_textgru_fp32(ctx)), folder, tokenizer=ctx.tokenizer, overwrite=True)

    load = TextGRUEager.load


class TextGRUOnnx:
    name = "textgru-onnx"
    IMPORTS = (*_TEXTGRU_IMPORTS, "onnxruntime")
    description = "the same TextGRU exported to ONNX, run by onnxruntime (CPUExecutionProvider)"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        from textgru.export import export_onnx

        export_onnx(_textgru_fp32(ctx), ctx.tokenizer, folder, overwrite=True)

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        from textgru.inference import OnnxTextClassifier

        return OnnxTextClassifier(folder, intra_op_num_threads=threads, max_length=max_tokens, batch_size=ONE_BATCH)


class TextGRUOnnxInt8:
    name = "textgru-onnx-int8"
    IMPORTS = (*_TEXTGRU_IMPORTS, "onnxruntime")
    description = (
        "the same ONNX export with its GRUs rewritten as Scans and quantised to int8 by onnxruntime "
        "(export_onnx(..., int8=True))"
    )

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        from textgru.export import export_onnx

        export_onnx(_textgru_fp32(ctx), ctx.tokenizer, folder, overwrite=True, int8=True)

    load = TextGRUOnnx.load


class TextGRUNativeInt8:
    name = "textgru-native-int8"
    IMPORTS = (*_TEXTGRU_IMPORTS, "textgru.native_format")
    description = (
        "the same TextGRU run by textgru's fused int8 GRU kernels on numpy (textgru.native_format.export_native; "
        "compiled at first use)"
    )

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        from textgru.native_format import export_native

        export_native(_textgru_fp32(ctx), ctx.tokenizer, folder, overwrite=True)

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        from textgru.native_format import NativeTextClassifier

        return NativeTextClassifier(folder, max_length=max_tokens, batch_size=ONE_BATCH)


# ---------------------------------------------------------------------------------------------------------------
# The tutorial BiGRU and DistilBERT
# ---------------------------------------------------------------------------------------------------------------


def tutorial_bigru(vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int, pad_id: int, num_labels=2):
    """A BiGRU classifier written the way tutorials do: padded batches straight into a bidirectional `nn.GRU`
    (no packing, so the backward direction reads the padding first), max-pool over time including padding."""
    import torch
    from torch import nn

    class TutorialBiGRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
            self.gru = nn.GRU(embedding_dim, hidden_size, num_layers, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(2 * hidden_size, num_labels)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            states, _ = self.gru(self.embedding(input_ids))  # (batch, seq_len, 2 * hidden)
            return self.fc(states.max(dim=1).values)

    return TutorialBiGRU()


class PlainBiGRU:
    name = "plain-bigru"
    IMPORTS = ("torch", "textgru.inference")
    description = (
        "tutorial PyTorch BiGRU: Embedding(128) + nn.GRU(bidirectional, 1 layer, hidden 256), padded, max-pool"
    )
    HPARAMS = {"embedding_dim": 128, "hidden_size": 256, "num_layers": 1}

    @classmethod
    def build(cls, ctx: Context, folder: Path) -> None:
        import torch

        tok = ctx.tokenizer
        torch.manual_seed(ctx.seed)
        hparams = {**cls.HPARAMS, "vocab_size": len(tok), "pad_id": tok.pad_token_id}
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(tutorial_bigru(**hparams).state_dict(), folder / "model.pt")
        (folder / "hparams.json").write_text(json.dumps(hparams))
        tok.save_pretrained(folder)

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        import torch

        hparams = json.loads((folder / "hparams.json").read_text())
        model = tutorial_bigru(**hparams)
        model.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
        return _TokenizedTorch(model, folder, hparams["pad_id"], max_tokens, use_mask=False)


class DistilBert:
    name = "distilbert"
    IMPORTS = ("torch", "transformers", "transformers.models.distilbert.modeling_distilbert", "textgru.inference")
    description = "DistilBERT-size transformer: DistilBertConfig() defaults (6 layers, dim 768), random weights"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        import torch
        from transformers import DistilBertConfig, DistilBertForSequenceClassification

        tok = ctx.tokenizer
        config = DistilBertConfig(num_labels=2, pad_token_id=tok.pad_token_id)
        if len(tok) > config.vocab_size or ctx.max_tokens > config.max_position_embeddings:
            raise ValueError(
                "The shared tokenizer / max_tokens do not fit DistilBERT's default vocabulary / positions."
            )
        torch.manual_seed(ctx.seed)
        DistilBertForSequenceClassification(config).save_pretrained(folder)
        tok.save_pretrained(folder)

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        from transformers import DistilBertForSequenceClassification

        model = DistilBertForSequenceClassification.from_pretrained(folder)
        return _TokenizedTorch(model, folder, model.config.pad_token_id, max_tokens, use_mask=True)


# ---------------------------------------------------------------------------------------------------------------
# Linear baselines: TF-IDF + logistic regression, fastText
# ---------------------------------------------------------------------------------------------------------------


class TfidfLogReg:
    name = "tfidf-logreg"
    IMPORTS = ("joblib", "sklearn.feature_extraction.text", "sklearn.linear_model", "sklearn.pipeline")
    description = "scikit-learn TfidfVectorizer (word 1-2 grams, sublinear tf) + LogisticRegression"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        import joblib
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        pipeline = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(max_iter=1000)
        )
        pipeline.fit(ctx.fit_texts, ctx.fit_labels)
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(pipeline, folder / "pipeline.joblib")

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        import joblib

        return _Predictor(joblib.load(folder / "pipeline.joblib").predict_proba)


def fasttext_unavailable() -> str | None:
    """Why fastText cannot run here, or None when it can."""
    try:
        import fasttext  # noqa: F401
    except ImportError:
        return "fasttext not importable: pip install -c constraints-cpu.txt fasttext-wheel"
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())  # fastText reads one line per text


class FastText:
    name = "fasttext"
    IMPORTS = ("fasttext",)
    description = "fastText supervised (dim 50, word bigrams, 200k hash buckets), via fasttext-wheel"

    @staticmethod
    def build(ctx: Context, folder: Path) -> None:
        import fasttext

        folder.mkdir(parents=True, exist_ok=True)
        train_file = ctx.work_dir / "fasttext_train.txt"
        lines = [f"__label__{y} {_one_line(t)}" for t, y in zip(ctx.fit_texts, ctx.fit_labels)]
        train_file.write_text("\n".join(lines) + "\n")
        model = fasttext.train_supervised(
            str(train_file),
            epoch=1 if ctx.quick else 5,
            lr=0.5,
            dim=50,
            wordNgrams=2,
            bucket=200_000,
            thread=ctx.threads,
            seed=ctx.seed,
            verbose=0,
        )
        model.save_model(str(folder / "model.bin"))

    @staticmethod
    def load(folder: Path, threads: int, max_tokens: int):
        import fasttext

        model = fasttext.load_model(str(folder / "model.bin"))
        # list input: fasttext-wheel 0.9.2's single-string path calls np.array(copy=False), broken on numpy 2
        return _Predictor(lambda texts: model.predict([_one_line(t) for t in texts], k=2)[1])


CONTENDERS = {
    c.name: c
    for c in (
        TextGRUEager,
        TextGRUInt8,
        TextGRUOnnx,
        TextGRUOnnxInt8,
        TextGRUNativeInt8,
        PlainBiGRU,
        DistilBert,
        TfidfLogReg,
        FastText,
    )
}


def build_contender(name: str, ctx: Context, folder: Path) -> int:
    """Build contender `name` into `folder` (replacing it); returns its size on disk in bytes."""
    if folder.exists():
        shutil.rmtree(folder)
    CONTENDERS[name].build(ctx, folder)
    return _dir_bytes(folder)


def load_contender(name: str, folder: Path, threads: int, max_tokens: int):
    """A predictor (with `predict(texts)`) for a built contender."""
    return CONTENDERS[name].load(folder, threads, max_tokens)


def count_parameters(name: str, predictor) -> int | None:
    """Number of model parameters of a neural contender, or None."""
    model = getattr(predictor, "model", None)
    if model is None or not hasattr(model, "parameters"):
        return None
    if name == "textgru-int8":
        return None  # packed int8 weights are not parameters; same architecture as "textgru"
    return sum(p.numel() for p in model.parameters())
