"""
Every mode of the `image-segmentation` pipelines on a tiny random HyperSeg: transformers' stock pipeline (pixels
only -> the model's default prompt) and `HyperSegSegmentationPipeline` (no prompt, class names, referring /
reasoning text, boxes / points / scribbles / masks), batches of 3 images, a 1x1 and a 4000x3000 image, dtype, and
the errors for prompts that cannot be combined. Each mode is checked against the processor + model +
post-processing computed directly.
"""

import numpy as np
import pytest
import torch
from hub_helpers import TINY_CLASS_NAMES, random_image, single_torch_thread, tiny_model_and_processor  # noqa: F401
from transformers import ImageSegmentationPipeline, pipeline

from hyperseg.modeling import HyperSegSegmentationPipeline

IMAGE_SIZE = (48, 64)  # (height, width)
SINGULAR = {"boxes": "box", "points": "point", "scribbles": "scribble", "masks": "mask"}
VISUAL_PROMPTS = {
    "boxes": [[4, 6, 40, 30]],
    "points": [[50, 20], [10, 40]],
    "scribbles": [[[10, 40], [30, 44], [60, 42]]],
    "masks": [np.pad(np.ones((20, 20)), ((10, 18), (30, 14)))],
}


@pytest.fixture(scope="module")
def tiny():
    return tiny_model_and_processor()


@pytest.fixture(scope="module")
def segmenter(tiny):
    model, processor = tiny
    return HyperSegSegmentationPipeline(model=model, processor=processor)


def run_model(model, inputs):
    with torch.no_grad():
        return model(**inputs)


def result(label: str, score: float | None, mask: torch.Tensor) -> dict:
    return {"label": label, "score": score, "mask": mask.numpy().astype(np.uint8) * 255}


def expected_results(model, processor, images, subtask=None, prompt=None, class_names=None, **visual) -> list[list]:
    """
    What the pipeline must return for `images` run as one model batch (prompts as in the pipeline call, visual ones
    given as lists), computed with the processor, the model and the post-processing directly.
    """
    sizes = [(image.height, image.width) for image in images]
    if prompt is not None:
        inputs = processor(images=images, task=subtask or "referring", text=[prompt] * len(images))
        outputs = processor.post_process_referring_segmentation(run_model(model, inputs), target_sizes=sizes)
        return [[result(prompt, output["score"], output["mask"])] for output in outputs]
    if visual:
        prompts = [
            (f"{SINGULAR[kind]} {index}", {SINGULAR[kind]: value})
            for kind in visual
            for index, value in enumerate(visual[kind])
        ]
        inputs = processor(images=images, task="interactive", visual_prompts=[[p for _, p in prompts]] * len(images))
        outputs = processor.post_process_interactive_segmentation(run_model(model, inputs), target_sizes=sizes)
        return [
            [result(label, output["score"], output["mask"]) for (label, _), output in zip(prompts, per_image)]
            for per_image in outputs
        ]
    subtask = subtask or "panoptic"
    if class_names is None:  # the model's default prompt over id2label
        names, inputs = TINY_CLASS_NAMES, processor.image_processor(images=images, return_tensors="pt")
    else:
        names, inputs = class_names, processor(images=images, task=subtask, class_names=class_names)
    outputs = run_model(model, inputs)
    if subtask == "semantic":
        maps = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        return [
            [result(names[label], None, segmentation == label) for label in segmentation.unique().tolist()]
            for segmentation in maps
        ]
    post_process = getattr(processor, f"post_process_{subtask}_segmentation")
    outputs = post_process(
        outputs, threshold=0.0, mask_threshold=0.5, overlap_mask_area_threshold=0.5, target_sizes=sizes
    )
    return [
        [
            result(names[info["label_id"]], info["score"], output["segmentation"] == info["id"])
            for info in output["segments_info"]
        ]
        for output in outputs
    ]


def assert_same_results(actual: list[dict], expected: list[dict]) -> None:
    assert [(r["label"], r["score"]) for r in actual] == [(r["label"], r["score"]) for r in expected]
    for actual_result, expected_result in zip(actual, expected):
        assert np.array_equal(np.asarray(actual_result["mask"]), np.asarray(expected_result["mask"]))


