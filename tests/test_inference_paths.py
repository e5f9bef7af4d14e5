"""The inference fast paths give the results of the straightforward computation they replace.

- the vectorised multi-scale deformable attention equals transformers' per-level `grid_sample` version, also in
  bfloat16 (where transformers' version returns garbage on CPU) and for points far outside the maps;
- the mask decoder's mask predictor and masked cross-attention equal transformers' Mask2Former ones (per-head masks,
  `nn.MultiheadAttention`), also for pixel embeddings shared by several prompts, gradients included;
- the raw-size mask logits equal the original's two bilinear resizes, and the rules that need only some queries at
  full size give what they give on fully resized logits;
- several prompts on one image (the image encoded once, the shared prompt prefix run once) equal separate calls;
- a bfloat16 model runs every task from the processor's float32 inputs, and on the golden cases keeps the float32
  winning query wherever the float32 top-1 margin exceeds 0.05.
"""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from conftest import require_fixture
from parity_helpers import assert_close, interactive_prompts, load_case, raw_size_logits, run
from PIL import Image
from transformers.models.mask2former.modeling_mask2former import Mask2FormerMaskPredictor
from transformers.models.mask2former.modeling_mask2former import (
    multi_scale_deformable_attention as grid_sample_deformable_attention,
)

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.modeling.mask_decoder import MaskedCrossAttention, SharedPixelMaskPredictor
from hyperseg.modeling.pixel_decoder import multi_scale_deformable_attention
from hyperseg.modeling.shared_prefix import common_prefix_length
from hyperseg.processing import HyperSegProcessor, select_reference_frames
from hyperseg.processing.post_processing_hyperseg import (
    instance_inference,
    panoptic_inference,
    referring_inference,
    region_inference,
    resize_mask_logits,
)


@pytest.fixture(scope="module")
def hyperseg(converted_checkpoint):
    return converted_checkpoint("original_tiny")


@pytest.fixture(scope="module")
def instructseg(converted_checkpoint):
    return converted_checkpoint("instructseg_forward_tiny")


def load(folder, dtype=torch.float32):
    processor = HyperSegProcessor.from_pretrained(folder)
    return processor, HyperSegForUniversalSegmentation.from_pretrained(folder, dtype=dtype).eval()


# Multi-scale deformable attention


def random_attention_inputs(batch_size, spatial_shapes, num_heads=2, head_dim=4, num_points=4, spread=0.2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    length = sum(height * width for height, width in spatial_shapes)
    num_levels = len(spatial_shapes)
    value = torch.randn(batch_size, length, num_heads, head_dim, generator=generator)
    centres = torch.rand(batch_size, length, 1, 1, 1, 2, generator=generator)
    offsets = spread * torch.randn(batch_size, length, num_heads, num_levels, num_points, 2, generator=generator)
    weights = torch.rand(batch_size, length, num_heads, num_levels, num_points, generator=generator)
    return value, centres + offsets, weights / weights.sum((-1, -2), keepdim=True)


def to_pixels(locations, spatial_shapes):
    """`grid_sample`'s normalised (x, y) locations as pixel coordinates of each level."""
    sizes = torch.tensor([[width, height] for height, width in spatial_shapes], dtype=locations.dtype)
    return locations * sizes[:, None] - 0.5


@pytest.mark.parametrize("spread", [0.05, 2.0])  # 2.0: many points far outside the maps
def test_deformable_attention_equals_grid_sample(spread):
    spatial_shapes = [(4, 5), (8, 10), (16, 20)]
    value, locations, weights = random_attention_inputs(3, spatial_shapes, spread=spread)
    expected = grid_sample_deformable_attention(value.double(), spatial_shapes, locations.double(), weights.double())
    actual = multi_scale_deformable_attention(value, spatial_shapes, to_pixels(locations, spatial_shapes), weights)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual.double(), expected, rtol=0, atol=1e-5)


