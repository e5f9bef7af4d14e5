"""The linear probes of `hyperseg.training.probe_states` find position and colour where they are, and only there."""

import numpy as np
import pytest
from conftest import REPO_ROOT

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegProcessor
from hyperseg.training.probe_states import collect_object_states, linear_probes
from hyperseg.training.synthetic import COLORS, random_scene

SHIPPED = REPO_ROOT / "checkpoints" / "hyperseg-tiny-shapes"


def _objects(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.uniform(10, 118, count),
        "y": rng.uniform(10, 118, count),
        "color": np.array(list(COLORS))[rng.integers(len(COLORS), size=count)],
    }


def test_probes_read_position_and_colour_that_the_states_encode():
    objects = _objects(600)
    one_hot = (objects["color"][:, None] == np.array(list(COLORS))[None]).astype(float)
    noise = np.random.default_rng(1).normal(size=(600, 20))
    objects["states"] = np.concatenate([objects["x"][:, None], objects["y"][:, None], one_hot, noise], axis=1)
    probes = linear_probes(objects)
    assert probes["R2_x"] > 0.99 and probes["R2_y"] > 0.99
    accuracies = [value for name, value in probes.items() if name.startswith("accuracy_")]
    assert len(accuracies) == 6 and min(accuracies) == 1.0


def test_probes_find_nothing_in_states_that_carry_nothing():
    objects = _objects(600)
    objects["states"] = np.random.default_rng(2).normal(size=(600, 20))
    probes = linear_probes(objects)
    assert probes["R2_x"] < 0.1 and probes["R2_y"] < 0.1
    assert all(0.35 < value < 0.65 for name, value in probes.items() if name.startswith("accuracy_"))


def test_object_states_are_one_decoder_state_per_shape():
    model = HyperSegForUniversalSegmentation.from_pretrained(SHIPPED).eval()
    processor = HyperSegProcessor.from_pretrained(SHIPPED)
    collected = collect_object_states(model, processor, num_scenes=5, seed=7, batch_size=2)
    rng = np.random.default_rng(7)
    shapes = [shape for _ in range(5) for shape in random_scene(rng).shapes]
    assert collected["states"].shape == (len(shapes), model.config.mask_decoder_hidden_size)
    assert list(collected["x"]) == [shape.x for shape in shapes]
    assert list(collected["color"]) == [shape.color for shape in shapes]
    # the hook is gone afterwards
    assert not model.mask_decoder.seg_head._forward_pre_hooks


def test_too_few_objects_are_rejected():
    objects = _objects(1)
    objects["states"] = np.zeros((1, 4))
    with pytest.raises(ValueError, match="1 objects cannot be split"):
        linear_probes(objects)
