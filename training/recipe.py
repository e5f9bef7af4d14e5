"""Which parameters train: the LoRA recipe of the original (the default) and full training.

`lora`: LoRA (r=8, alpha=16) on the LLM's q / v projections; the modules HyperSeg adds on top of its pretrained parts
(the perceiver, InstructSeg's text fusion when present, the pixel and mask decoders, the LLM-to-decoder projections
and the mask queries) are trained fully; SigLIP, Swin, the vision projector and the rest of the LLM are frozen.

`full`: every parameter trains (e.g. a model trained from scratch).

PEFT saves LoRA weights and whole modules (`modules_to_save`), but not a bare parameter such as `mask_queries`: these
are saved beside the adapter in `TRAINABLE_PARAMETERS_FILE` ([`save_adapter`] / [`load_adapter`]).
"""

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file

TRAIN_MODES = ("lora", "full")
# modules HyperSeg adds on top of SigLIP, Swin and the LLM, trained fully under LoRA
NEW_MODULES = (
    "perceiver",
    "text_fusion",
    "pixel_decoder",
    "mask_decoder",
    "query_projector",
    "seg_prompt_projector",
    "class_prompt_projector",
    "region_prompt_projector",
)
NEW_PARAMETERS = ("mask_queries",)
FROZEN_MODULES = ("vision_tower", "multi_modal_projector", "backbone")
LORA_TARGET_MODULES = r".*language_model\..*\.(q_proj|v_proj)"
TRAINABLE_PARAMETERS_FILE = "trainable_parameters.safetensors"


def lora_config(model, r: int = 8, alpha: int = 16, dropout: float = 0.05) -> LoraConfig:
    """
    The original's LoRA settings: rank `r`, `alpha` on the LLM's q / v projections, and the new modules `model` has
    (`NEW_MODULES`, some are absent from some configurations) trained and saved whole.
    """
    new_modules = [name for name in NEW_MODULES if getattr(model, name, None) is not None]
    return LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGET_MODULES, modules_to_save=new_modules
    )


def prepare_for_training(model, mode: str = "lora", lora_r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05):
    """
    Sets which parameters train (see the module docstring). Returns the model to train: a `PeftModel` wrapping
    `model` for `lora`, `model` itself for `full`.
    """
    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown training mode {mode!r}; expected one of {', '.join(TRAIN_MODES)}")
    if mode == "full":
        model.requires_grad_(True)
        return model
    peft_model = get_peft_model(model, lora_config(model, lora_r, lora_alpha, lora_dropout))
    for name in NEW_PARAMETERS:
        getattr(model, name).requires_grad_(True)
    return peft_model


def _extra_trainable_parameters(peft_model: PeftModel) -> dict[str, torch.nn.Parameter]:
    base = peft_model.get_base_model()
    return {name: getattr(base, name) for name in NEW_PARAMETERS}


def save_trainable_parameters(peft_model: PeftModel, directory: str | Path) -> None:
    """Writes the trainable parameters PEFT does not save (`NEW_PARAMETERS`) to `directory`."""
    tensors = {
        name: parameter.detach().cpu().contiguous()
        for name, parameter in _extra_trainable_parameters(peft_model).items()
    }
    save_file(tensors, str(Path(directory) / TRAINABLE_PARAMETERS_FILE), metadata={"format": "pt"})


def load_trainable_parameters(peft_model: PeftModel, directory: str | Path) -> None:
    """Restores what [`save_trainable_parameters`] wrote; a missing file is an error (the adapter is incomplete)."""
    path = Path(directory) / TRAINABLE_PARAMETERS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the adapter folder lacks the trained {', '.join(NEW_PARAMETERS)}")
    tensors = load_file(str(path))
    with torch.no_grad():
        for name, parameter in _extra_trainable_parameters(peft_model).items():
            parameter.copy_(tensors[name])


def save_adapter(peft_model: PeftModel, directory: str | Path) -> None:
    """The PEFT adapter (LoRA + new modules) and the extra trained parameters."""
    peft_model.save_pretrained(directory)
    save_trainable_parameters(peft_model, directory)


def load_adapter(model, directory: str | Path, is_trainable: bool = False) -> PeftModel:
    """`model` (the base HyperSeg) with the adapter of `directory`; call `.merge_and_unload()` for a plain model."""
    peft_model = PeftModel.from_pretrained(model, directory, is_trainable=is_trainable)
    load_trainable_parameters(peft_model, directory)
    return peft_model


__all__ = [
    "FROZEN_MODULES",
    "NEW_MODULES",
    "NEW_PARAMETERS",
    "TRAIN_MODES",
    "load_adapter",
    "lora_config",
    "prepare_for_training",
    "save_adapter",
]