def test_deformable_attention_samples_in_float32_for_bfloat16_values():
    spatial_shapes = [(8, 8), (16, 16), (32, 32)]
    value, locations, weights = random_attention_inputs(2, spatial_shapes, num_heads=4, head_dim=8)
    value = value.bfloat16()
    expected = grid_sample_deformable_attention(value.double(), spatial_shapes, locations.double(), weights.double())
    pixels = to_pixels(locations, spatial_shapes)
    actual = multi_scale_deformable_attention(value, spatial_shapes, pixels, weights.bfloat16())
    assert actual.dtype == torch.bfloat16
    # only the bfloat16 rounding of the attention weights and of the output remains
    torch.testing.assert_close(actual.double(), expected, rtol=2e-2, atol=2e-2)


def test_batch_items_are_independent():
    spatial_shapes = [(3, 4), (6, 8), (12, 16)]
    value, locations, weights = random_attention_inputs(3, spatial_shapes)
    pixels = to_pixels(locations, spatial_shapes)
    batched = multi_scale_deformable_attention(value, spatial_shapes, pixels, weights)
    for index in range(3):
        single = multi_scale_deformable_attention(
            value[index : index + 1], spatial_shapes, pixels[index : index + 1], weights[index : index + 1]
        )
        torch.testing.assert_close(batched[index : index + 1], single, rtol=0, atol=1e-6)


# Mask decoder


@pytest.mark.parametrize("shared", [False, True], ids=["own-pixels", "shared-pixels"])
def test_mask_predictor_equals_mask2former(shared):
    torch.manual_seed(0)
    hidden, heads, channels, batch, queries = 32, 4, 16, 3, 8
    reference = Mask2FormerMaskPredictor(hidden, heads, channels)
    predictor = SharedPixelMaskPredictor(hidden, heads, channels)
    predictor.load_state_dict(reference.state_dict())
    states = torch.randn(queries, batch, hidden)
    # one image read by `batch` prompts is expanded (stride 0), as the model passes it
    pixels = torch.randn(1 if shared else batch, channels, 20, 24).expand(batch, -1, -1, -1)

    masks, attention_mask = predictor(states, pixels, (10, 12))
    expected_masks, expected_attention_mask = reference(states, pixels.contiguous(), (10, 12))
    torch.testing.assert_close(masks, expected_masks, rtol=0, atol=1e-5)
    assert attention_mask.shape == (batch, 1, queries, 120)
    assert torch.equal(attention_mask.expand(-1, heads, -1, -1).flatten(0, 1), expected_attention_mask)


def test_masked_cross_attention_equals_multihead_attention():
    torch.manual_seed(0)
    hidden, heads, batch, queries, keys = 32, 4, 3, 8, 120
    reference = torch.nn.MultiheadAttention(hidden, heads)
    attention = MaskedCrossAttention(hidden, heads)
    attention.load_state_dict(reference.state_dict())
    query = torch.randn(queries, batch, hidden)
    key, value = torch.randn(2, keys, batch, hidden)
    blocked = torch.rand(batch, 1, queries, keys) < 0.7  # True: may not look (the decoder leaves no row all True)
    blocked[..., 0] = False

    output, weights = attention(query, key, value, attn_mask=blocked)
    expected, _ = reference(query, key, value, attn_mask=blocked.expand(-1, heads, -1, -1).flatten(0, 1))
    assert weights is None
    torch.testing.assert_close(output, expected, rtol=0, atol=1e-6)
    output.square().sum().backward()
    expected.square().sum().backward()
    for name, parameter in attention.named_parameters():
        torch.testing.assert_close(parameter.grad, reference.get_parameter(name).grad, rtol=0, atol=1e-5)


# Post-processing


