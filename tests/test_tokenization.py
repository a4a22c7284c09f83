"""Tokenizer training, byte fallback, normalisation, pairs, save/load, loading errors and the model-match check."""

import random
import time

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from textgru import TextGRUConfig
from textgru.tokenization import (
    ALGORITHMS,
    BYTE_ALPHABET,
    WORDPIECE_PREFIX,
    check_tokenizer_matches_model,
    load_tokenizer,
    minimum_vocab_size,
    train_tokenizer,
)

WORDS = (
    "the a film movie plot actor actress scene story great good bad awful boring brilliant funny "
    "is was not very really quite it this that and but with of to watch watched watching loved hated"
).split()
UNSEEN = "Ωmega 😀 ü"  # none of these characters is in the corpus


def corpus(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + rng.choice([".", "!", " ?"]) for _ in range(n)
    ]


@pytest.fixture(scope="module")
def tokenizers_by_algorithm() -> dict[str, PreTrainedTokenizerFast]:
    texts = corpus()
    return {alg: train_tokenizer(texts, algorithm=alg, vocab_size=600, show_progress=False) for alg in ALGORITHMS}


@pytest.fixture(scope="module")
def tokenizer(tokenizers_by_algorithm) -> PreTrainedTokenizerFast:
    return tokenizers_by_algorithm["wordpiece"]


def test_special_tokens_and_wrapper_settings(tokenizers_by_algorithm):
    for tok in tokenizers_by_algorithm.values():
        ids = [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id]
        assert ids == [0, 1, 2, 3]
        assert tok.convert_ids_to_tokens(ids) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
        assert tok.padding_side == "right"
        assert tok.model_max_length == 512
        assert set(tok("a film")) == {"input_ids", "attention_mask"}  # no token_type_ids for the model
        assert 260 <= len(tok) <= 600


def test_unknown_algorithm_lists_choices():
    with pytest.raises(ValueError, match="wordpiece.*bpe.*unigram"):
        train_tokenizer(["a b"], algorithm="sentencepiece")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_smallest_vocab_size_is_respected_and_below_it_is_an_error(algorithm):
    smallest = minimum_vocab_size(algorithm)
    with pytest.raises(ValueError, match=f"vocab_size >= {smallest}"):
        train_tokenizer(["a b"], algorithm=algorithm, vocab_size=smallest - 1)
    tok = train_tokenizer(corpus(), algorithm=algorithm, vocab_size=smallest, show_progress=False)
    assert len(tok) == smallest
    assert tok.unk_token_id not in tok(UNSEEN + " the films")["input_ids"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_byte_fallback_no_unk_and_readable_decode(tokenizers_by_algorithm, algorithm):
    tok = tokenizers_by_algorithm[algorithm]
    for text in [UNSEEN, "日本語のテキストは空白なしで" * 20, "x" * 300, "naïve café ½"]:
        ids = tok(text)["input_ids"]
        assert tok.unk_token_id not in ids, (algorithm, text[:20], tok.convert_ids_to_tokens(ids)[:10])
    ids = tok(UNSEEN)["input_ids"]
    assert tok.decode(ids) == "ωmega 😀 ü"  # NFKC + lowercase, nothing lost
    assert len(set(ids)) > 3  # distinct byte pieces, not one collapsed symbol
    assert tok.decode(tok("x" * 300)["input_ids"]) == "x" * 300


def test_wordpiece_keeps_every_byte_piece_within_vocab_size():
    # a corpus with more distinct pieces than fit: the byte pieces must survive the vocab_size cut
    texts = [" ".join(f"w{i}x{j}" for j in range(30)) for i in range(300)]
    tok = train_tokenizer(texts, vocab_size=700, min_frequency=1, show_progress=False)
    vocab = tok.get_vocab()
    assert len(vocab) == 700
    assert all(c in vocab and WORDPIECE_PREFIX + c in vocab for c in BYTE_ALPHABET)
    assert sorted(vocab.values()) == list(range(700))  # ids stay contiguous after the cut


def test_html_breaks_whitespace_and_case(tokenizer):
    plain = tokenizer("great movie. the end")["input_ids"]
    for text in ["Great<br />movie. The end", "great<br/>movie.<BR>the end", "GREAT <br>   movie.\n\tthe end  "]:
        assert tokenizer(text)["input_ids"] == plain, text
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("a<br /><br />b")["input_ids"])
    assert not any("<" in t or "br" in t for t in tokens), tokens


def test_lowercase_off_keeps_case():
    tok = train_tokenizer(corpus(100), vocab_size=600, lowercase=False, show_progress=False)
    assert tok("Film")["input_ids"] != tok("film")["input_ids"]
    assert tok.decode(tok("The Film IS Great")["input_ids"]) == "The Film IS Great"


def test_pretokenised_and_question_text_round_trips(tokenizer):
    for text in ["it 's a film that does n't work , and -lrb- sadly -rrb- is n't funny .", "what is the capital ?"]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
    # pre-tokenised spacing is respected: "n't" after a space differs from "don't"
    assert tokenizer("does n't")["input_ids"] != tokenizer("doesn't")["input_ids"]


def test_pair_is_a_sep_b(tokenizer):
    a, b = tokenizer("a good film")["input_ids"], tokenizer("boring plot")["input_ids"]
    assert tokenizer("a good film", "boring plot")["input_ids"] == a + [tokenizer.sep_token_id] + b
    assert tokenizer("a good film")["input_ids"][0] != tokenizer.cls_token_id  # single texts get no specials