def check_masks(results: list[dict], height: int, width: int) -> None:
    for output in results:
        assert output["mask"].mode == "L" and output["mask"].size == (width, height)
        assert set(np.unique(np.array(output["mask"]))) <= {0, 255}


# Stock pipeline and the default prompt


def test_model_without_input_ids_runs_the_default_prompt(tiny):
    model, processor = tiny
    image = random_image(*IMAGE_SIZE)
    prompted_inputs = processor(images=image, task="panoptic", class_names=TINY_CLASS_NAMES)
    pixels_only = run_model(model, processor.image_processor(images=image, return_tensors="pt"))
    prompted = run_model(model, prompted_inputs)
    assert torch.equal(pixels_only.class_queries_logits, prompted.class_queries_logits)
    assert torch.equal(pixels_only.masks_queries_logits, prompted.masks_queries_logits)
    # the config stores the prompt compactly: each placeholder run is one token
    collapsed = model.config.num_image_tokens + model.config.perceiver_num_latents + model.config.num_queries - 3
    assert len(model.config.default_prompt_inputs["input_ids"]) == prompted_inputs["input_ids"].shape[1] - collapsed


def test_default_prompt_errors(tiny):
    model, processor = tiny
    pixels = processor.image_processor(images=random_image(*IMAGE_SIZE), return_tensors="pt")
    config = model.config
    saved = config.default_prompt_inputs, config.id2label
    try:
        config.id2label = {0: "only one"}
        with pytest.raises(ValueError, match="names 4 classes but config.id2label has 1"):
            run_model(model, pixels)
        config.default_prompt_inputs = None
        with pytest.raises(ValueError, match="set_default_vocabulary"):
            run_model(model, pixels)
    finally:
        config.default_prompt_inputs, config.id2label = saved
    with pytest.raises(ValueError, match="input_ids, or pixel inputs"):
        model()


@pytest.mark.parametrize("subtask", ["panoptic", "instance", "semantic"])
def test_stock_pipeline_without_prompt(tiny, segmenter, subtask):
    model, processor = tiny
    stock = pipeline("image-segmentation", model=model, image_processor=processor.image_processor)
    assert type(stock) is ImageSegmentationPipeline
    image = random_image(*IMAGE_SIZE, seed=1)
    expected = expected_results(model, processor, [image], subtask=subtask)[0]
    assert expected, "nothing segmented: the comparison would be empty"
    stock_results = stock(image, subtask=subtask, threshold=0.0)
    assert_same_results(stock_results, expected)
    assert_same_results(segmenter(image, subtask=subtask, threshold=0.0), expected)
    check_masks(stock_results, *IMAGE_SIZE)


def test_stock_pipeline_batch_larger_than_the_decoder_depth(tiny):
    """The stock pipeline splits every list field of the output per image: inference returns no per-layer lists."""
    model, processor = tiny
    stock = pipeline("image-segmentation", model=model, image_processor=processor.image_processor)
    images = [random_image(40, 50, seed=seed) for seed in range(model.config.mask_decoder_layers)]
    batched = stock(images, batch_size=len(images), threshold=0.0)
    assert len(batched) == len(images)
    for image, results in zip(images, batched):
        assert_same_results(results, stock(image, threshold=0.0))


def test_pipeline_by_path_natively(tiny, tmp_path):
    """A saved folder registers our pipeline as its `image-segmentation` pipeline, so transformers asks for trust."""
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("image-segmentation", model=str(tmp_path))
    native = pipeline("image-segmentation", model=str(tmp_path), pipeline_class=HyperSegSegmentationPipeline)
    remote = pipeline("image-segmentation", model=str(tmp_path), trust_remote_code=True)
    assert type(native) is HyperSegSegmentationPipeline
    assert type(remote).__name__ == "HyperSegSegmentationPipeline" and type(remote) is not HyperSegSegmentationPipeline
    image = random_image(*IMAGE_SIZE, seed=2)
    assert_same_results(remote(image, prompt="the dog"), native(image, prompt="the dog"))


# Prompted modes


