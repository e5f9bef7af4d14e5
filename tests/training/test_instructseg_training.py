"""
A converted InstructSeg checkpoint (the golden-data `instructseg_forward_tiny`, converted here) with the training
stack and as remote code: the LoRA recipe trains InstructSeg's own modules (the object-aware perceiver and the text
fusion) and LoRA on the LLM, `HyperSegTrainer` steps it on synthetic referring data through its own processor, and
the exported folder loads without the package and computes the package's referring mask logits bit for bit.
"""

import pytest
import torch
from hub_helpers import check_without_package, single_torch_thread  # noqa: F401
from training_helpers import check_gradients, check_lora_recipe, randomize_lora, training_args

from hyperseg.conversion.export_hub_folder import check_hub_folder, export
from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegProcessor
from hyperseg.training import HyperSegDataCollator, HyperSegTrainer, prepare_for_training
from hyperseg.training.synthetic import synthetic_dataset

REPO_ID = "hyperseg-tests/converted-instructseg-tiny"
MODEL_CARD = """---
library_name: transformers
pipeline_tag: image-segmentation
tags:
- instructseg
---
# Tiny converted InstructSeg (test checkpoint)

`AutoModelForUniversalSegmentation.from_pretrained("{{repo_id}}", trust_remote_code=True)`
"""


@pytest.fixture(scope="module")
def converted(converted_checkpoint):
    """The golden-data InstructSeg checkpoint, converted (recognised as InstructSeg from its architectures)."""
    return converted_checkpoint("instructseg_forward_tiny")


@pytest.fixture(scope="module")
def processor(converted):
    return HyperSegProcessor.from_pretrained(converted)


def load_model(folder) -> HyperSegForUniversalSegmentation:
    model = HyperSegForUniversalSegmentation.from_pretrained(folder)
    # InstructSeg's own modules, not HyperSeg's: otherwise this module would test the HyperSeg recipe again
    assert model.config.perceiver_type == "object_aware" and model.config.text_fusion == "vmtf"
    assert model.config.prompt_heads == ["seg"]
    return model


def referring_dataset(processor, num_samples: int, seed: int):
    """Synthetic referring rows at the processor's backbone size (it resizes them to SigLIP's input itself)."""
    size = processor.image_processor.backbone_size
    return synthetic_dataset(num_samples, seed=seed, tasks=("referring",), height=size, width=size)


def test_lora_recipe_trains_instructseg_modules_and_gradients_reach_them(converted, processor):
    model = prepare_for_training(load_model(converted), "lora")
    randomize_lora(model)  # B = 0 would give A no gradient
    model.train()
    batch = HyperSegDataCollator(processor)(list(referring_dataset(processor, 2, seed=5)))
    assert any(len(masks) for masks in batch["mask_labels"]), "no referring target in the batch"
    loss = model(**batch).loss
    assert torch.isfinite(loss)
    loss.backward()

    trainable, frozen = check_gradients(model)
    check_lora_recipe(trainable, frozen)
    for projection in ("q_proj", "v_proj"):
        for factor in ("lora_A", "lora_B"):
            assert any(".language_model." in name and f"{projection}.{factor}" in name for name in trainable)
    for module in ("perceiver", "text_fusion"):  # the object-aware perceiver and the text fusion, whole
        # PEFT runs the `modules_to_save` copy and keeps the loaded weights frozen as `original_module`
        live = [
            name for name, _ in model.named_parameters() if f".{module}." in name and ".original_module." not in name
        ]
        assert live and all(f".{module}.modules_to_save." in name and name in trainable for name in live), module
    for module in ("vision_tower", "backbone", "multi_modal_projector"):  # SigLIP, Swin, the vision projector
        assert not any(f".{module}." in name for name in trainable), module


def test_trainer_steps_change_the_trainable_weights_only(converted, processor, tmp_path):
    model = prepare_for_training(load_model(converted), "lora")
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    trainer = HyperSegTrainer(
        model=model,
        args=training_args(tmp_path, max_steps=2),
        train_dataset=referring_dataset(processor, 4, seed=6),
        data_collator=HyperSegDataCollator(processor),
        processing_class=processor,
    )
    trainer.train()
    assert trainer.state.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses))), losses

    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    same = {name: torch.equal(parameter, before[name]) for name, parameter in after.items()}
    unchanged = [name for name, parameter in after.items() if parameter.requires_grad and same[name]]
    changed = [name for name, parameter in after.items() if not parameter.requires_grad and not same[name]]
    assert not unchanged, f"{len(unchanged)} trainable parameters did not change: {unchanged[:5]}"
    assert not changed, f"{len(changed)} frozen parameters changed: {changed[:5]}"


def test_exported_folder_loads_without_package_and_matches_the_package(converted, tmp_path):
    assert check_hub_folder(converted) == []
    card = tmp_path / "card.md"
    card.write_text(MODEL_CARD)
    hub_folder = tmp_path / "hub_folder"
    export(converted, hub_folder, card, REPO_ID)
    assert f'"{REPO_ID}"' in (hub_folder / "README.md").read_text()
    # the converted folder by path, the export by repo id; both against the package on the converted folder
    check_without_package(tmp_path, converted, REPO_ID, hub_folder=hub_folder)
