"""Training HyperSeg: data schema and collator, the synthetic shapes data, the LoRA recipe and the Trainer.

Fine-tune with `python -m hyperseg.training.finetune --model PATH --dataset ... --output_dir OUT`.
"""

from .data import TRAINING_FEATURES, HyperSegDataCollator, validate_example, visual_prompt_from_mask
from .recipe import FROZEN_MODULES, NEW_MODULES, TRAIN_MODES, load_adapter, prepare_for_training, save_adapter
from .synthetic import SHAPES_CLASS_NAMES, synthetic_dataset
from .trainer import HyperSegTrainer, TaskGroupedSampler, clip_loss

__all__ = [
    "FROZEN_MODULES",
    "NEW_MODULES",
    "SHAPES_CLASS_NAMES",
    "TRAINING_FEATURES",
    "TRAIN_MODES",
    "HyperSegDataCollator",
    "HyperSegTrainer",
    "TaskGroupedSampler",
    "clip_loss",
    "load_adapter",
    "prepare_for_training",
    "save_adapter",
    "synthetic_dataset",
    "validate_example",
    "visual_prompt_from_mask",
]
