"""Train, load and check tokenizers for TextGRU models.

`train_tokenizer` builds a subword tokenizer from raw text with the `tokenizers` library and wraps it as a
`PreTrainedTokenizerFast`, so it saves, loads (`AutoTokenizer`) and pads like any Hugging Face tokenizer.

Design of a trained tokenizer (all three algorithms share it):

- Special tokens: `[PAD]` (id 0), `[UNK]` (1), `[CLS]` (2), `[SEP]` (3). A single text gets no special tokens
  (a recurrent encoder needs no `[CLS]` slot to pool from, and an empty text stays empty); a pair is encoded as
  `A [SEP] B`. Only `input_ids` and `attention_mask` are returned (no `token_type_ids`).
- Normalisation: HTML line breaks (`<br />`, `<br/>`, `<br>`, any case) become spaces, then NFKC, optional
  lowercasing, runs of whitespace (newlines and tabs included) collapse to one space and the ends are stripped.
  Accents are kept.
- Byte-level pre-tokenisation (GPT-2 style): text is split into words and punctuation, then every UTF-8 byte is
  written as one of 256 printable characters, all of which are in the vocabulary. Any text, including characters
  never seen in training ("Ωmega 😀"), encodes without `[UNK]`, and `decode` gives the normalised text back.
  WordPiece additionally gets every byte as a continuation piece (`##x`), so a word with an unseen character
  falls back to bytes instead of becoming one `[UNK]`. This reserves 260 ids (516 for WordPiece).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = [PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN]  # list order = ids 0..3
ALGORITHMS = ("wordpiece", "bpe", "unigram")
WORDPIECE_PREFIX = "##"
# WordPiece maps a word longer than this (in byte characters) to [UNK], and its greedy longest match is quadratic
# in the word length; so longer words (URLs, runs of emoji, unspaced CJK) are cut into chunks of this size first.
MAX_WORDPIECE_CHARS = 100
BYTE_ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())
_TRAIN_BATCH_SIZE = 1000


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps = [normalizers.Replace(Regex(r"(?i)<br\s*/?>"), " "), normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    # collapse whitespace runs; matching only runs that change (not every single space) is 2x faster
    steps += [normalizers.Replace(Regex(r"\s{2,}|[^\S ]"), " "), normalizers.Strip()]
    return normalizers.Sequence(steps)


def _decoder(algorithm: str) -> decoders.Decoder:
    steps = [decoders.ByteLevel(), decoders.Strip(content=" ", left=1, right=0)]  # drop the added prefix space
    if algorithm == "wordpiece":
        steps.insert(0, decoders.Replace(Regex(f"^{WORDPIECE_PREFIX}"), ""))  # glue continuation pieces back
    return decoders.Sequence(steps)


def minimum_vocab_size(algorithm: str) -> int:
    """The smallest `vocab_size` `train_tokenizer` accepts: special tokens plus byte pieces (and one for Unigram,
    whose trainer overshoots when asked for exactly its required pieces)."""
    extra = {"wordpiece": len(BYTE_ALPHABET), "unigram": 1}.get(algorithm, 0)
    return len(SPECIAL_TOKENS) + len(BYTE_ALPHABET) + extra


def _batches(texts: Iterable[str], batch_size: int = _TRAIN_BATCH_SIZE) -> Iterator[list[str]]:
    """Yield lists of strings (the Rust trainer reads batches much faster than single strings); skip `None`."""
    batch, skipped = [], 0
    for text in texts:
        if text is None:
            skipped += 1
            continue
        if not isinstance(text, str):
            raise TypeError(f"train_tokenizer expects an iterable of str, got an item of type {type(text).__name__}.")
        if text:  # empty strings teach nothing (and an all-empty corpus crashes the Unigram trainer)
            batch.append(text)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
    if skipped:
        logger.warning("train_tokenizer skipped %d None texts.", skipped)


def _ensure_byte_pieces(tokenizer: Tokenizer, vocab_size: int) -> None:
    """Give a trained WordPiece model every byte, word-initial and as `##` continuation, within `vocab_size`.

    The trainer only keeps continuation pieces it saw; without `##x` a word containing an unseen byte `x` after
    its first character would become one `[UNK]`. The least frequent merges (highest ids) make room.
    """
    vocab = tokenizer.get_vocab()
    required = set(SPECIAL_TOKENS) | set(BYTE_ALPHABET) | {WORDPIECE_PREFIX + c for c in BYTE_ALPHABET}
    missing = sorted(required - vocab.keys())
    if not missing:
        return
    ordered = sorted(vocab, key=vocab.get)
    room = vocab_size - len(ordered) - len(missing)
    if room < 0:
        droppable = [t for t in reversed(ordered) if t not in required]
        dropped = set(droppable[:-room])
        ordered = [t for t in ordered if t not in dropped]
    new_vocab = {token: i for i, token in enumerate(ordered + missing)}
    tokenizer.model = models.WordPiece(
        vocab=new_vocab,
        unk_token=UNK_TOKEN,
        continuing_subword_prefix=WORDPIECE_PREFIX,
        max_input_chars_per_word=MAX_WORDPIECE_CHARS,
    )
    logger.info("Added %d byte pieces to the WordPiece vocabulary (byte fallback).", len(missing))


def train_tokenizer(
    texts: Iterable[str],
    *,
    algorithm: str = "wordpiece",
    vocab_size: int = 16000,
    lowercase: bool = True,
    min_frequency: int = 2,
    model_max_length: int = 512,
    show_progress: bool = True,
) -> PreTrainedTokenizerFast:
    """Train a byte-level subword tokenizer on `texts` and wrap it as a `PreTrainedTokenizerFast`.

    See the module docstring for the normalisation, special tokens and byte fallback every trained tokenizer has.
    Texts are streamed to the Rust trainer in batches (25,000 IMDB reviews: about 15 s on one core).

    Args:
        texts: The training corpus, e.g. `dataset["train"]["text"]` or a generator. `None` items are skipped.
        algorithm: `"wordpiece"` (default), `"bpe"` or `"unigram"`.
        vocab_size: Size of the final vocabulary, special tokens and the byte alphabet included (at least 260,
            261 for Unigram, 516 for WordPiece). The result is smaller when the corpus has few distinct pieces.
        lowercase: Lowercase the text before tokenisation.
        min_frequency: Minimum count of a pair to be merged (WordPiece, BPE; Unigram ignores it).
        model_max_length: Default truncation length saved with the tokenizer.
        show_progress: Show the trainer's progress bars.

    Returns:
        The trained tokenizer (padding on the right, pad id 0).

    Example:

    >>> tokenizer = train_tokenizer(["a good film", "a bad film"] * 50, vocab_size=600, show_progress=False)
    >>> tokenizer("A good film!")["input_ids"] == tokenizer("a good film!")["input_ids"]
    True
    """
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"Unknown tokenizer algorithm {algorithm!r}; choose one of {list(ALGORITHMS)}.")
    minimum = minimum_vocab_size(algorithm)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level {algorithm} tokenizer: it needs at least "
            f"{minimum} ids for the special tokens and byte pieces. Set vocab_size >= {minimum}."
        )

    common = {
        "vocab_size": vocab_size,
        "show_progress": show_progress,
        "special_tokens": SPECIAL_TOKENS,
        "initial_alphabet": BYTE_ALPHABET,
    }
    if algorithm == "wordpiece":
        model = models.WordPiece(
            unk_token=UNK_TOKEN,
            continuing_subword_prefix=WORDPIECE_PREFIX,
            max_input_chars_per_word=MAX_WORDPIECE_CHARS,
        )
        trainer = trainers.WordPieceTrainer(
            **common, min_frequency=min_frequency, continuing_subword_prefix=WORDPIECE_PREFIX
        )
    elif algorithm == "bpe":
        model = models.BPE(unk_token=UNK_TOKEN)
        trainer = trainers.BpeTrainer(**common, min_frequency=min_frequency)
    else:  # Unigram has no merge threshold
        model = models.Unigram()
        trainer = trainers.UnigramTrainer(**common, unk_token=UNK_TOKEN)

    tokenizer = Tokenizer(model)
    tokenizer.normalizer = _normalizer(lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    if algorithm == "wordpiece":
        chunks = pre_tokenizers.Split(Regex(f".{{{MAX_WORDPIECE_CHARS}}}"), behavior="isolated")
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([tokenizer.pre_tokenizer, chunks])
    tokenizer.decoder = _decoder(algorithm)

    length = len(texts) if hasattr(texts, "__len__") else None
    logger.info("Training a %s tokenizer (vocab_size=%d) on %s texts.", algorithm, vocab_size, length or "streamed")
    batches = _batches(texts)
    first = next(batches, None)
    if first is None:
        raise ValueError("train_tokenizer got no non-empty texts to learn from; check the text column.")
    tokenizer.train_from_iterator(itertools.chain([first], batches), trainer=trainer, length=length)
    if algorithm == "wordpiece":
        _ensure_byte_pieces(tokenizer, vocab_size)

    # the BPE and Unigram trainers keep their initial alphabet; guard against a `tokenizers` release that doesn't
    vocab = tokenizer.get_vocab()
    if [vocab.get(t) for t in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"Special tokens did not get ids 0..3: {[vocab.get(t) for t in SPECIAL_TOKENS]}")
    if not all(c in vocab for c in BYTE_ALPHABET):
        raise RuntimeError(f"The {algorithm} trainer dropped byte pieces; byte fallback would not work.")
    sep_id = vocab[SEP_TOKEN]
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),  # offsets point at the word, not its leading space
            processors.TemplateProcessing(
                single="$A", pair=f"$A:0 {SEP_TOKEN}:0 $B:1", special_tokens=[(SEP_TOKEN, sep_id)]
            ),
        ]
    )
    if tokenizer.get_vocab_size() > vocab_size:
        logger.warning(
            "The %s trainer made %d tokens (> vocab_size=%d).", algorithm, tokenizer.get_vocab_size(), vocab_size
        )
    logger.info("Trained tokenizer: %d tokens.", tokenizer.get_vocab_size())

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        cls_token=CLS_TOKEN,
        sep_token=SEP_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        truncation_side="right",
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(name_or_path: str, **kwargs) -> PreTrainedTokenizerBase:
    """Load a tokenizer with `AutoTokenizer` and make sure it has a padding token.

    A tokenizer without a pad token gets its eos token, else its unk token, as pad token; with neither, a new
    `[PAD]` token is added (which grows `len(tokenizer)`: the model's `vocab_size` must cover it).

    Args:
        name_or_path: A local folder written by `save_pretrained`, or a Hub id (needs internet or the Hub cache).
        **kwargs: Passed to `AutoTokenizer.from_pretrained` (e.g. `revision`, `trust_remote_code`).

    Returns:
        The tokenizer, with `pad_token` set.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        if os.path.isdir(name_or_path):
            where = f"the folder {name_or_path!r} holds no loadable tokenizer (tokenizer.json, tokenizer_config.json)"
        elif os.path.exists(name_or_path):
            where = f"{name_or_path!r} is a file; pass the folder that `save_pretrained` wrote"
        else:
            where = (
                f"{name_or_path!r} is not a local path, so it was looked up as a Hugging Face Hub id, which needs "
                "internet (or a copy in the Hub cache)"
            )
        raise OSError(
            f"Could not load a tokenizer from {name_or_path!r}: {where}. Pass a folder saved with "
            "`tokenizer.save_pretrained(...)`, or train one from your data with "
            "`textgru.tokenization.train_tokenizer(texts)`. "
            f"Original error: {err}"
        ) from err

    if tokenizer.pad_token is None:
        for name in ("eos_token", "unk_token"):
            token = getattr(tokenizer, name)
            if token is not None:
                tokenizer.pad_token = token
                logger.info("Tokenizer %r has no pad token; using its %s %r for padding.", name_or_path, name, token)
                break
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
            logger.warning(
                "Tokenizer %r has no pad, eos or unk token; added %r as pad token (id %d, len(tokenizer)=%d).",
                name_or_path,
                PAD_TOKEN,
                tokenizer.pad_token_id,
                len(tokenizer),
            )
    return tokenizer


def check_tokenizer_matches_model(tokenizer: PreTrainedTokenizerBase, config) -> None:
    """Raise `ValueError` when `tokenizer` can produce ids the model cannot embed, or pads with another id.

    Catching this up front turns an index error deep inside the embedding (or padding that is not masked as
    padding) into a message that says what to set.

    Args:
        tokenizer: The tokenizer that will feed the model.
        config: The model's config (`vocab_size` and `pad_token_id` are read).
    """
    problems = []
    if len(tokenizer) > config.vocab_size:
        problems.append(
            f"the tokenizer has {len(tokenizer)} tokens but config.vocab_size={config.vocab_size}; "
            f"set vocab_size={len(tokenizer)} (or more) in the model config"
        )
    if tokenizer.pad_token_id is None:
        problems.append("the tokenizer has no pad token; load it with textgru.tokenization.load_tokenizer")
    elif tokenizer.pad_token_id != config.pad_token_id:
        problems.append(
            f"the tokenizer pads with id {tokenizer.pad_token_id} ({tokenizer.pad_token!r}) but "
            f"config.pad_token_id={config.pad_token_id}; set pad_token_id={tokenizer.pad_token_id} in the model config"
        )
    if problems:
        raise ValueError("Tokenizer and model do not match: " + "; ".join(problems) + ".")
