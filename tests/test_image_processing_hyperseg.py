"""HyperSegImageProcessor: both input branches, visual prompts and every post-processing rule against the golden data
recorded from the original HyperSeg code (and PSALM's reference post-processing) in `original_tiny`."""

import json

import numpy as np
import pytest
import torch
from conftest import require_fixture
from PIL import Image
from safetensors.torch import load_file
from transformers.utils import ModelOutput

from hyperseg.processing.image_processing_hyperseg import (
    HyperSegImageProcessor,
    get_resized_size,
    visual_prompt_to_mask,
)
from hyperseg.processing.post_processing_hyperseg import (
    referring_inference,
    resize_mask_logits,
    semantic_inference,
)


# the tiny checkpoint's sizes: SigLIP 56x56, Swin input 128x128
SIGLIP_SIZE = 56
BACKBONE_SIZE = 128
SWIN_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
SWIN_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
LOGIT_EXEMPTION = 1e-4  # final binary masks may differ only where the raw-size logit is this close to 0


@pytest.fixture(scope="module")
def processor():
    return HyperSegImageProcessor(size={"height": SIGLIP_SIZE, "width": SIGLIP_SIZE}, backbone_size=BACKBONE_SIZE)


def load_case(name):
    folder = require_fixture("original_tiny", name)
    return folder, load_file(folder / "tensors.safetensors"), json.loads((folder / "meta.json").read_text())


def raw_size_logits(mask_logits, height, width):
    """(Q, h, w) decoder logits -> (Q, height, width), the shared first step of every rule."""
    valid_size = get_resized_size(height, width, BACKBONE_SIZE)
    return resize_mask_logits(mask_logits, (BACKBONE_SIZE, BACKBONE_SIZE), valid_size, (height, width))


def test_get_resized_size_is_detectron2_resize_shortest_edge():
    assert get_resized_size(84, 120, 128) == (90, 128)  # a_referring: valid region 128x90 (W x H)
    assert get_resized_size(112, 64, 128) == (128, 73)  # c_generic_batch2 image_1
    assert get_resized_size(100, 100, 1024) == (1024, 1024)
    assert get_resized_size(480, 640, 1024) == (768, 1024)
    assert get_resized_size(333, 1000, 1024) == (341, 1024)  # int(340.99.. + 0.5)


# Preprocessing


@pytest.mark.parametrize("case", ["a_referring", "b_reasoning", "d_interactive"])
def test_single_image_branches_match_the_original(processor, case):
    folder, tensors, _ = load_case(case)
    inputs = processor(Image.open(folder / "image.png"), return_tensors="pt")

    torch.testing.assert_close(inputs["pixel_values"], tensors["images_clip"], rtol=0, atol=1e-5)
    torch.testing.assert_close(inputs["backbone_pixel_values"], tensors["images_swin"], rtol=0, atol=1e-5)
    assert inputs["pixel_mask"].dtype == torch.long
    assert torch.equal(inputs["pixel_mask"][0], 1 - tensors["padding_mask"].long())


def test_batch_of_two_padding_masks(processor):
    # the fixture keeps only the padding masks of this batch (pixels left out for its size budget)
    folder, tensors, meta = load_case("c_generic_batch2")
    images = [Image.open(folder / entry["file"]) for entry in meta["images"]]
    inputs = processor(images, return_tensors="pt")

    assert inputs["pixel_values"].shape == (2, 3, SIGLIP_SIZE, SIGLIP_SIZE)
    assert inputs["backbone_pixel_values"].shape == (2, 3, BACKBONE_SIZE, BACKBONE_SIZE)
    assert torch.equal(inputs["pixel_mask"], 1 - tensors["padding_mask"].long())
    for index, image in enumerate(images):  # a batch is the concatenation of single-image runs
        single = processor(image, return_tensors="pt")
        for key in ("pixel_values", "backbone_pixel_values", "pixel_mask"):
            assert torch.equal(inputs[key][index], single[key][0])


