"""The shipped tiny model (`checkpoints/hyperseg-tiny-shapes`, trained from scratch on synthetic shapes) still
reaches the numbers of its card on held-out scenes."""

import pytest
from conftest import REPO_ROOT

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegProcessor
from hyperseg.training.evaluate_shapes import HELD_OUT_SEED, evaluate_shapes
from hyperseg.training.synthetic import SHAPES_CLASS_NAMES

SHIPPED = REPO_ROOT / "checkpoints" / "hyperseg-tiny-shapes"


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
    return evaluate_shapes(model, processor, num_samples=50, seed=HELD_OUT_SEED, batch_size=10)


def test_shipped_model_reaches_the_panoptic_target_on_held_out_scenes(held_out_results):
    assert held_out_results["panoptic"]["PQ"] >= 0.60, held_out_results["panoptic"]


@pytest.mark.xfail(
    strict=True, reason="the shipped model reaches referring cIoU 0.64 on these scenes (card), short of the 0.80 target"
)
def test_shipped_model_reaches_the_referring_target_on_held_out_scenes(held_out_results):
    assert held_out_results["referring"]["cIoU"] >= 0.80, held_out_results["referring"]
