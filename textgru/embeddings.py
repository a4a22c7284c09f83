"""Pretrained token embeddings from unlabelled text (skip-gram word2vec over the model's own tokenizer).

No pretrained vectors need to be downloaded: a few minutes of word2vec on in-domain unlabelled text (for movie
reviews, the 50,000 unlabelled IMDB reviews) gives the embedding table a head start that a small labelled set
cannot, the way Kim (2014) used word2vec for CNNs. Vectors are learnt over the tokenizer's own subword tokens,
so every vocabulary id gets a row (tokens never seen keep their random initialisation).

Requires `gensim` (`pip install "textgru[pretrain]"`).

>>> from textgru.embeddings import pretrain_embeddings, load_embeddings_into  # doctest: +SKIP
>>> vectors, found = pretrain_embeddings(tokenizer, texts, dim=model.config.embedding_size)  # doctest: +SKIP
>>> load_embeddings_into(model, vectors, found)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


def _require_gensim():
    try:
        from gensim.models import Word2Vec
    except ImportError as err:  # pragma: no cover - exercised only without gensim
        raise ImportError(
            'Pretraining embeddings needs gensim: pip install "textgru[pretrain]" (or pip install gensim).'
        ) from err
    return Word2Vec


class _TokenCorpus:
    """Re-iterable corpus of token-id strings (gensim iterates once per epoch plus once for the vocabulary)."""

    def __init__(self, sequences: list[list[str]]):
        self.sequences = sequences

    def __iter__(self) -> Iterator[list[str]]:
        return iter(self.sequences)


def tokenize_corpus(
    tokenizer: PreTrainedTokenizerBase, texts: Iterable[str], *, max_length: int = 512, batch_size: int = 1000
) -> list[list[str]]:
    """Token ids of every text, as strings (gensim's word type), without special tokens."""
    texts = [t for t in texts if isinstance(t, str) and t.strip()]
    if not texts:
        raise ValueError("pretrain_embeddings: no non-empty texts to learn embeddings from.")
    out: list[list[str]] = []
    for start in tqdm(range(0, len(texts), batch_size), desc="Tokenizing unlabelled text", leave=False):
        batch = tokenizer(
            texts[start : start + batch_size], add_special_tokens=False, truncation=True, max_length=max_length
        )
        out.extend([str(i) for i in ids] for ids in batch["input_ids"])
    return out


def pretrain_embeddings(
    tokenizer: PreTrainedTokenizerBase,
    texts: Iterable[str],
    *,
    dim: int,
    epochs: int = 5,
    window: int = 5,
    negative: int = 5,
    min_count: int = 2,
    max_length: int = 512,
    seed: int = 42,
    workers: int | None = None,
    token_ids: Iterable[list[int]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    """Learn skip-gram vectors for the tokenizer's vocabulary from unlabelled text.

    Args:
        tokenizer: the tokenizer the model uses (its ids index the returned rows).
        texts: unlabelled text (the training text itself counts too).
        dim: vector size; must equal the model's `embedding_size`.
        epochs, window, negative, min_count: word2vec settings.
        max_length: texts are cut to this many tokens.
        seed: random seed (word2vec is only reproducible with one worker).
        workers: threads (default: `OMP_NUM_THREADS` or 1).
        token_ids: texts already tokenized with `tokenizer` (e.g. the training split's `input_ids`), added to the
            corpus as they are, so nothing is tokenized twice.

    Returns:
        `(vectors, found)`: a `(len(tokenizer), dim)` float32 array, and a boolean mask of the rows learnt.
    """
    Word2Vec = _require_gensim()
    sequences = [[str(i) for i in ids] for ids in token_ids if len(ids)]
    texts = list(texts)
    if texts or not sequences:
        sequences += tokenize_corpus(tokenizer, texts, max_length=max_length)
    corpus = _TokenCorpus(sequences)
    n_tokens = sum(len(s) for s in corpus.sequences)
    workers = workers or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
    logger.info("Word2vec on %d texts (%d tokens), dim %d, %d epochs", len(corpus.sequences), n_tokens, dim, epochs)
    w2v = Word2Vec(
        sentences=corpus,
        vector_size=dim,
        window=window,
        min_count=min_count,
        sg=1,
        negative=negative,
        epochs=epochs,
        seed=seed,
        workers=workers,
    )
    vectors = np.zeros((len(tokenizer), dim), dtype=np.float32)
    found = np.zeros(len(tokenizer), dtype=bool)
    for token, index in w2v.wv.key_to_index.items():
        vectors[int(token)] = w2v.wv.vectors[index]
        found[int(token)] = True
    logger.info("Learnt vectors for %d of %d vocabulary ids", found.sum(), len(tokenizer))
    return vectors, found


@torch.no_grad()
def load_embeddings_into(model: PreTrainedModel, vectors: np.ndarray, found: np.ndarray | None = None) -> int:
    """Copy pretrained rows into the model's input embeddings, rescaled to the table's current spread.

    Word2vec vectors have a much larger norm than the model's initialisation; they are scaled so their standard
    deviation matches `config.initializer_range`-initialised rows' scale times 10, which keeps the first layer's
    pre-norm input in a sane range. The padding row stays zero. Returns the number of rows copied.

    Args:
        model: a TextGRU model (any head).
        vectors: `(vocab_size, embedding_size)` array from `pretrain_embeddings`.
        found: rows to copy (default: all non-zero rows).
    """
    table = model.get_input_embeddings().weight
    if tuple(vectors.shape) != tuple(table.shape):
        raise ValueError(
            f"Pretrained vectors have shape {tuple(vectors.shape)} but the embedding table is {tuple(table.shape)}; "
            "pretrain with dim=config.embedding_size and the model's own tokenizer."
        )
    found = np.abs(vectors).sum(1) > 0 if found is None else found
    pad = model.config.pad_token_id
    if pad is not None:
        found = found.copy()
        found[pad] = False
    rows = torch.from_numpy(vectors[found]).to(table.dtype)
    rows = rows / rows.std().clamp(min=1e-8) * (10 * model.config.initializer_range)
    table[torch.from_numpy(np.flatnonzero(found))] = rows
    return int(found.sum())
