"""
`segment_video` end to end on the converted tiny checkpoints: parity with the original loops (HyperSeg's ReVOS loop,
case e of `original_tiny`; InstructSeg's Ref-YouTube-VOS and ReVOS loops, cases b and c of
`instructseg_forward_tiny`), with the frames as images and as a lossless video file; several prompts; the written
outputs (PNG masks, COCO RLE JSON, overlay video); the CLI; and bad input that stops a video without losing what
was written.
"""

import contextlib
import json

import numpy as np
import pytest
import torch
from parity_helpers import assert_masks_match, load_case, raw_size_logits
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage
from test_parity_instructseg import converted as instructseg_tiny  # noqa: F401 (fixture)
from test_parity_original import converted  # noqa: F401 (fixture)
from video_files import read_video, write_empty_video, write_video

from hyperseg import segment_video
from hyperseg.video import iter_segment_video
from hyperseg.video.__main__ import main
from hyperseg.video.writer import prompt_color


CASE = "e_reasoning_video_3frames"
FPS = 12
OTHER_PROMPT = "the blue ball at the top"


@pytest.fixture(scope="module")
def case():
    folder, meta, reference = load_case("original_tiny", CASE)
    frames = [np.asarray(Image.open(folder / name).convert("RGB")) for name in meta["frames"]]
    return frames, meta, reference


@contextlib.contextmanager
def capture_mask_logits(model):
    """Collects `masks_queries_logits` of every forward call, in call order."""
    captured = []
    handle = model.register_forward_hook(lambda module, args, output: captured.append(output.masks_queries_logits))
    try:
        yield captured
    finally:
        handle.remove()


def check_recorded_frame(processor, reference, frame_index, mask, score, size):
    """The top mask and score the original loop recorded for `frame_index`, to the core port's tolerances."""
    prefix = f"f{frame_index}_"
    expected_score = reference[prefix + "out_top_score"].item()
    assert abs(score - expected_score) <= 1e-4, f"frame {frame_index}: score {score} != {expected_score}"
    query = int(reference[prefix + "out_query_index"][int(reference[prefix + "out_top_index"])])
    logits = raw_size_logits(processor, reference[prefix + "dec_layer3_pred_masks"][0], size)[query]
    assert_masks_match(torch.from_numpy(mask), reference[prefix + "out_top_mask"], logits, f"frame {frame_index} mask")


@pytest.fixture(scope="module")
def file_run(converted, case, tmp_path_factory):
    """The case's frames written to an FFV1 file, decoded through av and segmented, with outputs written."""
    processor, model = converted
    frames, meta, _ = case
    folder = tmp_path_factory.mktemp("video_file")
    video = write_video(folder / "video.mkv", frames, FPS)
    output_dir = folder / "out"
    tracks = segment_video(
        model, processor, video, [meta["expression"]], "reasoning_video", output_dir=output_dir, progress=False
    )
    return tracks, output_dir


def test_list_of_images_matches_original_loop(converted, case):
    processor, model = converted
    frames, meta, reference = case
    images = [Image.fromarray(frame) for frame in frames]
    [track] = segment_video(model, processor, images, text=meta["expression"], task="reasoning_video", progress=False)
    assert [entry["frame_index"] for entry in track] == [0, 1, 2]
    for entry in track:
        assert entry["mask"].dtype == bool and entry["mask"].shape == tuple(meta["raw_size_hw"])
        size = meta["raw_size_hw"]
        check_recorded_frame(processor, reference, entry["frame_index"], entry["mask"], entry["score"], size)


def test_lossless_video_file_matches_original_loop(converted, case, file_run):
    processor, _ = converted
    _, meta, reference = case
    [track] = file_run[0]
    assert [entry["frame_index"] for entry in track] == [0, 1, 2]
    # Matroska keeps timestamps in milliseconds
    assert [entry["timestamp"] for entry in track] == pytest.approx([0, 1 / FPS, 2 / FPS], abs=1e-3)
    for entry in track:
        size = meta["raw_size_hw"]
        check_recorded_frame(processor, reference, entry["frame_index"], entry["mask"], entry["score"], size)


def test_written_masks_and_json_match_the_returned_track(file_run, case):
    [track], output_dir = file_run
    _, meta, _ = case
    document = json.loads((output_dir / "masks.json").read_text())
    assert document["complete"] is True and document["fps"] == FPS
    assert [prompt["text"] for prompt in document["prompts"]] == [meta["expression"]]
    [written] = document["tracks"]
    assert [entry["frame_index"] for entry in written] == [0, 1, 2]
    for entry, record in zip(track, written):
        png = np.asarray(Image.open(output_dir / "masks" / "0" / f"{entry['frame_index']}.png"))
        np.testing.assert_array_equal(png, entry["mask"].astype(np.uint8) * 255)
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), entry["mask"])
        assert record["score"] == pytest.approx(entry["score"], abs=1e-6)
        assert record["timestamp"] == pytest.approx(entry["timestamp"])


