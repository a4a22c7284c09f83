"""Configuration of the TextGRU residual recurrent encoder.

This file holds only the configuration. It must stay importable on its own (it is copied next to
``modeling_textgru.py`` when a model is saved, so that ``trust_remote_code=True`` can load it on a
machine that has never installed textgru).
"""

from __future__ import annotations

from transformers import PretrainedConfig

RESIDUAL_MODES = ("none", "add", "gated")
POOLING_MODES = ("attention", "mean", "max", "last")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"TextGRUConfig: `{name}={value!r}` is not supported; choose one of {list(choices)}.")


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"TextGRUConfig: `{name}={value!r}` must be a positive integer.")


def _check_probability(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"TextGRUConfig: `{name}={value!r}` must be a dropout probability in [0, 1).")


class TextGRUConfig(PretrainedConfig):
    r"""Configuration of a [`TextGRUModel`]: embeddings, a stack of (bi)directional GRU layers joined by
    residual connections, and a pooling layer.

    Args:
        vocab_size (`int`, defaults to 16000):
            Number of token ids the embedding table holds. Ids must lie in `[0, vocab_size)`.
        embedding_size (`int`, defaults to 128):
            Width of the token embeddings. When it differs from the stack's width
            (`hidden_size * num_directions`), the first residual connection uses a linear projection.
        hidden_size (`int`, defaults to 128):
            Hidden size of each GRU *per direction*. A bidirectional layer outputs `2 * hidden_size` features.
        num_hidden_layers (`int`, defaults to 2):
            Number of stacked GRU layers.
        bidirectional (`bool`, defaults to `True`):
            Run a backward GRU beside the forward one in every layer.
        residual (`str`, defaults to `"add"`):
            How layer `l`'s input joins its output: `"none"` (plain stack, `x_{l+1} = GRU(x_l)`), `"add"`
            (`x_{l+1} = x_l + GRU(norm(x_l))`) or `"gated"` (highway: `x_{l+1} = g * GRU(norm(x_l)) + (1 - g) * x_l`
            with a learned per-feature gate `g`).
        layer_norm (`bool`, defaults to `True`):
            Normalise each layer's input (pre-norm) and the stack's output with `LayerNorm`.
        embedding_dropout (`float`, defaults to 0.1):
            Dropout on the token embeddings (single features).
        word_dropout (`float`, defaults to 0.0):
            In training, the probability that a whole token's embedding is dropped (zeroed), so the model cannot
            lean on any single word and copes with words it has never seen (Iyyer et al. 2015).
        hidden_dropout (`float`, defaults to 0.1):
            Dropout on each GRU layer's output before it joins the residual line.
        classifier_dropout (`float`, defaults to 0.1):
            Dropout on the pooled vector before the classification head.
        pooling (`str`, defaults to `"attention"`):
            How token states become one vector: `"attention"` (structured self-attention, Lin et al. 2017),
            `"mean"`, `"max"` or `"last"` (final state of each direction). Padding gets exactly zero weight.
        num_attention_heads (`int`, defaults to 1):
            Attention-pooling heads ("hops" in Lin et al. 2017). The pooled vector concatenates the heads.
        attention_hidden_size (`int`, defaults to 128):
            Width of the attention-pooling scorer (`d_a` in Lin et al. 2017).
        pad_token_id (`int`, defaults to 0):
            Id of the padding token; its embedding row is kept at zero.
        initializer_range (`float`, defaults to 0.02):
            Standard deviation of the normal initialiser for embeddings and linear layers.

    Example:

    >>> from textgru import TextGRUConfig, TextGRUForSequenceClassification
    >>> config = TextGRUConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_labels=3)
    >>> model = TextGRUForSequenceClassification(config)
    """

    model_type = "textgru"
    _auto_class = "AutoConfig"  # saved configs carry their code for `trust_remote_code=True` loading

    def __init__(
        self,
        vocab_size: int = 16000,
        embedding_size: int = 128,
        hidden_size: int = 128,
        num_hidden_layers: int = 2,
        bidirectional: bool = True,
        residual: str = "add",
        layer_norm: bool = True,
        embedding_dropout: float = 0.1,
        word_dropout: float = 0.0,
        hidden_dropout: float = 0.1,
        classifier_dropout: float = 0.1,
        pooling: str = "attention",
        num_attention_heads: int = 1,
        attention_hidden_size: int = 128,
        pad_token_id: int = 0,
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.bidirectional = bidirectional
        self.residual = residual
        self.layer_norm = layer_norm
        self.embedding_dropout = embedding_dropout
        self.word_dropout = word_dropout
        self.hidden_dropout = hidden_dropout
        self.classifier_dropout = classifier_dropout
        self.pooling = pooling
        self.num_attention_heads = num_attention_heads
        self.attention_hidden_size = attention_hidden_size
        self.initializer_range = initializer_range
        self.validate_textgru(check_pad=False)  # before transformers' own checks, which give cryptic errors
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.validate_textgru()

    def validate_textgru(self, check_pad: bool = True) -> None:
        """Raise `ValueError` naming the field, the value and what is allowed, for any bad setting."""
        for name in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers"):
            _check_positive_int(name, getattr(self, name))
        for name in ("num_attention_heads", "attention_hidden_size"):
            _check_positive_int(name, getattr(self, name))
        _check_choice("residual", self.residual, RESIDUAL_MODES)
        _check_choice("pooling", self.pooling, POOLING_MODES)
        for name in ("embedding_dropout", "word_dropout", "hidden_dropout", "classifier_dropout"):
            _check_probability(name, getattr(self, name))
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"TextGRUConfig: `bidirectional={self.bidirectional!r}` must be True or False.")
        if not isinstance(self.layer_norm, bool):
            raise ValueError(f"TextGRUConfig: `layer_norm={self.layer_norm!r}` must be True or False.")
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
            raise ValueError(f"TextGRUConfig: `initializer_range={self.initializer_range!r}` must be positive.")
        if not check_pad:
            return
        pad = self.pad_token_id
        if pad is None or isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            raise ValueError(
                f"TextGRUConfig: `pad_token_id={pad!r}` must be an id in [0, vocab_size={self.vocab_size}); "
                "set it to your tokenizer's `pad_token_id`."
            )

    @property
    def output_size(self) -> int:
        """Width of every token state in the stack: `hidden_size * (2 if bidirectional else 1)`."""
        return self.hidden_size * (2 if self.bidirectional else 1)

    @property
    def pooled_size(self) -> int:
        """Width of the pooled vector: attention pooling concatenates `num_attention_heads` heads."""
        heads = self.num_attention_heads if self.pooling == "attention" else 1
        return self.output_size * heads


__all__ = ["TextGRUConfig"]
