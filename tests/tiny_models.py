"""The small TextGRU classifier several test modules build (width 16, 2 layers): one place for its config."""

import torch

from textgru import TextGRUConfig, TextGRUForSequenceClassification


def tiny_classifier(tokenizer, seed: int = 0, **overrides) -> TextGRUForSequenceClassification:
    """A seeded `TextGRUForSequenceClassification` sized to `tokenizer`; `overrides` go to `TextGRUConfig`."""
    torch.manual_seed(seed)
    config = dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        embedding_size=16,
        hidden_size=16,
        attention_hidden_size=16,
    )
    return TextGRUForSequenceClassification(TextGRUConfig(**{**config, **overrides}))