@pytest.mark.parametrize("frame", [0, 1, 2])
def test_video_frames_match_the_original(processor, frame):
    folder, tensors, _ = load_case("e_reasoning_video_3frames")
    inputs = processor(Image.open(folder / f"frame_{frame}.png"), return_tensors="pt")

    torch.testing.assert_close(inputs["pixel_values"], tensors[f"f{frame}_images_clip"], rtol=0, atol=1e-5)
    swin_reference = (tensors[f"f{frame}_images_swin_uint8"].float() - SWIN_MEAN) / SWIN_STD
    torch.testing.assert_close(inputs["backbone_pixel_values"][0], swin_reference, rtol=0, atol=1e-5)
    if frame == 0:
        torch.testing.assert_close(inputs["backbone_pixel_values"], tensors["f0_images_swin"], rtol=0, atol=1e-5)
    assert torch.equal(inputs["pixel_mask"][0], 1 - tensors[f"f{frame}_padding_mask"].long())


def test_array_and_tensor_inputs_equal_pil(processor):
    folder, _, _ = load_case("a_referring")
    image = Image.open(folder / "image.png")
    expected = processor(image, return_tensors="pt")
    array = np.array(image)
    for variant in (array, torch.from_numpy(array), torch.from_numpy(array).permute(2, 0, 1), [array]):
        inputs = processor(variant, return_tensors="pt")
        for key in ("pixel_values", "backbone_pixel_values", "pixel_mask"):
            assert torch.equal(inputs[key], expected[key]), (type(variant), key)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_non_rgb_images_are_converted(processor, mode):
    folder, _, _ = load_case("a_referring")
    image = Image.open(folder / "image.png").convert(mode)
    if mode == "RGBA":  # a non-trivial alpha channel: it is dropped, as the original's image readers do
        image.putalpha(Image.linear_gradient("L").resize(image.size))
    expected = processor(image.convert("RGB"), return_tensors="pt")
    variants = [image] + ([] if mode == "P" else [np.asarray(image)])  # HW grayscale / HWC RGBA arrays
    for variant in variants:
        inputs = processor(variant, return_tensors="pt")
        for key in ("pixel_values", "backbone_pixel_values", "pixel_mask"):
            assert torch.equal(inputs[key], expected[key]), (type(variant), key)


def test_without_return_tensors_gives_numpy(processor):
    folder, _, _ = load_case("a_referring")
    inputs = processor(Image.open(folder / "image.png"), visual_prompts=[{"point": [5, 5]}])
    assert isinstance(inputs["pixel_values"][0], np.ndarray)
    assert isinstance(inputs["region_masks"][0], np.ndarray) and inputs["region_masks"][0].dtype == np.uint8


# Visual prompts


def interactive_prompts(tensors, meta):
    box, point, scribble, _ = meta["prompts"]
    return [
        {"box": box["box_xyxy"]},
        {"point": point["point_xy"]},
        {"scribble": scribble["polyline_xy"]},
        {"mask": tensors["prompt_masks_raw"][3].numpy()},
    ]


def test_visual_prompts_match_the_original(processor):
    folder, tensors, meta = load_case("d_interactive")
    height, width = meta["raw_size_hw"]
    prompts = interactive_prompts(tensors, meta)

    for index, prompt in enumerate(prompts):
        mask = visual_prompt_to_mask(prompt, height, width)
        assert np.array_equal(mask, tensors["prompt_masks_enhanced"][index].numpy()), index

    image = Image.open(folder / "image.png")
    region_masks = processor(image, visual_prompts=prompts, return_tensors="pt")["region_masks"]
    assert len(region_masks) == 1
    assert region_masks[0].dtype == torch.uint8
    assert torch.equal(region_masks[0], tensors["region_masks_clip"])
    # a nested list (one list per image) is the same as the flat single-image form
    nested = processor([image, image], visual_prompts=[prompts, prompts[:1]], return_tensors="pt")["region_masks"]
    assert torch.equal(nested[0], tensors["region_masks_clip"])
    assert torch.equal(nested[1], tensors["region_masks_clip"][:1])


def test_prompt_radii_are_configurable():
    default = visual_prompt_to_mask({"point": [20, 20]}, 40, 40)
    assert default.sum() == 317  # lattice points of a disk of radius 10
    assert visual_prompt_to_mask({"point": [20, 20]}, 40, 40, point_radius=1).sum() == 5
    assert visual_prompt_to_mask({"box": [0, 0, 40, 40]}, 40, 40).all()  # a box may touch the far edges
    processor = HyperSegImageProcessor(size={"height": 40, "width": 40}, point_prompt_radius=1, resample=0)
    masks = processor(np.zeros((40, 40, 3), np.uint8), visual_prompts=[{"point": [20, 20]}])["region_masks"]
    assert masks[0].sum() == 5


