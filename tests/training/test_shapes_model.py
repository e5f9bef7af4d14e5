"""The shipped tiny model (`checkpoints/hyperseg-tiny-shapes`, trained from scratch on synthetic shapes) still
reaches the numbers of its card on the card's held-out scenes (100 per task)."""

import pytest
from conftest import REPO_ROOT

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegProcessor
from hyperseg.training.evaluate_shapes import HELD_OUT_SEED, evaluate_shapes
from hyperseg.training.synthetic import SHAPES_CLASS_NAMES

SHIPPED = REPO_ROOT / "checkpoints" / "hyperseg-tiny-shapes"
CARD_SCENES = 100  # the held-out scenes of the card's results table


def test_shipped_weights_fit_in_the_repository():
    assert (SHIPPED / "model.safetensors").stat().st_size <= 25 * 2**20
    model = HyperSegForUniversalSegmentation.from_pretrained(SHIPPED)
    assert model.num_parameters() < 10_000_000
    # prompt-free calls (the image-segmentation pipeline) segment the shapes classes
    assert list(model.config.id2label.values()) == list(SHAPES_CLASS_NAMES)


@pytest.fixture(scope="module")
def held_out_results():
    processor = HyperSegProcessor.from_pretrained(SHIPPED)
    model = HyperSegForUniversalSegmentation.from_pretrained(SHIPPED)
    return evaluate_shapes(model, processor, num_samples=CARD_SCENES, seed=HELD_OUT_SEED, batch_size=10)


def test_referring_results_are_broken_down_by_kind_of_expression(held_out_results):
    referring = held_out_results["referring"]
    kinds = referring["by_expression"]
    assert sum(kind["samples"] for kind in kinds.values()) == CARD_SCENES
    # gIoU is a mean over samples, so the kinds' gIoUs weighted by their sample counts give it back
    weighted = sum(kind["samples"] * kind["gIoU"] for kind in kinds.values()) / CARD_SCENES
    assert abs(weighted - referring["gIoU"]) < 1e-9


def test_shipped_model_reaches_the_panoptic_target_on_held_out_scenes(held_out_results):
    assert held_out_results["panoptic"]["PQ"] >= 0.60, held_out_results["panoptic"]


def test_shipped_model_keeps_its_card_referring_quality(held_out_results):
    # the card: cIoU 0.745, gIoU 0.809 on these scenes
    referring = held_out_results["referring"]
    assert referring["cIoU"] >= 0.73 and referring["gIoU"] >= 0.79, referring


@pytest.mark.xfail(
    strict=True, reason="the shipped model reaches referring cIoU 0.745 on the card's scenes, short of the 0.80 target"
)
def test_shipped_model_reaches_the_referring_target_on_held_out_scenes(held_out_results):
    assert held_out_results["referring"]["cIoU"] >= 0.80, held_out_results["referring"]
