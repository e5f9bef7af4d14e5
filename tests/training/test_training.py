"""Training behaviour: which parameters learn, over-fitting a batch, exact resume, PEFT round trip, bad data."""

import numpy as np
import pytest
import torch
from training_helpers import (
    IMAGE_SIZE,
    check_gradients,
    check_lora_recipe,
    randomize_lora,
    tiny_model,
    tiny_processor,
    training_args,
)

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.training import HyperSegDataCollator, HyperSegTrainer, load_adapter, prepare_for_training
from hyperseg.training.recipe import save_adapter
from hyperseg.training.synthetic import synthetic_dataset
from hyperseg.training.trainer import clip_loss

TASKS = ("referring", "panoptic", "interactive", "referring_video", "chat")


@pytest.fixture(scope="module")
def processor():
    return tiny_processor()


@pytest.fixture(scope="module")
def batches(processor):
    """One batch of two samples per task, every kind of head and the video and chat paths."""
    torch.manual_seed(0)
    collator = HyperSegDataCollator(processor)
    return {
        task: collator(list(synthetic_dataset(2, seed=2, tasks=(task,), height=IMAGE_SIZE, width=IMAGE_SIZE)))
        for task in TASKS
    }


def batch_loss(model, batch) -> torch.Tensor:
    if "video_frames" in batch:
        return clip_loss(model, batch["video_frames"])[0]
    return model(**batch).loss


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_gradients_reach_every_trainable_parameter_and_no_frozen_one(batches, mode):
    model = prepare_for_training(tiny_model(), mode)
    randomize_lora(model)
    model.train()
    for batch in batches.values():
        batch_loss(model, batch).backward()
    trainable, frozen = check_gradients(model)
    if mode == "full":
        assert not frozen
        return
    check_lora_recipe(trainable, frozen)


def test_loss_of_a_fixed_batch_falls_by_90_percent(batches):
    torch.manual_seed(0)
    model = tiny_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(120):
        loss = batch_loss(model, batches["referring"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) <= 0.1 * losses[0], (losses[0], losses[-10:])


def _train(processor, dataset, output_dir, mode: str, resume: str | None = None, **overrides) -> list[float]:
    model = prepare_for_training(tiny_model(), mode)
    trainer = HyperSegTrainer(
        model=model,
        args=training_args(output_dir, **overrides),
        train_dataset=dataset,
        data_collator=HyperSegDataCollator(processor),
        processing_class=processor,
    )
    trainer.train(resume_from_checkpoint=resume)
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_resume_gives_the_losses_of_an_uninterrupted_run(processor, tmp_path, mode):
    # mixed tasks (class-name shuffles, prompt draws, point sampling: every random draw must be restored)
    dataset = synthetic_dataset(
        12, seed=3, tasks=("referring", "panoptic", "interactive"), height=IMAGE_SIZE, width=IMAGE_SIZE
    )
    uninterrupted = _train(processor, dataset, tmp_path / "a", mode, max_steps=6, save_strategy="steps", save_steps=3)
    resumed = _train(processor, dataset, tmp_path / "a", mode, resume=str(tmp_path / "a" / "checkpoint-3"), max_steps=6)
    # the resumed run's history starts with the 3 steps restored from the checkpoint
    assert len(uninterrupted) == len(resumed) == 6
    np.testing.assert_allclose(resumed[3:], uninterrupted[3:], rtol=0, atol=1e-6)


def _outputs(model, batch) -> dict:
    with torch.no_grad():
        outputs = model(**batch)
    return {
        "masks": outputs.masks_queries_logits,
        "seg": outputs.seg_queries_logits,
        "temporal": outputs.temporal_latents,
    }


def test_peft_adapter_save_load_merge_gives_identical_outputs(batches, tmp_path):
    model = prepare_for_training(tiny_model(), "lora")
    randomize_lora(model)
    with torch.no_grad():  # trained values for the fully trained parts too
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and "lora_" not in name:
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.eval()
    batch = batches["referring"]
    expected = _outputs(model, batch)
    save_adapter(model, tmp_path / "adapter")

    loaded = load_adapter(tiny_model(), tmp_path / "adapter").eval()  # the same base weights (seed 0)
    merged = loaded.merge_and_unload()
    assert isinstance(merged, HyperSegForUniversalSegmentation)
    merged.save_pretrained(tmp_path / "merged")
    reloaded = HyperSegForUniversalSegmentation.from_pretrained(tmp_path / "merged").eval()
    untouched = tiny_model().eval()
    for name, candidate in (("merged", merged), ("merged and reloaded", reloaded)):
        actual = _outputs(candidate, batch)
        for key, value in expected.items():
            torch.testing.assert_close(actual[key], value, rtol=1e-5, atol=1e-5, msg=f"{name}: {key}")
    # the adapter really changes the model
    assert not torch.allclose(_outputs(untouched, batch)["masks"], expected["masks"], atol=1e-3)


def test_bad_training_data_fails_before_the_first_step(processor, tmp_path):
    dataset = synthetic_dataset(4, seed=4, tasks=("panoptic",), height=IMAGE_SIZE, width=IMAGE_SIZE)

    def corrupt(row):
        if row["index"] == 2:
            row["segments"] = [dict(segment, category_id=9) for segment in row["segments"]]
        return row

    dataset = dataset.map(corrupt)
    model = prepare_for_training(tiny_model(), "full")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = HyperSegTrainer(
        model=model,
        args=training_args(tmp_path, per_device_train_batch_size=4, max_steps=2),
        train_dataset=dataset,
        data_collator=HyperSegDataCollator(processor),
    )
    with pytest.raises(ValueError, match="sample 2: segment 1 has class id 9, outside the 5 class names"):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())