def original_resize(mask_logits, padded_size, valid_size, target_size):
    """The original's computation: bilinear upsampling to the padded input, crop, bilinear resize."""
    upsampled = F.interpolate(mask_logits[None], size=padded_size, mode="bilinear", align_corners=False)
    cropped = upsampled[:, :, : valid_size[0], : valid_size[1]]
    return F.interpolate(cropped, size=target_size, mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize(
    "decoder_size, padded_size, valid_size, target_size",
    [
        ((32, 32), (128, 128), (90, 128), (84, 120)),  # the golden referring case
        ((32, 32), (128, 128), (128, 73), (112, 64)),  # a portrait image
        ((256, 256), (1024, 1024), (768, 1024), (480, 640)),  # 640x480 at real size
        ((256, 256), (1024, 1024), (1024, 1024), (2000, 2000)),  # upsampling beyond the padded size
        ((16, 24), (64, 96), (50, 96), (31, 59)),  # non-square decoder map
    ],
)
def test_resize_mask_logits_equals_the_original(decoder_size, padded_size, valid_size, target_size):
    mask_logits = 10 * torch.randn(5, *decoder_size, generator=torch.Generator().manual_seed(0))
    expected = original_resize(mask_logits, padded_size, valid_size, target_size)
    actual = resize_mask_logits(mask_logits, padded_size, valid_size, target_size)
    assert actual.shape == (5, *target_size)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5 * expected.abs().max().item())


def test_rules_resizing_only_their_queries_equal_full_resizing():
    generator = torch.Generator().manual_seed(1)
    sizes = {"padded_size": (128, 128), "valid_size": (96, 128), "target_size": (60, 80)}
    mask_logits = 4 * torch.randn(12, 32, 32, generator=generator)
    class_logits = 3 * torch.randn(12, 5, generator=generator)
    full = resize_mask_logits(mask_logits, **sizes)
    resize = partial(resize_mask_logits, **sizes)
    thresholds = {"threshold": 0.3, "overlap_mask_area_threshold": 0.2}

    segmentation, segments = panoptic_inference(class_logits, mask_logits, resize=resize, **thresholds)
    expected_segmentation, expected_segments = panoptic_inference(class_logits, full, **thresholds)
    assert segments and segments == expected_segments
    assert torch.equal(segmentation, expected_segmentation)

    for actual, expected in zip(
        instance_inference(class_logits, mask_logits, resize=resize), instance_inference(class_logits, full)
    ):
        assert torch.equal(actual, expected)


# Several prompts on one image


def assert_same_outputs(together, separate, index, heads):
    assert_close(together.masks_queries_logits[index : index + 1], separate.masks_queries_logits, "mask logits")
    for head in heads:
        assert_close(getattr(together, head)[index : index + 1], getattr(separate, head), head)


def count_language_model_tokens(model):
    """Records the (batch, length) of every call of the language model."""
    shapes = []
    handle = model.language_model.register_forward_hook(
        lambda module, args, kwargs, output: shapes.append(tuple(kwargs["inputs_embeds"].shape[:2])), with_kwargs=True
    )
    return shapes, handle


def test_referring_expressions_on_one_image_equal_separate_calls(hyperseg):
    processor, model = load(hyperseg)
    image = Image.open(require_fixture("original_tiny", "a_referring", "image.png"))
    texts = ["the red square on the left", "a circle", "the big blue shape in the top right corner"]
    inputs = processor(images=image, text=texts, task="referring")
    assert inputs["pixel_values"].shape[0] == 1 and inputs["input_ids"].shape[0] == 3

    shapes, handle = count_language_model_tokens(model)
    try:
        together, _ = run(model, inputs)
    finally:
        handle.remove()
    length = inputs["input_ids"].shape[1]
    prefix_length = shapes[0][1]
    assert shapes == [(1, prefix_length), (3, length - prefix_length)]
    # the prefix ends where the expressions start: system text, image tokens, latents and the instruction template
    first_expression_token = int(inputs["referring_prompt_mask"][0].nonzero()[0])
    assert prefix_length >= first_expression_token - 1

    sizes = [image.size[::-1]] * len(texts)
    results = processor.post_process_referring_segmentation(together, target_sizes=sizes)
    for index, text in enumerate(texts):
        separate, _ = run(model, processor(images=image, text=text, task="referring"))
        assert_same_outputs(together, separate, index, ["seg_queries_logits"])
        expected = processor.post_process_referring_segmentation(separate, target_sizes=sizes[:1])[0]
        assert results[index]["query_index"] == expected["query_index"]
        assert abs(results[index]["score"] - expected["score"]) <= 1e-4


