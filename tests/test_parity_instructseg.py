"""End-to-end parity with the ORIGINAL InstructSeg code on `shared/fixtures/instructseg_forward_tiny`.

The same model class serves InstructSeg: its config selects the object-aware video perceiver (OVP) over reference
frames and the vision-guided text fusion (VMTF). Every case starts from the raw PNGs and the texts / frame lists of
its `meta.json`; tolerances are the core port's (see test_parity_original.py).
"""

import pytest
import torch
from conftest import require_fixture
from parity_helpers import assert_close, assert_masks_match, check_decoder_layers, load_case, raw_size_logits, run
from PIL import Image

from hyperseg.conversion.convert_hyperseg_to_hf import convert
from hyperseg.modeling import HyperSegConfig, HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegProcessor, select_reference_frames

CASES = "instructseg_forward_tiny"
SWIN_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
SWIN_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


def siglip_pixels(uint8: torch.Tensor) -> torch.Tensor:
    """The original's SigLIP input from its recorded uint8 resize (rescale in float64, normalise in float32)."""
    return ((uint8.double() * (1 / 255)).float() - 0.5) / 0.5


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    checkpoint = require_fixture(CASES, "checkpoint")
    output_dir = tmp_path_factory.mktemp("converted_instructseg")
    convert(checkpoint, output_dir)  # recognised as InstructSeg from its architectures
    processor = HyperSegProcessor.from_pretrained(output_dir)
    model = HyperSegForUniversalSegmentation.from_pretrained(output_dir).eval()
    return processor, model


def check_internals(recorded, reference, outputs):
    assert_close(recorded["perceiver"][0], reference["ovp_out"].flatten(0, 1), "OVP output")
    assert_close(recorded["llm_inputs_embeds"][0], reference["llm_inputs_embeds"], "LLM input embeddings")
    assert_close(outputs.llm_last_hidden_state, reference["llm_last_hidden_state"], "LLM last hidden state")
    assert_close(recorded["text_fusion"][0], reference["vmtf_fused_in"][:, 0], "VMTF output (global ; detail)")
    assert_close(recorded["seg_embedding"][0], reference["decoder_SEG_embedding_in"][:, 0], "[SEG] embedding")
    check_decoder_layers(outputs, reference)


def check_result(processor, outputs, reference, size, name):
    result = processor.post_process_referring_segmentation(outputs, target_sizes=[size])[0]
    top_row = int(reference["out_top_index"])
    assert result["query_index"] == int(reference["out_query_index"][top_row]), f"{name}: another query wins"
    assert abs(result["score"] - reference["out_top_score"].item()) <= 1e-4
    logits = raw_size_logits(processor, outputs.masks_queries_logits[0], size)[result["query_index"]]
    assert_masks_match(result["mask"], reference["out_top_mask"], logits, f"{name} top mask")


@pytest.mark.parametrize("case, task", [("a_res", "referring"), ("d_reasonseg", "reasoning")])
def test_image_cases(converted, case, task):
    processor, model = converted
    folder, meta, reference = load_case(CASES, case)
    image = Image.open(folder / meta["image"])
    inputs = processor(images=image, text=meta.get("sentence") or meta["query"], task=task)
    assert_close(inputs["pixel_values"], siglip_pixels(reference["images_clip_uint8"]), "SigLIP pixels", rtol=1e-5)
    swin = (reference["images_swin_uint8"].float() - SWIN_MEAN) / SWIN_STD
    assert_close(inputs["backbone_pixel_values"][0], swin, "Swin pixels", rtol=1e-5)
    outputs, recorded = run(model, inputs)
    # a still image is its own (single) reference frame, so the OVP reads the key image's tokens
    assert_close(recorded["siglip"][0][0], reference["siglip_features_calls"][0], "SigLIP features")
    check_internals(recorded, reference, outputs)
    check_result(processor, outputs, reference, tuple(meta["raw_size_hw"]), case)