def expected_overlay(image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Half the pixel, half the prompt colour, prompt after prompt."""
    expected = image.astype(np.float64)
    for index, mask in enumerate(masks):
        expected[mask] = (expected[mask] + np.asarray(prompt_color(index))) / 2
    return expected


def check_overlay(output_dir, frames, tracks, fps):
    rate, decoded = read_video(output_dir / "overlay.mp4")
    assert rate == fps and len(decoded) == len(tracks[0])
    for position, overlay in enumerate(decoded):
        frame_index = tracks[0][position]["frame_index"]
        masks = [track[position]["mask"] for track in tracks]
        expected = expected_overlay(frames[frame_index], masks)
        # H.264 is lossy and shares chroma between 2x2 pixels, so compare where the exact overlay is flat around
        # the pixel (no mask edge, no edge of the frame's own content nearby)
        flat = (ndimage.maximum_filter(expected, size=(7, 7, 1)) == ndimage.minimum_filter(expected, size=(7, 7, 1)))
        flat = flat.all(axis=-1)
        inside = masks[0] & flat
        outside = ~np.logical_or.reduce(masks) & flat
        assert inside.sum() > 100 and outside.sum() > 100
        for region in (inside, outside):
            error = np.abs(overlay[region] - expected[region]).max(axis=-1)
            assert np.median(error) <= 4 and (error <= 10).mean() >= 0.95, f"frame {frame_index}"
        # and the colour really is there: the masked pixels moved far from the frame's own
        moved = np.abs(overlay[inside].astype(int) - frames[frame_index][inside]).max(axis=-1)
        assert np.median(moved) >= 40


def test_overlay_video(file_run, case):
    tracks, output_dir = file_run
    check_overlay(output_dir, case[0], tracks, FPS)


@pytest.mark.parametrize("max_batch_size", [None, 1])
def test_two_prompts_equal_single_prompt_runs(converted, case, tmp_path, max_batch_size):
    processor, model = converted
    frames, meta, _ = case
    prompts = [meta["expression"], OTHER_PROMPT]
    size = tuple(meta["raw_size_hw"])

    def run(text, **kwargs):
        with capture_mask_logits(model) as logits:
            results = iter_segment_video(model, processor, frames, text, "reasoning_video", progress=False, **kwargs)
            results = list(results)
        return results, logits

    both, _ = run(prompts, max_batch_size=max_batch_size, output_dir=tmp_path / "out")
    for prompt_index, prompt in enumerate(prompts):
        single, logits = run([prompt])
        for frame, (joint, alone) in enumerate(zip(both, single)):
            assert joint.query_indices[prompt_index] == alone.query_indices[0]
            assert abs(joint.scores[prompt_index] - alone.scores[0]) <= 1e-4 * max(1, abs(alone.scores[0]))
            query_logits = raw_size_logits(processor, logits[frame][0], size)[alone.query_indices[0]]
            assert_masks_match(
                torch.from_numpy(joint.masks[prompt_index]),
                torch.from_numpy(alone.masks[0]),
                query_logits,
                f"prompt {prompt_index}, frame {frame}",
            )
    if max_batch_size is None:
        tracks = [
            [{"frame_index": r.frame.index, "mask": r.masks[p]} for r in both] for p in range(len(prompts))
        ]
        check_overlay(tmp_path / "out", frames, tracks, 30)


def test_cli_with_stride(converted, case, tmp_path):
    processor, model = converted
    frames, meta, reference = case
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    video = write_video(tmp_path / "video.mkv", frames, FPS)
    output_dir = tmp_path / "out"
    argv = [str(video), "--prompt", meta["expression"], "--prompt", OTHER_PROMPT, "--model", str(tmp_path / "model")]
    argv += ["--output-dir", str(output_dir), "--every", "2", "--task", "reasoning_video"]
    assert main(argv) == 0

    document = json.loads((output_dir / "masks.json").read_text())
    assert document["complete"] is True and document["every"] == 2 and document["fps"] == FPS / 2
    for prompt_index in range(2):
        assert [entry["frame_index"] for entry in document["tracks"][prompt_index]] == [0, 2]
        assert sorted(p.name for p in (output_dir / "masks" / str(prompt_index)).iterdir()) == ["0.png", "2.png"]
    # frame 0 is the first frame of the original loop, whatever the stride
    mask = np.asarray(Image.open(output_dir / "masks" / "0" / "0.png")) > 0
    check_recorded_frame(processor, reference, 0, mask, document["tracks"][0][0]["score"], meta["raw_size_hw"])
    rate, decoded = read_video(output_dir / "overlay.mp4")
    assert rate == FPS / 2 and len(decoded) == 2


@pytest.mark.parametrize("problem", ["missing file", "not a video", "empty prompt"])
def test_bad_input_fails_before_writing_anything(converted, tmp_path, problem):
    processor, model = converted
    video, text = tmp_path / "video.mkv", ["the ball"]
    if problem == "not a video":
        video.write_text("plain text, no video\n" * 10)
    elif problem == "empty prompt":
        write_video(video, [np.zeros((16, 16, 3), np.uint8)], FPS)
        text = ["the ball", " "]
    error, message = {
        "missing file": (FileNotFoundError, "video.mkv"),
        "not a video": (ValueError, "video.mkv is not a video"),
        "empty prompt": (ValueError, "prompt 1 is empty"),
    }[problem]
    with pytest.raises(error, match=message):
        segment_video(model, processor, video, text, "reasoning_video", output_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_reports_bad_input(tmp_path, capsys):
    argv = ["--prompt", "the ball", "--model", "unused", "--output-dir", str(tmp_path / "out")]
    assert main([str(tmp_path / "missing.mp4")] + argv) == 2
    assert "missing.mp4" in capsys.readouterr().err
    assert main([str(tmp_path), "--prompt", ""] + argv[2:]) == 2
    assert "prompt 0 is empty" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_zero_frames_file(converted, tmp_path):
    processor, model = converted
    path = write_empty_video(tmp_path / "empty.avi", FPS)
    with pytest.raises(ValueError, match=r"empty\.avi: the video has no frames"):
        segment_video(
            model, processor, path, "the ball", "reasoning_video", output_dir=tmp_path / "out", progress=False
        )
    document = json.loads((tmp_path / "out" / "masks.json").read_text())
    assert document["complete"] is False and "no frames" in document["error"] and document["tracks"] == [[]]


def check_partial_outputs(output_dir, processor, case, num_expected=None):
    """After an error: the frames segmented before it are all on disk, and frame 0 is the original loop's."""
    _, meta, reference = case
    document = json.loads((output_dir / "masks.json").read_text())
    assert document["complete"] is False
    [track] = document["tracks"]
    written = [entry["frame_index"] for entry in track]
    assert written == list(range(len(written))) and len(written) >= 1
    if num_expected is not None:
        assert len(written) == num_expected
    assert sorted(int(p.stem) for p in (output_dir / "masks" / "0").iterdir()) == written
    _, decoded = read_video(output_dir / "overlay.mp4")
    assert len(decoded) == len(written)
    mask = np.asarray(Image.open(output_dir / "masks" / "0" / "0.png")) > 0
    check_recorded_frame(processor, reference, 0, mask, track[0]["score"], meta["raw_size_hw"])
    return document


def test_frame_size_change_keeps_earlier_frames(converted, case, tmp_path):
    processor, model = converted
    frames, meta, _ = case
    video = [frames[0], frames[1], np.asarray(Image.fromarray(frames[2]).resize((80, 64)))]
    with pytest.raises(ValueError, match=r"frame 2 is 80x64"):
        segment_video(
            model, processor, video, meta["expression"], "reasoning_video", output_dir=tmp_path, progress=False
        )
    document = check_partial_outputs(tmp_path, processor, case, num_expected=2)
    assert "frame 2" in document["error"]


def test_truncated_file_keeps_earlier_frames(converted, case, tmp_path):
    processor, model = converted
    frames, meta, _ = case
    video = write_video(tmp_path / "video.mkv", frames * 4, FPS)
    data = video.read_bytes()
    truncated = tmp_path / "cut.mkv"
    truncated.write_bytes(data[: len(data) // 2])
    output_dir = tmp_path / "out"
    with pytest.raises(ValueError, match=r"cut\.mkv is truncated"):
        segment_video(
            model, processor, truncated, meta["expression"], "reasoning_video", output_dir=output_dir, progress=False
        )
    document = check_partial_outputs(output_dir, processor, case)
    assert "cut.mkv" in document["error"]
    assert len(document["tracks"][0]) < 12


@pytest.mark.parametrize("case, task", [("b_rvos_frames", "referring_video"), ("c_revos_frames", "reasoning_video")])
@pytest.mark.parametrize("as_file", [False, True], ids=["images", "ffv1_file"])
def test_instructseg_matches_original_loop(instructseg_tiny, case, task, as_file, tmp_path):
    """Every frame with the reference frames the original loop picked, streamed through the bounded buffer."""
    processor, model = instructseg_tiny
    folder, meta, reference = load_case("instructseg_forward_tiny", case)
    frames = [Image.open(folder / name).convert("RGB") for name in meta["frames"]]
    video = write_video(tmp_path / "video.mkv", [np.asarray(f) for f in frames], FPS) if as_file else frames
    size = tuple(meta["raw_size_hw"])
    with capture_mask_logits(model) as logits:
        [track] = segment_video(model, processor, video, meta["expression"], task, progress=False)
    assert [entry["frame_index"] for entry in track] == list(range(len(frames)))
    for entry, frame_logits in zip(track, logits):
        index = entry["frame_index"]
        scores = reference["all_frames_scores"][index]
        assert abs(entry["score"] - scores.max().item()) <= 1e-4, f"frame {index}"
        query = int(reference["all_frames_query_index"][index][int(scores.argmax())])
        query_logits = raw_size_logits(processor, frame_logits[0], size)[query]
        expected = reference["all_frames_top_mask"][index]
        assert_masks_match(torch.from_numpy(entry["mask"]), expected, query_logits, f"{case} frame {index}")
