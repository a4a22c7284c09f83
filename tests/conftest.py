"""Shared fixtures. Every test runs offline and single-threaded (see README: threads contend on 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark sets beside the checkout (`../shared/data`); skips the test where absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real data not found at {SHARED_DATA} (only present in the project's CI and dev machines)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    """Keep evaluate/datasets caches out of the user's home."""
    home = tmp_path_factory.getbasetemp() / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "datasets"))


TINY_CORPUS = [
    "a wonderful film with a great cast",
    "the plot was dull and far too long",
    "i loved the music and the acting",
    "a boring movie with a weak script",
    "not good , not bad , just fine",
    "the best film i have seen this year",
    "the worst acting and a silly ending",
    "funny , warm and very well made",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A WordPiece tokenizer (about 100 ids) trained in-process on `TINY_CORPUS`; `[PAD]` is id 0, `[UNK]` id 1."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordPieceTrainer(vocab_size=100, special_tokens=["[PAD]", "[UNK]"])
    backend.train_from_iterator(TINY_CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")


@pytest.fixture(scope="module")
def local_hub():
    """An in-memory Hub (`tests/hub_server.py`) for `push_to_hub` tests. `huggingface_hub` reads its endpoint at
    import, so the client side must run in a subprocess with `env={**os.environ, **local_hub.env()}`."""
    from hub_server import LocalHub

    with LocalHub() as hub:
        yield hub
