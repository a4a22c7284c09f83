"""Write a Hugging Face model card (README.md) for a trained TextGRU classifier.

The card is `textgru/templates/model_card.md` filled with `string.Template` (no template engine dependency). Its YAML
front matter is built with `huggingface_hub.ModelCardData`, so the `model-index` block is the one the Hub parses into
evaluation results, and odd names (colons, quotes, `#`) are quoted by a YAML dumper rather than by hand.

>>> from textgru.model_card import write_model_card
>>> write_model_card("out", model_name="textgru-imdb", config=config, label_names=["neg", "pos"],  # doctest: +SKIP
...                  problem_type="single_label_classification", dataset_name="imdb", dataset_description=None,
...                  hyperparameters={"learning_rate": 1e-3}, eval_results={"test": {"eval_accuracy": 0.88}},
...                  text_columns=["text"], base_tokenizer=None, plots=[], repo_id=None, training_time_s=None,
...                  extra_notes=None)
"""

from __future__ import annotations

import logging
import math
import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .configuration_textgru import TextGRUConfig
from .evaluation import PROBLEM_TYPES

logger = logging.getLogger(__name__)

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
CARD_TAGS = ["textgru", "text-classification", "custom_code", "gru"]

# Trainer's bookkeeping numbers: not model quality, left out of the evaluation table.
_BOOKKEEPING = ("runtime", "epoch", "step", "total_flos", "model_preparation_time", "jit_compilation_time")
# Our metric names -> (Hub metric id, display name, metric args) for the model-index.
_HUB_METRICS: dict[str, tuple[str, str, dict[str, str] | None]] = {
    "accuracy": ("accuracy", "Accuracy", None),
    "f1_macro": ("f1", "F1 (macro)", {"average": "macro"}),
    "f1_micro": ("f1", "F1 (micro)", {"average": "micro"}),
    "f1_weighted": ("f1", "F1 (weighted)", {"average": "weighted"}),
    "precision_macro": ("precision", "Precision (macro)", {"average": "macro"}),
    "precision_micro": ("precision", "Precision (micro)", {"average": "micro"}),
    "recall_macro": ("recall", "Recall (macro)", {"average": "macro"}),
    "recall_micro": ("recall", "Recall (micro)", {"average": "micro"}),
    "matthews_correlation": ("matthews_correlation", "Matthews correlation", None),
    "exact_match": ("exact_match", "Exact match (subset accuracy)", None),
    "hamming_loss": ("hamming_loss", "Hamming loss", None),
    "mse": ("mse", "MSE", None),
    "mae": ("mae", "MAE", None),
    "rmse": ("rmse", "RMSE", None),
    "pearson": ("pearsonr", "Pearson r", None),
    "spearman": ("spearmanr", "Spearman rho", None),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")

CITATIONS_PATH = TEMPLATE_PATH.with_name("citations.bib")


def _cell(value: Any) -> str:
    """A value made safe for one Markdown table cell."""
    if isinstance(value, float):
        text = "n/a" if not math.isfinite(value) else f"{value:.4g}" if abs(value) < 1e-3 else f"{value:.4f}"
    else:
        text = str(value)
    text = " ".join(text.split())  # no line breaks inside a cell
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;") or " "


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _setting(value: Any) -> str:
    """A hyper-parameter as written in a config (`0.001`, `5e-05`, `True`), not rounded like a score."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _metric_name(key: str, split: str) -> str:
    """`eval_accuracy`, `test_accuracy`, `{split}_accuracy` (Trainer's `metric_key_prefix`) -> `accuracy`."""
    for prefix in (f"{split}_", "eval_", "test_", "predict_"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _is_bookkeeping(name: str) -> bool:
    return name in _BOOKKEEPING or name.endswith("_per_second") or name.startswith("mem_")


def _clean_results(eval_results: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    cleaned: dict[str, dict[str, float]] = {}
    for split, metrics in eval_results.items():
        if not isinstance(metrics, Mapping):
            raise ValueError(
                f"eval_results[{split!r}] must be a dict of metric -> value (e.g. trainer.evaluate()'s output)."
            )
        kept = {}
        for key, value in metrics.items():
            name = _metric_name(key, str(split))
            if _is_bookkeeping(name) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            kept[name] = float(value)
        cleaned[str(split)] = kept
    return cleaned


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _front_matter(
    *,
    model_name: str,
    dataset_name: str | None,
    results: dict[str, dict[str, float]],
    license: str | None,
    language: str | list[str] | None,
    problem_type: str,
) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset_id = dataset_name if dataset_name and _HUB_ID.match(dataset_name) else None
    eval_results = []
    for split, metrics in results.items():
        for name, value in metrics.items():
            if name not in _HUB_METRICS or not math.isfinite(value):
                continue  # the Hub rejects nan; losses are no model-index metric
            metric_type, metric_name, metric_args = _HUB_METRICS[name]
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=dataset_id or "custom",
                    dataset_name=dataset_name or "custom data",
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_value=round(value, 6),
                    metric_name=metric_name,
                    metric_args=metric_args,
                )
            )
    tags = list(CARD_TAGS)
    if problem_type != "single_label_classification":
        tags.append(problem_type.replace("_", "-"))
    data = ModelCardData(
        model_name=model_name,
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=tags,
        datasets=[dataset_id] if dataset_id else None,
        metrics=sorted({result.metric_type for result in eval_results}) or None,
        eval_results=eval_results or None,
        license=license,
        language=language,
    )
    return data.to_yaml() + "\n"


def _architecture(config: TextGRUConfig, problem_type: str, num_labels: int, num_parameters: int | None) -> str:
    directions = "bidirectional" if config.bidirectional else "unidirectional"
    layers = _plural(config.num_hidden_layers, f"{directions} GRU layer")
    residual = {
        "none": "stacked without residual connections",
        "add": "joined by additive residual connections (`x + GRU(norm(x))`)",
        "gated": "joined by gated (highway) residual connections (`g * GRU(norm(x)) + (1 - g) * x`)",
    }[config.residual]
    pooling = {
        "attention": f"structured self-attention pooling with {_plural(config.num_attention_heads, 'head')} "
        f"(scorer width {config.attention_hidden_size}, Lin et al. 2017)",
        "mean": "mean pooling over the real tokens",
        "max": "max pooling over the real tokens",
        "last": "the final state of each direction",
    }[config.pooling]
    head = {
        "single_label_classification": f"a linear head over {num_labels} classes (softmax, cross-entropy loss)",
        "multi_label_classification": f"a linear head over {num_labels} independent labels (sigmoid, binary "
        "cross-entropy loss)",
        "regression": f"a linear head predicting {_plural(num_labels, 'real value')} (mean squared error loss)",
    }[problem_type]
    lines = [
        "TextGRU is a deep residual recurrent text classifier that lives natively in the Hugging Face ecosystem "
        "(custom code loaded with `trust_remote_code=True`). It was trained from scratch, without pre-training.",
        "",
        f"- **Embeddings:** {config.vocab_size:,} token ids x {config.embedding_size} dimensions "
        f"(padding id {config.pad_token_id}, kept at zero).",
        f"- **Encoder:** {layers}, {config.hidden_size} units per "
        f"direction ({config.output_size} features per token), {residual}"
        + (", with pre-LayerNorm." if config.layer_norm else ", without LayerNorm."),
        f"- **Pooling:** {pooling}; padding gets exactly zero weight, so results do not depend on batch padding.",
        f"- **Head:** {head}, on a {config.pooled_size}-dimensional pooled vector.",
        f"- **Dropout:** embeddings {config.embedding_dropout}, between layers {config.hidden_dropout}, "
        f"before the head {config.classifier_dropout}.",
    ]
    if num_parameters is not None:
        lines.append(f"- **Parameters:** {num_parameters:,} ({num_parameters / 1e6:.2f} M).")
    return "\n".join(lines)


def _label_table(label_names: Sequence[str], problem_type: str) -> str:
    header = ("target", "name") if problem_type == "regression" else ("id", "label")
    return _table(header, [(i, name) for i, name in enumerate(label_names)])


def _evaluation(results: dict[str, dict[str, float]], problem_type: str) -> str:
    if not results or not any(results.values()):
        return "No evaluation results were recorded."
    splits = list(results)
    metrics = list(dict.fromkeys(name for split in splits for name in results[split]))
    rows = [(name, *(results[split].get(name, "-") for split in splits)) for name in metrics]
    legend = {
        "single_label_classification": "Macro averages weigh every class equally (a class never predicted counts "
        "as precision 0), micro averages every example.",
        "multi_label_classification": "Micro averages pool every label decision, macro averages weigh every label "
        "equally; exact match is the share of texts whose whole label set is right.",
        "regression": "Errors (mse, mae, rmse) are better lower, correlations better closer to 1; a correlation is "
        "n/a when the predictions or the references are constant.",
    }[problem_type]
    return f"Scores per split (`loss` is the training objective). {legend}\n\n" + _table(("metric", *splits), rows)


def _plots(output_dir: Path, plots: Sequence[str]) -> str:
    lines = []
    for plot in plots:
        path = Path(plot)
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(output_dir.resolve())
            except ValueError:
                raise ValueError(
                    f"Plot {plot} lies outside {output_dir}; save plots inside the model folder and pass names "
                    "relative to it."
                ) from None
        if ".." in path.parts:
            raise ValueError(f"Plot {plot!r} must be a file name relative to {output_dir}, inside it.")
        if not (output_dir / path).is_file():
            logger.warning("Plot %s is not in %s (yet); the card links it anyway.", path, output_dir)
        alt = path.stem.replace("_", " ").replace("-", " ").capitalize()
        lines.append(f"![{alt}]({path.as_posix()})")
    return ("\n### Plots\n\n" + "\n\n".join(lines) + "\n") if lines else ""


def _usage_fields(repo_or_path: str, problem_type: str, text_columns: Sequence[str]) -> dict[str, str]:
    pair = len(text_columns) == 2
    columns = ", ".join(f"`{c}`" for c in text_columns) or "one text column"
    if pair:
        note = f"The model reads {columns} as a text pair (the tokenizer's `text` and `text_pair`)."
    elif len(text_columns) > 2:
        note = f"The model reads {columns}; combine them into one text exactly as during training."
    else:
        note = f"The model reads {columns}."
    return {
        "usage_note": note,
        "repo": repo_or_path,
        "tokenizer_inputs": '["first text"], ["its pair"]' if pair else '["I loved it.", "Dull and too long."]',
        "decode": {
            "single_label_classification": "print([model.config.id2label[i] for i in logits.argmax(-1).tolist()])",
            "multi_label_classification": "probabilities = logits.sigmoid().tolist()\n"
            "print([[model.config.id2label[j] for j, p in enumerate(row) if p > 0.5] for row in probabilities])",
            "regression": "print(logits.squeeze(-1).tolist())",
        }[problem_type],
        "pipeline_args": {
            "single_label_classification": "",
            "multi_label_classification": ', top_k=None, function_to_apply="sigmoid"',
            "regression": ', function_to_apply="none"',
        }[problem_type],
        "pipeline_input": '{"text": "first text", "text_pair": "its pair"}' if pair else '"I loved it."',
    }


def _limitations(
    dataset_name: str | None, max_length: int | None, language: str | list[str] | None, problem_type: str
) -> str:
    data = f"`{dataset_name}`" if dataset_name else "its training data"
    if isinstance(language, str):
        language = [language]
    lang = (
        f"The training data is in {', '.join(f'`{code}`' for code in language)}; text in other languages will mostly "
        "map to unknown tokens."
        if language
        else "The language of the training data was not recorded; expect poor results on text in other languages."
    )
    length = (
        f"Inputs are truncated to {max_length} tokens; anything beyond that is not seen."
        if max_length
        else "Inputs longer than the tokenizer's `model_max_length` (when truncation is on) are cut."
    )
    outputs = (
        "The model only knows the labels listed above; every input is assigned one of them, in-domain or not."
        if problem_type != "regression"
        else "Predictions are only meaningful within the range of the training targets."
    )
    return "\n".join(
        [
            f"- **Trained from scratch** on {data}: no pre-trained language knowledge. The vocabulary and what the "
            "model learned come from that data only; accuracy drops on other domains and styles.",
            f"- **Length:** {length}",
            f"- **Language:** {lang}",
            "- **Padding and empty text:** results do not depend on padding or batch composition. An empty text "
            "(no tokens) pools to a zero vector, so its logits are the classifier's bias: a constant prediction, "
            "not an error. Filter empty inputs upstream.",
            f"- **Labels:** {outputs}",
            "- **Bias:** the model reproduces the biases and label noise of its training data.",
        ]
    )


def _citation(config: TextGRUConfig) -> str:
    wanted = ["cho2014gru"]
    wanted += {"add": ["he2016resnet"], "gated": ["srivastava2015highway"]}.get(config.residual, [])
    wanted += ["lin2017structured"] if config.pooling == "attention" else []
    entries = CITATIONS_PATH.read_text(encoding="utf-8").strip().split("\n\n")
    chosen = [entry for key in wanted for entry in entries if entry.split("{", 1)[1].startswith(key + ",")]
    return "\n\n".join(chosen)


def write_model_card(
    output_dir: str | Path,
    *,
    model_name: str,
    config: TextGRUConfig,
    label_names: list[str],
    problem_type: str,
    dataset_name: str | None,
    dataset_description: str | None,
    hyperparameters: dict[str, Any],
    eval_results: dict[str, dict[str, float]],
    text_columns: list[str],
    base_tokenizer: str | None,
    plots: list[str],
    repo_id: str | None,
    training_time_s: float | None,
    extra_notes: str | None,
    num_parameters: int | None = None,
    max_length: int | None = None,
    language: str | list[str] | None = None,
    license: str | None = None,
) -> Path:
    """Render the model card of a trained TextGRU model into `output_dir/README.md`.

    Args:
        output_dir: the saved model folder; the card is written there as `README.md` (replacing any old one).
        model_name: the model's name (title and `model-index` name).
        config: the model's `TextGRUConfig` (architecture summary).
        label_names: class names in id order (`config.id2label`); target names for regression.
        problem_type: `"single_label_classification"`, `"multi_label_classification"` or `"regression"`.
        dataset_name: Hub id or name of the training data (a Hub-style id also goes into `datasets:`).
        dataset_description: a sentence or two on the data (source, size, splits).
        hyperparameters: training settings to list (learning rate, batch size, epochs, max length, ...).
        eval_results: split -> metrics, e.g. `{"validation": trainer.evaluate(), "test": ...}`. The `eval_`,
            `test_` and `<split>_` prefixes are stripped and Trainer's bookkeeping (runtime, samples per second,
            epoch) is left out.
        text_columns: the data columns the model reads (two are shown as a text pair).
        base_tokenizer: what the tokenizer was built from (e.g. a tokenizer id or "BPE trained on the training
            set"); `None` when not recorded.
        plots: PNG file names relative to `output_dir`, embedded in the card.
        repo_id: Hub repository id used in the usage snippets; `None` shows a local path.
        training_time_s: wall-clock training time, in seconds.
        extra_notes: free Markdown appended as a "Notes" section.
        num_parameters: parameter count to report (`model.num_parameters()`).
        max_length: the truncation length used in training (else `hyperparameters["max_length"]`).
        language: language code(s) of the data (front matter `language:` and the limitations).
        license: license id for the front matter (e.g. `"apache-2.0"`).

    Returns:
        The path of the written `README.md`.
    """
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(f"Unknown problem_type {problem_type!r}; use one of {list(PROBLEM_TYPES)}.")
    if not label_names:
        raise ValueError("label_names is empty; pass the class names in id order (`config.id2label`).")
    if not model_name or not model_name.strip():
        raise ValueError("model_name is empty; give the model a name for the card's title.")
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise FileNotFoundError(f"{output_dir} is not a folder; save the model there before writing its card.")
    if max_length is None:
        max_length = hyperparameters.get("max_length", hyperparameters.get("max_seq_length"))
    results = _clean_results(eval_results)
    label_names = [str(name) for name in label_names]

    task = {
        "single_label_classification": f"single-label text classification into {len(label_names)} classes",
        "multi_label_classification": f"multi-label text classification over {len(label_names)} labels",
        "regression": f"text regression ({_plural(len(label_names), 'target')})",
    }[problem_type]
    on_data = f" on `{dataset_name}`" if dataset_name else ""
    training_data = [dataset_description.strip() if dataset_description else "No description of the data was given."]
    if dataset_name:
        training_data.insert(0, f"**Data set:** `{dataset_name}`.")
    training_data.append(
        "**Text columns:** " + (", ".join(f"`{c}`" for c in text_columns) if text_columns else "not recorded") + "."
    )
    training_data.append(
        f"**Tokenizer:** {base_tokenizer}." if base_tokenizer else "**Tokenizer:** built for this model."
    )
    procedure = ["Trained with the Hugging Face `Trainer` from random initialisation (no pre-trained weights)."]
    if training_time_s is not None:
        procedure.append(f"Training took {_duration(training_time_s)} of wall-clock time.")
    hyperparameter_rows = [(key, _setting(value)) for key, value in hyperparameters.items()]

    fields = {
        "front_matter": _front_matter(
            model_name=model_name,
            dataset_name=dataset_name,
            results=results,
            license=license,
            language=language,
            problem_type=problem_type,
        ),
        "model_name": model_name,
        "summary": f"A TextGRU model for {task}{on_data}.",
        "architecture": _architecture(config, problem_type, len(label_names), num_parameters),
        "intended_use": f"Intended for {task}, on texts like those it was trained on{on_data}, where a small model "
        "that runs fast on a CPU matters more than the last points of accuracy. Check its scores on your own data "
        "before relying on it, and do not use it for decisions about people without human review.",
        "limitations": _limitations(dataset_name, max_length, language, problem_type),
        "training_data": "\n\n".join(training_data),
        "label_table": _label_table(label_names, problem_type),
        "training_procedure": " ".join(procedure),
        "hyperparameter_table": _table(("setting", "value"), hyperparameter_rows)
        if hyperparameter_rows
        else "Not recorded.",
        "evaluation": _evaluation(results, problem_type),
        "plots": _plots(output_dir, plots),
        **_usage_fields(repo_id or f"path/to/{output_dir.resolve().name}", problem_type, text_columns),
        "extra_notes": f"\n## Notes\n\n{extra_notes.strip()}\n" if extra_notes and extra_notes.strip() else "",
        "citation": _citation(config),
    }
    card = string.Template(TEMPLATE_PATH.read_text(encoding="utf-8")).substitute(fields)
    card = re.sub(r"\n{3,}", "\n\n", card)

    # Write beside the target and rename, so an interrupted run never leaves half a card.
    # (a plain open() rather than mkstemp, so the card gets the usual file permissions, not 0600)
    path = output_dir / "README.md"
    tmp_path = output_dir / f".README.md.{os.getpid()}.tmp"
    try:
        tmp_path.write_text(card, encoding="utf-8")
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    logger.info("Wrote the model card %s", path)
    return path


__all__ = ["write_model_card", "TEMPLATE_PATH", "CARD_TAGS"]
