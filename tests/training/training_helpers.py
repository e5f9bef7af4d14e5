"""A tiny, self-contained training setup: a small tokenizer, a processor for 64-pixel images, a tiny model; the
Trainer arguments and the gradient / LoRA-recipe checks of the training tests."""

import functools

import torch
from tiny_config import tiny_hyperseg_config

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor
from hyperseg.training import FROZEN_MODULES
from hyperseg.training.finetune import HyperSegTrainingArguments
from hyperseg.training.shapes_model import SEG_TOKEN, build_shapes_tokenizer, token_id_config

IMAGE_SIZE = 64  # synthetic scenes of the tests: 64 x 64, the backbone input size


@functools.cache
def tiny_tokenizer():
    return build_shapes_tokenizer(num_texts=60)


def tiny_processor() -> HyperSegProcessor:
    config = tiny_config()
    image_processor = HyperSegImageProcessor(
        size={"height": config.vision_config.image_size, "width": config.vision_config.image_size},
        backbone_size=IMAGE_SIZE,
    )
    return HyperSegProcessor.from_model_config(config, tiny_tokenizer(), image_processor, seg_token=SEG_TOKEN)


def tiny_config(**overrides):
    """The tiny test architecture with this tokenizer's ids; no stochastic layers (drop path 0), 1024 loss points."""
    tokenizer = tiny_tokenizer()
    end_of_text = tokenizer.eos_token_id
    base = tiny_hyperseg_config()
    text_config = base.text_config.to_dict()
    text_config.update(
        vocab_size=len(tokenizer), pad_token_id=end_of_text, bos_token_id=end_of_text, eos_token_id=end_of_text
    )
    backbone_config = base.backbone_config.to_dict()
    backbone_config.update(drop_path_rate=0.0)
    values = dict(
        text_config=text_config,
        backbone_config=backbone_config,
        train_num_points=1024,
        **token_id_config(tokenizer),
    )
    values.update(overrides)
    return tiny_hyperseg_config(**values)


def tiny_model(seed: int = 0, **overrides) -> HyperSegForUniversalSegmentation:
    torch.manual_seed(seed)
    return HyperSegForUniversalSegmentation(tiny_config(**overrides))


def randomize_lora(model) -> None:
    """LoRA's B starts at zero, which would zero the gradient of A and make the adapter a no-op."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)


def training_args(output_dir, **overrides) -> HyperSegTrainingArguments:
    values = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        activation_checkpointing=False,
        report_to=[],
        seed=0,
        disable_tqdm=True,
    )
    values.update(overrides)
    return HyperSegTrainingArguments(**values)


def check_gradients(model) -> tuple[dict, dict]:
    """
    After a backward pass: every trainable parameter of `model` has a non-zero gradient and no frozen one has any.
    Returns the trainable and the frozen parameters by name.
    """
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    frozen = {name: p for name, p in model.named_parameters() if not p.requires_grad}
    without_gradient = [name for name, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not without_gradient, f"{len(without_gradient)} trainable parameters got no gradient: {without_gradient[:5]}"
    assert all(p.grad is None for p in frozen.values())
    return trainable, frozen


def check_lora_recipe(trainable: dict, frozen: dict) -> None:
    """The original recipe: LoRA on the LLM's q / v, the new modules whole, SigLIP / Swin / projector / LLM frozen."""
    assert any(".language_model." in name and "q_proj.lora_A" in name for name in trainable)
    assert all("lora_" in name or "modules_to_save" in name or name.endswith("mask_queries") for name in trainable), (
        sorted(trainable)
    )
    for module in FROZEN_MODULES + ("lm_head", "embed_tokens"):
        assert not any(f".{module}." in name for name in trainable), module
        assert any(f".{module}." in name for name in frozen), module