# Post-processing


def referring_cases():
    cases = [("a_referring", ""), ("b_reasoning", "")]
    return cases + [("e_reasoning_video_3frames", f"f{frame}_") for frame in range(3)]


@pytest.mark.parametrize(("case", "prefix"), referring_cases())
def test_referring_post_processing_matches_the_original(processor, case, prefix):
    _, tensors, meta = load_case(case)
    height, width = meta["raw_size_hw"]
    mask_logits = tensors[f"{prefix}dec_layer3_pred_masks"]  # (1, Q, h, w)
    seg_logits = tensors[f"{prefix}dec_layer3_pred_SEG_logits"][..., 0]  # (1, Q)
    outputs = ModelOutput({"masks_queries_logits": mask_logits, "seg_queries_logits": seg_logits})

    [result] = processor.post_process_referring_segmentation(outputs, target_sizes=[(height, width)])

    raw_logits = raw_size_logits(mask_logits[0], height, width)
    assert result["mask"].dtype == torch.bool and result["mask"].shape == (height, width)
    differs = result["mask"] != tensors[f"{prefix}out_top_mask"].bool()
    assert not (differs & (raw_logits[result["query_index"]].abs() >= LOGIT_EXEMPTION)).any()
    assert result["score"] == pytest.approx(tensors[f"{prefix}out_top_score"].item(), abs=1e-5)

    # every query's score; the original lists them in topk(sorted=False) order
    scores = referring_inference(seg_logits[0], raw_logits)
    reference = tensors[f"{prefix}out_scores"]
    if f"{prefix}out_query_index" in tensors:
        torch.testing.assert_close(scores[tensors[f"{prefix}out_query_index"]], reference, rtol=0, atol=1e-5)
    else:  # a_referring: no permutation stored, the scores are distinct
        torch.testing.assert_close(scores.sort().values, reference.sort().values, rtol=0, atol=1e-5)
    assert result["query_index"] == scores.argmax().item()
    if "per_frame" in meta:
        assert result["query_index"] == meta["per_frame"][int(prefix[1])]["top_query"]


def test_interactive_post_processing_matches_psalm(processor):
    _, tensors, meta = load_case("d_interactive")
    outputs = ModelOutput(
        {
            "masks_queries_logits": tensors["dec_layer3_pred_masks"],
            "region_queries_logits": tensors["dec_layer3_pred_region_logits"][None],  # (1, K, Q)
        }
    )
    [results] = processor.post_process_interactive_segmentation(outputs, target_sizes=[meta["raw_size_hw"]])

    raw_logits = raw_size_logits(tensors["dec_layer3_pred_masks"][0], *meta["raw_size_hw"])
    assert [result["query_index"] for result in results] == tensors["psalm_ref_selected_index"].tolist()
    for prompt_index, result in enumerate(results):
        assert result["score"] == pytest.approx(tensors["psalm_ref_selected_score"][prompt_index].item(), abs=1e-6)
        differs = result["mask"] != tensors["psalm_ref_selected_masks"][prompt_index].bool()
        assert not (differs & (raw_logits[result["query_index"]].abs() >= LOGIT_EXEMPTION)).any()


@pytest.fixture(scope="module")
def generic_case():
    _, tensors, meta = load_case("c_generic_batch2")
    outputs = ModelOutput(
        {
            "masks_queries_logits": tensors["dec_layer3_pred_masks"],  # (2, Q, h, w)
            "class_queries_logits": tensors["dec_layer3_pred_class_name_logits"],  # (2, Q, C)
        }
    )
    target_sizes = [entry["raw_size_hw"] for entry in meta["images"]]
    is_thing = meta["is_thing_list (eval_seg arg; excludes background)"]
    stuff_label_ids = {label for label, thing in enumerate(is_thing) if not thing}
    return tensors, meta, outputs, target_sizes, stuff_label_ids


def test_panoptic_post_processing_matches_psalm(processor, generic_case):
    tensors, meta, outputs, target_sizes, stuff_label_ids = generic_case
    results = processor.post_process_panoptic_segmentation(
        outputs, label_ids_to_fuse=stuff_label_ids, target_sizes=target_sizes
    )
    assert len(results) == 2
    for sample, result in enumerate(results):
        assert result["segmentation"].dtype == torch.long
        assert torch.equal(result["segmentation"], tensors[f"psalm_ref_s{sample}_panoptic_seg"].long())
        reference = meta["psalm_ref"][sample]["panoptic_segments_info"]
        assert [(s["id"], s["label_id"], s["isthing"]) for s in result["segments_info"]] == [
            (s["id"], s["category_id"], s["isthing"]) for s in reference
        ]
        for segment in result["segments_info"]:
            assert 0.8 < segment["score"] <= 1


