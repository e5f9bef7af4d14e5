"""HyperSeg processing: image processor, prompt building and tokenisation, post-processing.

Importing this package registers the processors with transformers' Auto classes.
"""

from transformers import AutoImageProcessor, AutoProcessor

from ..modeling import HyperSegConfig
from .image_processing_hyperseg import HyperSegImageProcessor
from .processing_hyperseg import HyperSegProcessor

AutoImageProcessor.register(HyperSegConfig, image_processor_classes={"pil": HyperSegImageProcessor}, exist_ok=True)
AutoProcessor.register(HyperSegConfig, HyperSegProcessor, exist_ok=True)

__all__ = ["HyperSegImageProcessor", "HyperSegProcessor"]