def test_class_name_sets_on_one_image_equal_separate_calls(hyperseg):
    processor, model = load(hyperseg)
    image = Image.open(require_fixture("original_tiny", "a_referring", "image.png"))
    class_name_sets = [["square", "circle"], ["grass", "sky"], ["red square", "blue circle"]]
    together, _ = run(model, processor(images=image, class_names=class_name_sets, task="panoptic"))
    for index, class_names in enumerate(class_name_sets):
        separate, _ = run(model, processor(images=image, class_names=class_names, task="panoptic"))
        assert_same_outputs(together, separate, index, ["class_queries_logits"])


def test_video_expressions_with_their_own_latents_equal_separate_calls(hyperseg):
    processor, model = load(hyperseg)
    folder, meta, _ = load_case("original_tiny", "e_reasoning_video_3frames")
    frames = [Image.open(folder / name) for name in meta["frames"]]
    texts = [meta["expression"], "the object that moves"]
    latents, separate_latents = None, [None, None]
    for frame in frames:
        together, _ = run(model, processor(images=frame, text=texts, task="reasoning_video"), temporal_latents=latents)
        for index, text in enumerate(texts):
            inputs = processor(images=frame, text=text, task="reasoning_video")
            separate, _ = run(model, inputs, temporal_latents=separate_latents[index])
            assert_same_outputs(together, separate, index, ["seg_queries_logits", "temporal_latents"])
            separate_latents[index] = separate.temporal_latents
        latents = together.temporal_latents


def test_instructseg_prompts_on_one_image_equal_separate_calls(instructseg):
    processor, model = load(instructseg)
    folder, meta, _ = load_case("instructseg_forward_tiny", "b_rvos_frames")
    frames = [Image.open(folder / name) for name in meta["frames"]][:3]
    references = [frames[i] for i in select_reference_frames(1, len(frames), num_reference_frames=2)]
    texts = ["the red box moving right", "the circle"]
    # the object-aware perceiver reads the prompt: only the system text is shared, the frames are still encoded once
    together, _ = run(
        model, processor(images=frames[1], reference_frames=references, text=texts, task="referring_video")
    )
    for index, text in enumerate(texts):
        inputs = processor(images=frames[1], reference_frames=references, text=text, task="referring_video")
        separate, _ = run(model, inputs)
        assert_same_outputs(together, separate, index, ["seg_queries_logits"])


def test_common_prefix_length():
    embeds = torch.arange(24.0).view(1, 6, 4).repeat(3, 1, 1)
    embeds[1, 4] += 1
    embeds[2, 5] += 1
    assert common_prefix_length(embeds, None) == 4
    attention_mask = torch.ones(3, 6, dtype=torch.long)
    attention_mask[0, 2] = 0
    assert common_prefix_length(embeds, attention_mask) == 2


# bfloat16


TASKS = {
    "referring": {"text": "the red square", "task": "referring"},
    "panoptic": {"class_names": ["square", "circle"], "task": "panoptic"},
    "interactive": {"visual_prompts": [{"box": [6, 8, 58, 62]}, {"point": [83, 42]}], "task": "interactive"},
    "video": {"text": "which one moves", "task": "reasoning_video"},
    "chat": {"text": "what colour is the square?", "task": "chat"},
}


@pytest.mark.parametrize("task", TASKS)
def test_bfloat16_model_runs_every_task_from_float32_inputs(hyperseg, task):
    processor, model = load(hyperseg, dtype=torch.bfloat16)
    assert all(parameter.dtype == torch.bfloat16 for parameter in model.parameters())
    image = Image.open(require_fixture("original_tiny", "a_referring", "image.png"))
    inputs = processor(images=image, **TASKS[task])
    if task == "chat":
        with torch.no_grad():
            assert model.generate(**inputs, max_new_tokens=2).shape[1] == inputs["input_ids"].shape[1] + 2
        return
    outputs, _ = run(model, inputs)
    assert outputs.masks_queries_logits.dtype == torch.bfloat16
    assert torch.isfinite(outputs.masks_queries_logits).all()
    size = [image.size[::-1]]
    if task == "panoptic":
        processor.post_process_panoptic_segmentation(outputs, target_sizes=size)
        processor.post_process_instance_segmentation(outputs, target_sizes=size)
        processor.post_process_semantic_segmentation(outputs, target_sizes=size)
    elif task == "interactive":
        processor.post_process_interactive_segmentation(outputs, target_sizes=size)
    else:
        processor.post_process_referring_segmentation(outputs, target_sizes=size)