def test_empty_text_and_truncation(tokenizer):
    assert tokenizer("")["input_ids"] == []
    long = "the film was good " * 1000
    assert len(tokenizer(long, truncation=True)["input_ids"]) == 512
    batch = tokenizer(["a film", ""], padding=True)
    assert batch["input_ids"][1] == [0] * len(batch["input_ids"][0]) and batch["attention_mask"][1][0] == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_save_load_round_trip(tokenizers_by_algorithm, algorithm, tmp_path):
    tok = tokenizers_by_algorithm[algorithm]
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    texts = ["A GOOD film<br />really", UNSEEN, "", "it 's not boring !"]
    assert loaded(texts)["input_ids"] == tok(texts)["input_ids"]
    assert loaded("a film", "the plot")["input_ids"] == tok("a film", "the plot")["input_ids"]
    assert loaded.decode(loaded(UNSEEN)["input_ids"]) == tok.decode(tok(UNSEEN)["input_ids"])
    assert (loaded.pad_token_id, loaded.padding_side, loaded.model_max_length) == (0, "right", 512)
    assert loaded.model_input_names == ["input_ids", "attention_mask"]
    assert load_tokenizer(str(tmp_path))(texts)["input_ids"] == tok(texts)["input_ids"]


def test_streamed_corpus_and_none_skipped():
    tok = train_tokenizer(
        (t if i % 7 else None for i, t in enumerate(corpus(200))), vocab_size=600, show_progress=False
    )
    assert "Ġfilm" in tok.get_vocab()
    with pytest.raises(TypeError, match="iterable of str"):
        train_tokenizer([1, 2], show_progress=False)
    with pytest.raises(ValueError, match="no non-empty texts"):
        train_tokenizer(["", None], algorithm="unigram", show_progress=False)


def test_load_tokenizer_errors_say_what_to_do(tmp_path):
    with pytest.raises(OSError, match="Hub id, which needs internet.*train_tokenizer"):
        load_tokenizer("no-such-user/no-such-tokenizer")
    with pytest.raises(OSError, match="folder .* holds no loadable tokenizer"):
        load_tokenizer(str(tmp_path))


def _tokenizer_without_pad(tmp_path, **specials) -> str:
    vocab = {"[UNK]": 0, "a": 1, "b": 2, "</s>": 3}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, **specials).save_pretrained(tmp_path)
    return str(tmp_path)


def test_load_tokenizer_ensures_a_pad_token(tmp_path):
    with_eos = load_tokenizer(_tokenizer_without_pad(tmp_path / "eos", eos_token="</s>", unk_token="[UNK]"))
    assert (with_eos.pad_token, with_eos.pad_token_id, len(with_eos)) == ("</s>", 3, 4)
    with_unk = load_tokenizer(_tokenizer_without_pad(tmp_path / "unk", unk_token="[UNK]"))
    assert with_unk.pad_token_id == 0
    bare = load_tokenizer(_tokenizer_without_pad(tmp_path / "bare"))
    assert bare.pad_token == "[PAD]" and bare.pad_token_id == 4 and len(bare) == 5
    assert bare(["a b", "a"], padding=True)["input_ids"][1] == [1, 4]


def test_check_tokenizer_matches_model(tokenizer):
    check_tokenizer_matches_model(tokenizer, TextGRUConfig(vocab_size=len(tokenizer), hidden_size=16))
    with pytest.raises(ValueError, match=f"set vocab_size={len(tokenizer)}"):
        check_tokenizer_matches_model(tokenizer, TextGRUConfig(vocab_size=len(tokenizer) - 1, hidden_size=16))
    with pytest.raises(ValueError, match="set pad_token_id=0"):
        check_tokenizer_matches_model(tokenizer, TextGRUConfig(vocab_size=1000, pad_token_id=5, hidden_size=16))


def _column(path, column="text", n=None) -> list[str]:
    values = pq.read_table(path, columns=[column]).column(column).to_pylist()
    return values[:n] if n else values


def test_real_data_sst2_imdb_trec_20ng(shared_data):
    sst2 = train_tokenizer(_column(shared_data / "sst2/train.parquet", n=2000), vocab_size=4000, show_progress=False)
    held_out = _column(shared_data / "sst2/validation.parquet", n=200)
    encoded = sst2(held_out)["input_ids"]
    assert all(sst2.decode(ids) == text for ids, text in zip(encoded, held_out))  # lowercased, tokenised text
    assert all(sst2.unk_token_id not in ids for ids in encoded)
    words = sum(len(t.split()) for t in held_out)
    assert sum(map(len, encoded)) < 1.6 * words  # it learned words, not just bytes

    imdb_texts = _column(shared_data / "imdb/train.parquet", n=300)
    assert any("<br />" in t for t in imdb_texts)
    imdb = train_tokenizer(imdb_texts, vocab_size=3000, show_progress=False)
    assert not any("<br" in imdb.decode(ids) for ids in imdb(imdb_texts)["input_ids"])
    assert not any("<b" in token for token in imdb.get_vocab()), "HTML breaks leaked into the vocabulary"
    review = imdb_texts[0]
    assert imdb.decode(imdb(review)["input_ids"]) == " ".join(review.replace("<br />", " ").lower().split())

    for name, tok in [("trec", sst2), ("20ng", imdb)]:
        texts = _column(shared_data / name / "test.parquet", n=100)
        assert all(tok.unk_token_id not in ids for ids in tok(texts, truncation=True)["input_ids"]), name


@pytest.mark.slow
def test_full_imdb_trains_well_under_a_minute(shared_data):
    texts = _column(shared_data / "imdb/train.parquet")
    start = time.process_time()  # CPU time of this (single-threaded) process: robust to a busy machine
    tok = train_tokenizer(texts, vocab_size=16000, show_progress=False)
    assert time.process_time() - start < 40
    assert len(tok) == 16000
