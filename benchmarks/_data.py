"""Data for benchmarks/speed.py: SST-2 / IMDB slices from ../shared/data (or generated texts), the timed inputs."""

from __future__ import annotations

import argparse
import logging
import statistics

logger = logging.getLogger("benchmarks.speed")

FIT_SIZES = {False: (None, 2000, 16000), True: (400, 60, 2000)}  # quick -> (sst2 sentences, imdb docs, vocab)


def synthetic_split(n: int, words_range: tuple[int, int], seed: int) -> tuple[list[str], list[int]]:
    """Random English-looking texts with a binary label, for machines without ../shared/data."""
    import random

    rng = random.Random(seed)
    vocab = "the a film movie plot actor story scene it was is and but not very good bad great dull funny slow".split()
    texts, labels = [], []
    for _ in range(n):
        texts.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(*words_range))) + " .")
        labels.append(rng.randint(0, 1))
    return texts, labels


GENERATED = "generated texts (no ../shared/data)"


def sst2_train(data_dir, seed: int) -> tuple[list[str], list[int], str]:
    """(texts, labels, source): the SST-2 train sentences from `data_dir/sst2`; 2,000 generated texts (seeded)
    where that folder is absent (the source says so)."""
    path = data_dir / "sst2" / "train.parquet"
    if path.is_file():
        import pandas as pd

        frame = pd.read_parquet(path, columns=["text", "label"])
        return frame.text.tolist(), frame.label.astype(int).tolist(), str(data_dir / "sst2")
    texts, labels = synthetic_split(2000, (5, 40), seed)
    return texts, labels, GENERATED


def sst2_sentences(data_dir, n_texts: int, seed: int) -> tuple[list[str], list[str], str]:
    """(tokenizer corpus, timed sentences, source): the SST-2 train sentences (`sst2_train`) and a seeded sample of
    `n_texts` test sentences; without the data, the first `n_texts` generated texts."""
    corpus, _, source = sst2_train(data_dir, seed)
    test = data_dir / "sst2" / "test.parquet"
    if source == GENERATED or not test.is_file():
        return corpus, corpus[:n_texts], source
    import pandas as pd

    sentences = pd.read_parquet(test, columns=["text"]).text
    return corpus, sentences.sample(n=min(n_texts, len(sentences)), random_state=seed).tolist(), source


def default_textgru(corpus: list[str], quick: bool):
    """(model, tokenizer): a default-size `TextGRUForSequenceClassification` (random weights, eval mode; seeded by
    the caller) with a WordPiece tokenizer trained on `corpus` (vocab 16,000; 2,000 when `quick`)."""
    from textgru import TextGRUConfig, TextGRUForSequenceClassification
    from textgru.tokenization import train_tokenizer

    tokenizer = train_tokenizer(corpus, vocab_size=2000 if quick else 16000, show_progress=False)
    config = TextGRUConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_labels=2)
    return TextGRUForSequenceClassification(config).eval(), tokenizer


def default_textgru_on_sst2(data_dir, n_texts: int, seed: int, quick: bool):
    """(model, tokenizer, timed sentences, source): `default_textgru` on the SST-2 train sentences, and `n_texts`
    SST-2 test sentences (`sst2_sentences`)."""
    corpus, timed, source = sst2_sentences(data_dir, n_texts, seed)
    return (*default_textgru(corpus, quick), timed, source)


def load_data(args: argparse.Namespace) -> dict:
    """SST-2 and IMDB train/test texts and labels (or synthetic ones when the data folder is absent)."""
    n_fit_sst, n_fit_imdb, _ = FIT_SIZES[args.quick]
    if (args.data_dir / "sst2" / "test.parquet").is_file() and (args.data_dir / "imdb" / "test.parquet").is_file():
        import pandas as pd

        def read(name, split, n=None):
            frame = pd.read_parquet(args.data_dir / name / f"{split}.parquet", columns=["text", "label"])
            if n is not None:  # a seeded sample: IMDB's files are sorted by label
                frame = frame.sample(n=min(n, len(frame)), random_state=args.seed)
            return frame.text.tolist(), frame.label.astype(int).tolist()

        data = {
            "source": str(args.data_dir),
            "sst2_train": read("sst2", "train", n_fit_sst),
            "imdb_train": read("imdb", "train", n_fit_imdb),
            "sst2_test": read("sst2", "test"),
            "imdb_test": read("imdb", "test", max(args.n_docs, args.batch_size) * 4),
        }
    else:
        logger.warning(
            "No data at %s: using synthetic texts (figures are not comparable to real ones).", args.data_dir
        )
        data = {
            "source": "synthetic",
            "sst2_train": synthetic_split(n_fit_sst or 2000, (3, 40), 1),
            "imdb_train": synthetic_split(n_fit_imdb, (50, 600), 2),
            "sst2_test": synthetic_split(max(args.n_texts, 64), (3, 40), 3),
            "imdb_test": synthetic_split(max(args.n_docs, 16), (50, 600), 4),
        }
    return data


def truncate_text(backend, text: str, max_tokens: int) -> str:
    """Cut `text` after its `max_tokens`-th token (offsets map back to the raw string), so every contender,
    including the ones with their own tokenisation, sees the same document."""
    encoding = backend.encode(text)
    return text if len(encoding.ids) <= max_tokens else text[: encoding.offsets[max_tokens - 1][1]]


def sample(texts: list[str], n: int, seed: int) -> list[str]:
    """`n` texts in a fixed random order (the same for every contender)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in order]


def prepare_inputs(args: argparse.Namespace, data: dict, tokenizer) -> tuple[dict, dict]:
    """The timed texts (a fixed random sample of each test split, documents cut at `max_tokens`) and their summary."""
    backend = tokenizer.backend_tokenizer
    sentences = sample(data["sst2_test"][0], args.n_texts, args.seed)
    documents = [
        truncate_text(backend, t, args.max_tokens) for t in sample(data["imdb_test"][0], args.n_docs, args.seed)
    ]
    inputs = {"sst2": sentences, "imdb": documents}
    for name, texts in inputs.items():
        if len(texts) < args.batch_size:
            logger.warning(
                "Only %d %s texts: the batch-%d figure uses one smaller batch.", len(texts), name, args.batch_size
            )
    summary = {
        "source": data["source"],
        "tokenizer": {"algorithm": "wordpiece (textgru.tokenization.train_tokenizer)", "vocab_size": len(tokenizer)},
        "fit_corpus": f"{len(data['sst2_train'][0])} SST-2 train + {len(data['imdb_train'][0])} IMDB train texts",
        "inputs": {
            name: {
                "texts": len(texts),
                "order": f"fixed random sample of the test split (numpy seed {args.seed}), same for every contender",
                "tokens_mean": statistics.mean(len(backend.encode(t).ids) for t in texts),
                "tokens_max": max(len(backend.encode(t).ids) for t in texts),
            }
            for name, texts in inputs.items()
        },
        "max_tokens": args.max_tokens,
    }
    return inputs, summary
