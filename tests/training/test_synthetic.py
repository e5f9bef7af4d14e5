"""The synthetic shapes data: deterministic, and every annotation agrees with the pixels and the scene."""

import re

import numpy as np
import pytest

from hyperseg.training.data import TRAINING_FEATURES
from hyperseg.training.synthetic import (
    COLORED_SHAPE_NAMES,
    COLORS,
    SHAPES,
    SHAPES_CLASS_NAMES,
    STUFF,
    SYNTHETIC_TASKS,
    expression_kind,
    random_scene,
    referring_expression,
    synthetic_dataset,
    synthetic_example,
)

EXPRESSION = re.compile(
    r"the (?:(\w+) )?(circle|square|triangle)"
    r"(?: (left of|right of|above|below) the (\w+) (\w+)| (on the left|on the right|at the top|at the bottom))?$"
)
EXTREMES = {"on the left": ("x", 1), "on the right": ("x", -1), "at the top": ("y", 1), "at the bottom": ("y", -1)}


def _side(shape, anchor, relation) -> bool:
    """Whether `shape`'s centre lies on the `relation` side of `anchor`'s centre (the plain reading)."""
    return {
        "left of": shape.x < anchor.x,
        "right of": shape.x > anchor.x,
        "above": shape.y < anchor.y,
        "below": shape.y > anchor.y,
    }[relation]


def _resolve(expression: str, shapes) -> list[int]:
    """Indices of the shapes an expression describes, read independently of the generator."""
    color, kind, relation, anchor_color, anchor_kind, extreme = EXPRESSION.match(expression).groups()
    candidates = [i for i, s in enumerate(shapes) if s.shape == kind and color in (None, s.color)]
    if extreme is not None:  # the look-alike whose centre lies furthest that way
        axis, sign = EXTREMES[extreme]
        return [min(candidates, key=lambda i: sign * getattr(shapes[i], axis))]
    if relation is None:
        return candidates
    anchors = [s for s in shapes if (s.color, s.shape) == (anchor_color, anchor_kind)]
    assert len(anchors) == 1, f"the anchor of {expression!r} is ambiguous"
    return [i for i in candidates if _side(shapes[i], anchors[0], relation)]


def test_rows_are_deterministic_per_seed():
    count = len(SYNTHETIC_TASKS)
    first = synthetic_dataset(count, seed=3, tasks=SYNTHETIC_TASKS, height=48, width=64)
    again = synthetic_dataset(count, seed=3, tasks=SYNTHETIC_TASKS, height=48, width=64)
    other = synthetic_dataset(count, seed=4, tasks=SYNTHETIC_TASKS, height=48, width=64)
    assert first.features == TRAINING_FEATURES
    # instance_by_color rows are instance rows of another vocabulary
    assert list(first["task"]) == [task.replace("_by_color", "") for task in SYNTHETIC_TASKS]
    for index in range(count):
        a, b = first[index], again[index]
        images = [a["image"]] if a["image"] is not None else a["frames"]
        images_again = [b["image"]] if b["image"] is not None else b["frames"]
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(images, images_again))
        assert (a["text"], a["target_ids"], a["segments"], a["answer"]) == (
            b["text"],
            b["target_ids"],
            b["segments"],
            b["answer"],
        )
    assert not np.array_equal(np.asarray(first[0]["image"]), np.asarray(other[0]["image"]))


def test_referring_expressions_single_out_their_target():
    rng = np.random.default_rng(0)
    relational = 0
    for _ in range(300):
        shapes = list(random_scene(rng, 96, 96, duplicate_probability=0.6).shapes)
        for target in range(len(shapes)):
            expression = referring_expression(shapes, target, rng)
            if expression is None:
                continue
            relational += expression.count(" ") > 2
            assert _resolve(expression, shapes) == [target], expression
    assert relational > 50  # relations are really exercised


def test_referring_rows_mark_the_named_object():
    dataset = synthetic_dataset(40, seed=5, tasks=("referring", "reasoning"), height=96, width=96)
    for row in dataset:
        segmentation = np.asarray(row["segmentation"])
        target = np.isin(segmentation, row["target_ids"])
        assert target.any()
        words = re.findall(r"\w+", row["text"])
        colors = [word for word in words if word in COLORS]
        if colors:  # the first colour named is the target's own
            mean = np.asarray(row["image"])[target].mean(0)
            assert np.abs(mean - COLORS[colors[0]]).max() < 12, (row["text"], mean)
        else:  # "the triangle": the only shape of its kind
            kinds = {s["id"]: SHAPES_CLASS_NAMES[s["category_id"]] for s in row["segments"] if s["isthing"]}
            assert list(kinds.values()).count(words[-1]) == 1, row["text"]
            assert kinds[row["target_ids"][0]] == words[-1], row["text"]