@pytest.mark.parametrize("subtask", ["panoptic", "instance", "semantic"])
def test_class_names(tiny, segmenter, subtask):
    model, processor = tiny
    image, class_names = random_image(*IMAGE_SIZE, seed=3), ["cat", "sofa", "floor"]
    expected = expected_results(model, processor, [image], subtask=subtask, class_names=class_names)[0]
    assert expected and {output["label"] for output in expected} <= set(class_names)
    assert_same_results(segmenter(image, class_names=class_names, subtask=subtask, threshold=0.0), expected)


@pytest.mark.parametrize("subtask", ["referring", "reasoning"])
def test_text_prompt(tiny, segmenter, subtask):
    model, processor = tiny
    image, text = random_image(*IMAGE_SIZE, seed=4), "the dog next to the sofa"
    expected = expected_results(model, processor, [image], subtask=subtask, prompt=text)[0]
    assert_same_results(segmenter(image, prompt=text, subtask=subtask), expected)


@pytest.mark.parametrize(
    "kinds, labels",
    [
        (("boxes",), ["box 0"]),
        (("points",), ["point 0", "point 1"]),
        (("scribbles",), ["scribble 0"]),
        (("masks",), ["mask 0"]),
        (("masks", "scribbles", "points", "boxes"), ["box 0", "point 0", "point 1", "scribble 0", "mask 0"]),
    ],
)
def test_visual_prompts(tiny, segmenter, kinds, labels):
    model, processor = tiny
    image = random_image(*IMAGE_SIZE, seed=5)
    actual = segmenter(image, **{kind: VISUAL_PROMPTS[kind] for kind in kinds})
    assert [output["label"] for output in actual] == labels  # one result per prompt: boxes, points, scribbles, masks
    ordered = {kind: VISUAL_PROMPTS[kind] for kind in VISUAL_PROMPTS if kind in kinds}
    assert_same_results(actual, expected_results(model, processor, [image], **ordered)[0])


def test_a_single_visual_prompt_needs_no_list(segmenter):
    image = random_image(*IMAGE_SIZE, seed=6)
    assert_same_results(segmenter(image, boxes=[4, 6, 40, 30]), segmenter(image, boxes=[[4, 6, 40, 30]]))
    assert_same_results(segmenter(image, points=[50, 20]), segmenter(image, points=[[50, 20]]))
    assert_same_results(
        segmenter(image, masks=VISUAL_PROMPTS["masks"][0]), segmenter(image, masks=VISUAL_PROMPTS["masks"])
    )


def test_image_given_by_path(segmenter, tmp_path):
    image = random_image(*IMAGE_SIZE, seed=15)
    image.save(tmp_path / "image.png")
    assert_same_results(segmenter(str(tmp_path / "image.png"), prompt="the dog"), segmenter(image, prompt="the dog"))


# Batches, extreme sizes, dtype


@pytest.mark.parametrize(
    "prompts",
    [
        {},
        {"subtask": "semantic"},
        {"class_names": ["cat", "sofa"], "subtask": "instance"},
        {"prompt": "the dog"},
        {"boxes": [[2, 2, 20, 20]], "points": [[5, 5]]},
    ],
    ids=["default", "default_semantic", "class_names", "prompt", "visual"],
)
def test_batch_of_three_images(tiny, segmenter, prompts):
    model, processor = tiny
    images = [random_image(48, 64, seed=7), random_image(30, 90, seed=8), random_image(64, 40, seed=9)]
    batched = segmenter(images, batch_size=3, threshold=0.0, **prompts)
    expected = expected_results(model, processor, images, **prompts)
    assert len(batched) == 3
    for image, results, expected_results_of_image in zip(images, batched, expected):
        assert_same_results(results, expected_results_of_image)
        check_masks(results, image.height, image.width)


def test_batch_with_a_prompt_per_image(tiny, segmenter):
    model, processor = tiny
    images = [random_image(48, 64, seed=10), random_image(48, 64, seed=11), random_image(48, 64, seed=12)]
    texts = ["the dog", "a very small cat on the left", "grass"]
    batched = segmenter([{"image": image, "prompt": text} for image, text in zip(images, texts)], batch_size=3)
    inputs = processor(images=images, task="referring", text=texts)
    outputs = processor.post_process_referring_segmentation(run_model(model, inputs), target_sizes=[IMAGE_SIZE] * 3)
    for results, text, output in zip(batched, texts, outputs):
        assert_same_results(results, [result(text, output["score"], output["mask"])])


