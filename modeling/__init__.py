"""HyperSeg modeling: configuration, the model and its building blocks.

Importing this package registers HyperSeg with transformers' Auto classes.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
)

from .configuration_hyperseg import HyperSegConfig
from .modeling_hyperseg import HyperSegForUniversalSegmentation, HyperSegOutput, HyperSegPreTrainedModel

AutoConfig.register(HyperSegConfig.model_type, HyperSegConfig, exist_ok=True)
for _auto_class in (AutoModel, AutoModelForUniversalSegmentation, AutoModelForImageSegmentation):
    _auto_class.register(HyperSegConfig, HyperSegForUniversalSegmentation, exist_ok=True)

__all__ = ["HyperSegConfig", "HyperSegForUniversalSegmentation", "HyperSegOutput", "HyperSegPreTrainedModel"]