def selection_scores(processor, outputs, size, heads="seg"):
    """Every query's final score (rows: one per visual prompt for `heads="region"`)."""
    logits = raw_size_logits(processor, outputs.masks_queries_logits[0], size)
    if heads == "region":
        return region_inference(outputs.region_queries_logits[0].float(), logits)
    return referring_inference(outputs.seg_queries_logits[0].float(), logits)


def golden_query_scores(folders, dtype) -> dict[str, torch.Tensor]:
    """Per golden selection (image case, video frame or visual prompt): every query's final score, in `dtype`."""
    scores = {}
    processor, model = load(folders["hyperseg"], dtype)
    for case, task in (("a_referring", "referring"), ("b_reasoning", "reasoning")):
        folder, meta, _ = load_case("original_tiny", case)
        image = Image.open(folder / meta["image"])
        text = meta.get("sentence") or meta["instruction_as_built"]
        outputs, _ = run(model, processor(images=image, text=text, task=task))
        scores[case] = selection_scores(processor, outputs, image.size[::-1])
    folder, meta, _ = load_case("original_tiny", "d_interactive")
    image = Image.open(folder / meta["image"])
    inputs = processor(images=image, task="interactive", visual_prompts=interactive_prompts(folder, meta))
    outputs, _ = run(model, inputs)
    for k, prompt_scores in enumerate(selection_scores(processor, outputs, image.size[::-1], heads="region")):
        scores[f"d_interactive prompt {k}"] = prompt_scores
    folder, meta, _ = load_case("original_tiny", "e_reasoning_video_3frames")
    latents = None
    for index, name in enumerate(meta["frames"]):
        frame = Image.open(folder / name)
        inputs = processor(images=frame, text=meta["expression"], task="reasoning_video")
        outputs, _ = run(model, inputs, temporal_latents=latents)
        scores[f"e_reasoning_video frame {index}"] = selection_scores(processor, outputs, frame.size[::-1])
        latents = outputs.temporal_latents

    processor, model = load(folders["instructseg"], dtype)
    for case, task in (("a_res", "referring"), ("d_reasonseg", "reasoning")):
        folder, meta, _ = load_case("instructseg_forward_tiny", case)
        image = Image.open(folder / meta["image"])
        outputs, _ = run(model, processor(images=image, text=meta.get("sentence") or meta["query"], task=task))
        scores[f"instructseg {case}"] = selection_scores(processor, outputs, image.size[::-1])
    for case, task in (("b_rvos_frames", "referring_video"), ("c_revos_frames", "reasoning_video")):
        folder, meta, _ = load_case("instructseg_forward_tiny", case)
        frames = [Image.open(folder / name) for name in meta["frames"]]
        for index, frame in enumerate(frames):
            references = [frames[i] for i in select_reference_frames(index, len(frames), meta["reference_frame_num"])]
            inputs = processor(images=frame, reference_frames=references, text=meta["expression"], task=task)
            outputs, _ = run(model, inputs)
            scores[f"instructseg {case} frame {index}"] = selection_scores(processor, outputs, frame.size[::-1])
    return scores


def test_bfloat16_keeps_the_winning_query_of_confident_golden_cases(hyperseg, instructseg):
    folders = {"hyperseg": hyperseg, "instructseg": instructseg}
    reference, bfloat16 = golden_query_scores(folders, torch.float32), golden_query_scores(folders, torch.bfloat16)
    confident = 0
    for name, scores in reference.items():
        top2 = scores.topk(2)
        if top2.values[0] - top2.values[1] > 0.05:
            confident += 1
            assert int(bfloat16[name].argmax()) == int(top2.indices[0]), f"{name}: bfloat16 picks another query"
    assert confident >= 3, f"only {confident} golden selections have a float32 margin above 0.05"
