"""HyperSeg modeling: configuration, the model, its building blocks and its pipeline.

Importing this package registers HyperSeg with transformers' Auto classes (so folders load without
`trust_remote_code`), and marks the configuration for remote code: its `save_pretrained` writes `auto_map` and copies
the configuration module, as the model's does for every modeling module (see `hub_hyperseg`).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageSegmentation,
    AutoModelForUniversalSegmentation,
)

from .configuration_hyperseg import HyperSegConfig
from .modeling_hyperseg import HyperSegForUniversalSegmentation, HyperSegOutput, HyperSegPreTrainedModel
from .pipeline_hyperseg import HyperSegSegmentationPipeline
from .quantization_hyperseg import int8_language_model_config

AutoConfig.register(HyperSegConfig.model_type, HyperSegConfig, exist_ok=True)
for _auto_class in (AutoModel, AutoModelForUniversalSegmentation, AutoModelForImageSegmentation):
    _auto_class.register(HyperSegConfig, HyperSegForUniversalSegmentation, exist_ok=True)
HyperSegConfig.register_for_auto_class()

__all__ = [
    "HyperSegConfig",
    "HyperSegForUniversalSegmentation",
    "HyperSegOutput",
    "HyperSegPreTrainedModel",
    "HyperSegSegmentationPipeline",
    "int8_language_model_config",
]