def test_panoptic_rows_cover_every_pixel_with_things_and_stuff():
    dataset = synthetic_dataset(20, seed=6, tasks=("panoptic",), height=96, width=128)
    for row in dataset:
        assert row["class_names"] == list(SHAPES_CLASS_NAMES)
        segmentation = np.asarray(row["segmentation"])
        assert segmentation.shape == (96, 128) and row["image"].size == (128, 96)
        ids = {segment["id"]: segment for segment in row["segments"]}
        assert set(np.unique(segmentation)) <= set(ids) and 0 not in np.unique(segmentation)
        things = [s for s in row["segments"] if s["isthing"]]
        stuff = [s for s in row["segments"] if not s["isthing"]]
        assert 2 <= len(things) <= 4
        assert {SHAPES_CLASS_NAMES[s["category_id"]] for s in stuff} == set(STUFF)
        assert all(SHAPES_CLASS_NAMES[s["category_id"]] in SHAPES for s in things)


def test_instance_by_color_rows_name_colour_and_shape_of_every_thing():
    dataset = synthetic_dataset(20, seed=9, tasks=("instance_by_color",), height=96, width=96)
    for row in dataset:
        assert row["task"] == "instance" and row["class_names"] == list(COLORED_SHAPE_NAMES)
        segmentation, image = np.asarray(row["segmentation"]), np.asarray(row["image"])
        unlisted = set(np.unique(segmentation)) - {s["id"] for s in row["segments"]}
        assert len(unlisted) == 2  # sky and ground
        assert 2 <= len(row["segments"]) <= 4
        # the same scene as the plain instance row of this seed and index, whose classes are the shapes alone
        plain = synthetic_example("instance", seed=9, index=row["index"], height=96, width=96)
        kinds = {s["id"]: SHAPES_CLASS_NAMES[s["category_id"]] for s in plain["segments"]}
        for segment in row["segments"]:
            color, kind = COLORED_SHAPE_NAMES[segment["category_id"]].split()
            mask = segmentation == segment["id"]
            assert np.abs(image[mask].mean(0) - COLORS[color]).max() < 12, (row["index"], color)
            assert segment["isthing"] and kind == kinds[segment["id"]], (row["index"], kind)


def test_video_rows_move_the_target_across_frames():
    dataset = synthetic_dataset(6, seed=7, tasks=("referring_video",), height=96, width=96, num_frames=4)
    moved = 0
    for row in dataset:
        assert row["image"] is None and len(row["frames"]) == len(row["segmentations"]) == 4
        masks = [np.isin(np.asarray(s), row["target_ids"]) for s in row["segmentations"]]
        assert masks[0].any()
        moved += not np.array_equal(masks[0], masks[-1])
    assert moved == len(dataset)


def test_chat_answers_describe_the_scene():
    dataset = synthetic_dataset(30, seed=8, tasks=("chat",))
    for row in dataset:
        things = [s for s in row["segments"] if s["isthing"]]
        if row["text"] == "How many shapes are there?":
            assert row["answer"] == ("zero", "one", "two", "three", "four")[len(things)]
        elif row["text"].startswith("What color"):
            assert row["answer"] in COLORS
        else:
            assert row["answer"] in SHAPES


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="unknown synthetic task 'depth'"):
        synthetic_dataset(2, tasks=("referring", "depth"))


def test_duplicate_probability_controls_look_alike_scenes():
    def look_alike_share(probability):
        # instance_by_color rows name every shape by colour and kind
        rows = [
            synthetic_example("instance_by_color", 3, index, 64, 64, duplicate_probability=probability)
            for index in range(60)
        ]
        classes = [[segment["category_id"] for segment in row["segments"]] for row in rows]
        return np.mean([len(set(ids)) < len(ids) for ids in classes])

    # every scene repeats a shape at 1.0; at 0.0 only chance repeats remain (each shape is one of twelve)
    assert look_alike_share(1.0) == 1.0
    assert look_alike_share(0.0) < 0.45  # chance alone: about a quarter of the scenes
    with pytest.raises(ValueError, match="duplicate_probability must lie in \\[0, 1\\], got 1.5"):
        synthetic_dataset(2, duplicate_probability=1.5)


def test_every_referring_expression_has_a_kind():
    rng = np.random.default_rng(1)
    kinds = []
    for _ in range(200):
        shapes = list(random_scene(rng, 96, 96, duplicate_probability=0.6).shapes)
        for target in range(len(shapes)):
            expression = referring_expression(shapes, target, rng)
            if expression is not None:
                kinds.append(expression_kind(expression))
                colour, _, relation, _, _, extreme = EXPRESSION.match(expression).groups()
                expected = "colour and shape" if colour else "shape"
                expected = "relation" if relation else "position" if extreme else expected
                assert kinds[-1] == expected, expression
    assert set(kinds) == {"shape", "colour and shape", "relation", "position"}
    with pytest.raises(ValueError, match="'Which red object has no corners\\?' is not a referring expression"):
        expression_kind("Which red object has no corners?")