def test_panoptic_with_pipeline_keywords(processor, generic_case):
    _, _, outputs, target_sizes, _ = generic_case
    # the stock image-segmentation pipeline's call; nothing passes its 0.99 gate
    for method in (processor.post_process_panoptic_segmentation, processor.post_process_instance_segmentation):
        [result] = method(
            outputs.__class__({k: v[:1] for k, v in outputs.items()}),
            threshold=0.99,
            mask_threshold=0.5,
            overlap_mask_area_threshold=0.5,
            target_sizes=target_sizes[:1],
        )
        assert result["segments_info"] == []
        assert not result["segmentation"].any() and result["segmentation"].shape == tuple(target_sizes[0])


@pytest.mark.parametrize("things_only", [True, False])
def test_instance_post_processing_matches_psalm(processor, generic_case, things_only):
    tensors, _, outputs, target_sizes, stuff_label_ids = generic_case
    results = processor.post_process_instance_segmentation(
        outputs,
        target_sizes=target_sizes,
        stuff_label_ids=stuff_label_ids if things_only else None,
        return_binary_maps=True,
    )
    name = "instance" if things_only else "instance_all"
    for sample, result in enumerate(results):
        prefix = f"psalm_ref_s{sample}_{name}"
        # PSALM's rows are in topk(sorted=False) order, ours by decreasing score
        order = tensors[f"{prefix}_scores"].argsort(descending=True, stable=True)
        scores = torch.tensor([segment["score"] for segment in result["segments_info"]])
        torch.testing.assert_close(scores, tensors[f"{prefix}_scores"][order], rtol=0, atol=1e-5)
        labels = [segment["label_id"] for segment in result["segments_info"]]
        assert labels == tensors[f"{prefix}_labels"][order].tolist()
        assert result["segmentation"].shape == (len(labels), *target_sizes[sample])
        if things_only:  # masks are stored for this variant only
            raw_logits = raw_size_logits(tensors["dec_layer3_pred_masks"][sample], *target_sizes[sample])
            query_indices = [segment["query_index"] for segment in result["segments_info"]]
            differs = result["segmentation"] != tensors[f"{prefix}_masks"][order].bool()
            assert not (differs & (raw_logits[query_indices].abs() >= LOGIT_EXEMPTION)).any()


def test_instance_segment_map(processor, generic_case):
    _, _, outputs, target_sizes, _ = generic_case
    binary = processor.post_process_instance_segmentation(outputs, target_sizes=target_sizes, return_binary_maps=True)
    maps = processor.post_process_instance_segmentation(outputs, target_sizes=target_sizes, threshold=0.5)
    for stacked, mapped in zip(binary, maps):
        kept = [s for s in stacked["segments_info"] if s["score"] >= 0.5]
        assert [s["query_index"] for s in mapped["segments_info"]] == [s["query_index"] for s in kept]
        # every pixel belongs to the best-scoring kept prediction covering it (the list is sorted by score)
        covering = stacked["segmentation"][: len(kept)]
        expected = torch.where(covering.any(0), covering.int().argmax(0) + 1, 0)
        assert torch.equal(mapped["segmentation"], expected)


def test_semantic_post_processing_matches_psalm(processor, generic_case):
    tensors, _, outputs, target_sizes, _ = generic_case
    results = processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)
    for sample, (result, target_size) in enumerate(zip(results, target_sizes)):
        assert result.dtype == torch.long and result.shape == tuple(target_size)
        class_scores = semantic_inference(
            tensors["dec_layer3_pred_class_name_logits"][sample],
            raw_size_logits(tensors["dec_layer3_pred_masks"][sample], *target_size),
        )
        top2 = class_scores.topk(2, dim=0).values
        near_tie = (top2[0] - top2[1]) < 1e-4
        differs = result != tensors[f"psalm_ref_s{sample}_semseg_argmax"].long()
        assert not (differs & ~near_tie).any()


# Errors