@pytest.mark.parametrize("case, task", [("b_rvos_frames", "referring_video"), ("c_revos_frames", "reasoning_video")])
def test_video_cases(converted, case, task):
    processor, model = converted
    folder, meta, reference = load_case(CASES, case)
    frames = [Image.open(folder / name) for name in meta["frames"]]
    size = tuple(meta["raw_size_hw"])
    target = meta["target_frame"]
    references = select_reference_frames(target, len(frames), meta["reference_frame_num"])
    assert references == meta["target_reference_frames"]

    inputs = processor(
        images=frames[target], reference_frames=[frames[i] for i in references], text=meta["expression"], task=task
    )
    expected_clip = siglip_pixels(reference["video_clip_uint8"])
    assert_close(inputs["pixel_values"][0], expected_clip[target], "key-frame SigLIP pixels", rtol=1e-5)
    assert_close(inputs["reference_pixel_values"][0], expected_clip[references], "reference SigLIP pixels", rtol=1e-5)
    outputs, recorded = run(model, inputs)
    check_internals(recorded, reference, outputs)
    check_result(processor, outputs, reference, size, case)

    # the whole clip, as the original's loop runs it: every frame with its own reference frames
    for frame_index, frame in enumerate(frames):
        references = select_reference_frames(frame_index, len(frames), meta["reference_frame_num"])
        frame_inputs = processor(
            images=frame, reference_frames=[frames[i] for i in references], text=meta["expression"], task=task
        )
        with torch.no_grad():
            frame_outputs = model(**frame_inputs)
        result = processor.post_process_referring_segmentation(frame_outputs, target_sizes=[size])[0]
        expected_row = int(reference["all_frames_scores"][frame_index].argmax())
        assert result["query_index"] == int(reference["all_frames_query_index"][frame_index][expected_row])
        assert abs(result["score"] - reference["all_frames_scores"][frame_index].max().item()) <= 1e-4
        logits = raw_size_logits(processor, frame_outputs.masks_queries_logits[0], size)[result["query_index"]]
        assert_masks_match(result["mask"], reference["all_frames_top_mask"][frame_index], logits, f"frame {frame_index}")


def test_select_reference_frames_end_of_video_branch():
    # middle, start and end branches of the original's get_reference_idx_inorder, in a 10-frame video
    assert select_reference_frames(5, 10) == [3, 4, 6, 7]
    assert select_reference_frames(0, 10) == [1, 2, 3, 4]
    assert select_reference_frames(1, 10) == [0, 2, 3, 4]
    assert select_reference_frames(9, 10) == [5, 6, 7, 8]
    assert select_reference_frames(8, 10) == [5, 6, 7, 9]
    assert select_reference_frames(3, 10, num_reference_frames=0) == []
    with pytest.raises(ValueError, match="outside a video of 10 frames"):
        select_reference_frames(10, 10)


def test_bad_video_inputs(converted):
    processor, model = converted
    folder, meta, _ = load_case(CASES, "b_rvos_frames")
    frames = [Image.open(folder / name) for name in meta["frames"]]
    with pytest.raises(ValueError, match="need `reference_frames`"):
        processor(images=frames[0], text="the red box", task="referring_video")
    with pytest.raises(ValueError, match="reference frame 1 of sample 0 is"):
        processor(images=frames[0], reference_frames=[frames[1], frames[2].resize((40, 30))], text="x", task="referring_video")


def test_video_task_on_a_model_without_video_module(converted):
    processor, _ = converted
    no_video = HyperSegProcessor(
        image_processor=processor.image_processor, tokenizer=processor.tokenizer, num_temporal_tokens=0,
        num_image_tokens=processor.num_image_tokens, num_queries=processor.num_queries,
    )
    image = Image.new("RGB", (32, 24))
    with pytest.raises(ValueError, match="has none"):
        no_video(images=image, text="the cat", task="reasoning_video")


def test_real_size_instructseg_config_on_meta_device():
    config = HyperSegConfig.instructseg_3b()
    with torch.device("meta"):
        model = HyperSegForUniversalSegmentation(config)
    names = set(model.state_dict())
    # InstructSeg's own modules, with the released widths
    assert model.perceiver.latents.shape == (128, 2560)
    assert model.perceiver.resampler.layers[0].attention.q_proj.weight.shape == (8 * 128, 2560)
    assert model.text_fusion.visual_projection.weight.shape == (1024, 1024, 1, 1)
    assert model.text_fusion.resampler.layers[0].attention.q_proj.weight.shape == (8 * 128, 1024)
    assert model.seg_prompt_projector.weight.shape == (256, 2048)
    # referring heads only: no class-name or region parts, no HyperSeg perceiver
    assert not any(name.startswith(("class_prompt_projector", "region_prompt_projector")) for name in names)
    assert not any(".class_head." in name or ".region_head." in name for name in names)
    assert model.region_sampler is None


def test_instructseg_model_rejects_class_prompts(converted):
    processor, model = converted
    image = Image.new("RGB", (32, 24))
    inputs = processor(images=image, task="panoptic", class_names=["cat"])
    with pytest.raises(ValueError, match="no class-name head"):
        model(**inputs)
