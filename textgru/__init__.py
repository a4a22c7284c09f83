"""textgru: deep residual GRU text classifiers that live natively in the Hugging Face ecosystem.

Importing the package registers `TextGRUConfig` and the models with `AutoConfig`, `AutoModel` and
`AutoModelForSequenceClassification`, so `AutoModel*.from_pretrained(path)` works without
`trust_remote_code` where textgru is installed.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_textgru import TextGRUConfig
from .modeling_textgru import TextGRUForSequenceClassification, TextGRUModel, TextGRUPreTrainedModel

__version__ = "0.1.0"

AutoConfig.register(TextGRUConfig.model_type, TextGRUConfig, exist_ok=True)
AutoModel.register(TextGRUConfig, TextGRUModel, exist_ok=True)
AutoModelForSequenceClassification.register(TextGRUConfig, TextGRUForSequenceClassification, exist_ok=True)

__all__ = [
    "TextGRUConfig",
    "TextGRUPreTrainedModel",
    "TextGRUModel",
    "TextGRUForSequenceClassification",
    "__version__",
]