@pytest.mark.parametrize("height, width", [(1, 1), (3000, 4000)], ids=["1x1", "4000x3000"])
def test_extreme_image_sizes(segmenter, height, width):
    image = random_image(height, width, seed=13)
    corner = [min(width, 1000), min(height, 1000)]  # a point or a thin scribble on 4000x3000 vanishes at 56x56
    # (call, how many results it must give; None: any number, panoptic may keep no segment)
    calls = [
        ({"threshold": 0.0}, None),
        ({"prompt": "the dog"}, 1),
        ({"boxes": [0, 0, *corner], "masks": np.ones((height, width))}, 2),
    ]
    if height == 1:  # cheap enough to cover the remaining modes too
        calls += [
            ({"subtask": "instance", "threshold": 0.0}, None),
            ({"prompt": "why?", "subtask": "reasoning"}, 1),
            ({"points": [0, 0], "scribbles": [[0, 0], [1, 1]]}, 2),
        ]
    for kwargs, count in calls:
        results = segmenter(image, **kwargs)
        assert count is None or len(results) == count, f"{kwargs}: {len(results)} results"
        check_masks(results, height, width)
    semantic = segmenter(image, class_names=["cat", "sofa"], subtask="semantic")
    check_masks(semantic, height, width)
    assert sum(np.count_nonzero(np.array(output["mask"])) for output in semantic) == height * width  # a partition


def test_dtype_and_device(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    segmenter = pipeline(
        "image-segmentation",
        model=str(tmp_path),
        pipeline_class=HyperSegSegmentationPipeline,
        dtype=torch.bfloat16,
        device="cpu",
    )
    assert segmenter.model.dtype == torch.bfloat16 and segmenter.device == torch.device("cpu")
    image = random_image(*IMAGE_SIZE, seed=14)
    for kwargs in ({"threshold": 0.0}, {"prompt": "the dog"}, {"boxes": [4, 6, 40, 30]}):
        results = segmenter(image, **kwargs)
        assert results
        check_masks(results, *IMAGE_SIZE)


# Errors


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prompt": "the dog", "class_names": ["dog"]}, "several kinds"),
        ({"prompt": "the dog", "boxes": [1, 1, 5, 5]}, "several kinds"),
        ({"class_names": ["dog"], "points": [1, 1]}, "several kinds"),
        ({"prompt": "the dog", "subtask": "panoptic"}, "'referring' or 'reasoning'"),
        ({"class_names": ["dog"], "subtask": "referring"}, "subtask must be one of panoptic, instance, semantic"),
        ({"boxes": [1, 1, 5, 5], "subtask": "semantic"}, "visual prompts take no subtask"),
        ({"prompt": "  "}, "non-empty string"),
        ({"class_names": "dog"}, "list of names"),
        ({"boxes": [[[1, 1, 5, 5]]]}, "`boxes` must be one box"),
        ({"points": [[100, 5]]}, "outside the image"),
    ],
)
def test_bad_prompts_raise_clear_errors(segmenter, kwargs, message):
    with pytest.raises(ValueError, match=message):
        segmenter(random_image(*IMAGE_SIZE), **kwargs)


def test_bad_calls_raise_clear_errors(segmenter):
    image = random_image(*IMAGE_SIZE)
    with pytest.raises(TypeError, match="unexpected argument"):
        segmenter(image, text="the dog")
    with pytest.raises(ValueError, match="the key 'image'"):
        segmenter({"picture": image, "prompt": "the dog"})
    with pytest.raises(ValueError, match=r"have \[1, 2\] visual prompts"):
        segmenter([{"image": image, "points": [1, 1]}, {"image": image, "points": [[1, 1], [2, 2]]}], batch_size=2)
    with pytest.raises(ValueError, match="mixes the tasks"):
        segmenter([{"image": image, "points": [1, 1]}, {"image": image, "prompt": "a"}], batch_size=2)
