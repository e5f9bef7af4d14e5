"""HyperSeg processing: image processor, prompt building and tokenisation, post-processing.

Importing this package registers the processors with transformers' Auto classes (so folders load without
`trust_remote_code`), and marks them for remote code: `save_pretrained` writes their `auto_map` entries and copies
the processing modules flat into the folder.
"""

from transformers import AutoImageProcessor, AutoProcessor

from ..modeling import HyperSegConfig
from .image_processing_hyperseg import HyperSegImageProcessor
from .processing_hyperseg import HyperSegProcessor
from .reference_frames import select_reference_frames

AutoImageProcessor.register(HyperSegConfig, image_processor_classes={"pil": HyperSegImageProcessor}, exist_ok=True)
AutoProcessor.register(HyperSegConfig, HyperSegProcessor, exist_ok=True)
HyperSegImageProcessor.register_for_auto_class()
HyperSegProcessor.register_for_auto_class()

__all__ = ["HyperSegImageProcessor", "HyperSegProcessor", "select_reference_frames"]
