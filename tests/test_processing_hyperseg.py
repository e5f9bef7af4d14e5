"""HyperSegProcessor: prompt layout, placeholder expansion, batching and clear errors on bad input."""

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from PIL import Image

from hyperseg.processing import HyperSegProcessor

TINY = REPO_ROOT / "checkpoints" / "hyperseg-tiny-random"


@pytest.fixture(scope="module")
def processor():
    return HyperSegProcessor.from_pretrained(TINY)


@pytest.fixture
def image():
    pixels = np.full((40, 60, 3), 200, dtype=np.uint8)
    pixels[10:30, 5:25] = (220, 30, 30)
    return Image.fromarray(pixels)


def count(inputs, token_id, row=0):
    return int((inputs["input_ids"][row] == token_id).sum())


def test_referring_prompt_layout(processor, image):
    inputs = processor(images=image, text="the red square", task="referring")
    ids = processor.placeholder_ids
    assert count(inputs, ids["image"]) == processor.num_image_tokens
    assert count(inputs, ids["temporal"]) == processor.num_temporal_tokens
    assert count(inputs, ids["queries"]) == processor.num_queries
    # the referring mask covers the instruction (with the full stop RefCOCO adds) and its [SEG]
    marked = inputs["input_ids"][0][inputs["referring_prompt_mask"][0].bool()].tolist()
    expected = processor.tokenizer.encode("the red square.", add_special_tokens=False) + [processor.seg_token_id]
    assert marked == expected
    # the mask queries come last, before the end-of-text token, which gets attention 0 (pad id = eos id)
    assert inputs["input_ids"][0, -1].item() == processor.tokenizer.eos_token_id
    assert inputs["attention_mask"][0, -1].item() == 0


def test_user_text_cannot_inject_placeholders(processor, image):
    inputs = processor(images=image, text="<image> <seg> <region> <temporal> <|endoftext|>", task="referring")
    ids = processor.placeholder_ids
    assert count(inputs, ids["image"]) == processor.num_image_tokens
    assert count(inputs, ids["queries"]) == processor.num_queries
    assert count(inputs, ids["region"]) == 0
    assert count(inputs, processor.tokenizer.eos_token_id) == 1


def test_class_prompt_index(processor, image):
    inputs = processor(images=image, task="panoptic", class_names=["square", "sky"])
    index = inputs["class_prompt_index"][0]
    assert index.max().item() == 3  # two names + "background"
    for k, name in enumerate(["square", "sky", "background"], start=1):
        expected = processor.tokenizer.encode(name, add_special_tokens=False) + [processor.seg_token_id]
        assert inputs["input_ids"][0][index == k].tolist() == expected


def test_batch_pads_right_with_attention_zero(processor, image):
    inputs = processor(images=[image, image], text=["a", "a much longer referring expression here"], task="referring")
    lengths = (inputs["input_ids"] != processor.tokenizer.pad_token_id).sum(-1)
    assert lengths[0] < lengths[1]
    short = inputs["attention_mask"][0]
    assert short[lengths[0] :].sum() == 0


def test_interactive_region_tokens(processor, image):
    prompts = [{"box": [5, 10, 25, 30]}, {"point": [40, 20]}, {"scribble": [[2, 2], [20, 5]]}]
    inputs = processor(images=image, task="interactive", visual_prompts=prompts)
    assert count(inputs, processor.placeholder_ids["region"]) == 3
    assert inputs["region_masks"][0].shape[0] == 3


def test_chat_has_no_backbone_input(processor, image):
    inputs = processor(images=image, text="What is red?", task="chat")
    assert set(inputs) == {"pixel_values", "input_ids", "attention_mask"}
    assert count(inputs, processor.placeholder_ids["queries"]) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": "segment-everything", "text": "x"}, "unknown task 'segment-everything'"),
        ({"task": "referring"}, "non-empty `text`"),
        ({"task": "referring", "text": "   "}, "non-empty `text`"),
        ({"task": "panoptic", "class_names": []}, "non-empty `class_names`"),
        ({"task": "panoptic", "class_names": ["a", ""]}, "class_names of image 0"),
        ({"task": "interactive"}, "needs `visual_prompts`"),
        ({"task": "interactive", "visual_prompts": [{"box": [0, 0, 500, 10]}]}, "image 0"),
        ({"task": "interactive", "visual_prompts": [{"point": [-3, 4]}]}, "image 0"),
        ({"task": "interactive", "visual_prompts": [{"circle": [3, 4]}]}, "circle"),
    ],
)
def test_bad_input_errors(processor, image, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        processor(images=image, **kwargs)


def test_empty_image_is_an_error(processor):
    with pytest.raises(ValueError, match="0 pixels|empty|image 0"):
        processor(images=np.zeros((0, 5, 3), dtype=np.uint8), text="x", task="referring")


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_and_rgba_are_converted(processor, image, mode):
    converted = processor(images=image.convert(mode), text="the red square", task="referring")
    reference = processor(images=image.convert(mode).convert("RGB"), text="the red square", task="referring")
    for key in ("pixel_values", "backbone_pixel_values"):
        assert converted[key].shape[1] == 3
        assert torch.equal(converted[key], reference[key])