def test_image_with_zero_pixels_is_rejected(processor):
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"Image 1 has 0 pixels"):
        processor([good, Image.new("RGB", (0, 5))])
    with pytest.raises(ValueError, match=r"Image 0 has 0 pixels"):
        processor(np.zeros((0, 5, 3), np.uint8))


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ({"box": [0, 0, 41, 10]}, r"Visual prompt 1 of image 0: box corner \(x1, y1\) \(41, 10\) lies outside"),
        ({"point": [-1, 3]}, r"Visual prompt 1 of image 0: point \(-1, 3\) lies outside"),
        ({"scribble": [[0, 0], [5, 33]]}, r"Visual prompt 1 of image 0: scribble point \(5, 33\) lies outside"),
        ({"mask": np.ones((30, 40))}, r"Visual prompt 1 of image 0: a mask prompt must have the image's shape"),
        ({"polygon": [0, 0, 1, 1]}, r"unknown key\(s\) \['polygon'\]; the allowed keys are 'box', 'point'"),
        ({"box": [0, 0, 5, 5], "point": [1, 1]}, r"exactly one of the keys"),
        ({"box": [5, 5, 5, 9]}, r"needs x0 < x1 and y0 < y1"),
        ({"box": [0, 0, 5]}, r"needs 4 numbers"),
        ({"mask": np.zeros((32, 40))}, r"the mask prompt selects no pixel"),
    ],
)
def test_bad_visual_prompts_are_rejected(processor, prompt, message):
    image = np.zeros((32, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        processor(image, visual_prompts=[{"point": [1, 1]}, prompt])


def test_visual_prompt_count_must_match_the_batch(processor):
    image = np.zeros((32, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"one list of prompts per image: got 1 list\(s\) for 2 image\(s\)"):
        processor([image, image], visual_prompts=[[{"point": [1, 1]}]])


def test_post_processing_errors(processor, generic_case):
    _, _, outputs, target_sizes, _ = generic_case
    with pytest.raises(ValueError, match=r"`target_sizes` has 1 entries but the batch has 2 samples"):
        processor.post_process_panoptic_segmentation(outputs, target_sizes=target_sizes[:1])
    with pytest.raises(ValueError, match=r"needs `target_sizes`"):
        processor.post_process_semantic_segmentation(outputs)
    with pytest.raises(ValueError, match=r"`post_process_referring_segmentation` needs `outputs.seg_queries_logits`"):
        processor.post_process_referring_segmentation(outputs, target_sizes=target_sizes)
    with pytest.raises(ValueError, match=r"needs `outputs.region_queries_logits`"):
        processor.post_process_interactive_segmentation(outputs, target_sizes=target_sizes)
    masks_only = ModelOutput({"masks_queries_logits": outputs["masks_queries_logits"]})
    for method in (
        processor.post_process_panoptic_segmentation,
        processor.post_process_instance_segmentation,
        processor.post_process_semantic_segmentation,
    ):
        with pytest.raises(ValueError, match=r"needs `outputs.class_queries_logits`"):
            method(masks_only, target_sizes=target_sizes)


# Serialisation


def test_save_and_load_keep_every_field(tmp_path):
    processor = HyperSegImageProcessor(
        size={"height": SIGLIP_SIZE, "width": SIGLIP_SIZE},
        backbone_size=BACKBONE_SIZE,
        backbone_pad_value=100,
        backbone_image_mean=[120.0, 110.0, 100.0],
        point_prompt_radius=7,
        scribble_prompt_radius=2.5,
    )
    processor.save_pretrained(tmp_path)
    loaded = HyperSegImageProcessor.from_pretrained(tmp_path)

    assert loaded.to_dict() == processor.to_dict()
    for key, value in {
        "backbone_size": BACKBONE_SIZE,
        "backbone_pad_value": 100,
        "backbone_image_mean": (120.0, 110.0, 100.0),
        "point_prompt_radius": 7,
        "scribble_prompt_radius": 2.5,
    }.items():
        assert getattr(loaded, key) == value, key
    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    before = processor(image, visual_prompts=[{"point": [3, 4]}], return_tensors="pt")
    after = loaded(image, visual_prompts=[{"point": [3, 4]}], return_tensors="pt")
    for key in ("pixel_values", "backbone_pixel_values", "pixel_mask"):
        assert torch.equal(before[key], after[key]), key
    assert torch.equal(before["region_masks"][0], after["region_masks"][0])
