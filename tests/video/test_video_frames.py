"""FrameSource: every input kind streams the same frames, `every` and timestamps, and clear errors on bad input."""

from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from video_files import write_empty_video, write_video

from hyperseg.video import FrameSource


FPS = 10
NUM_FRAMES = 7


@pytest.fixture(scope="module")
def frames():
    # (T, H, W, 3) with odd sizes, so nothing relies on even dimensions
    return np.random.default_rng(0).integers(0, 256, size=(NUM_FRAMES, 21, 33, 3), dtype=np.uint8)


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    truncated = path.with_name("truncated_" + path.name)
    truncated.write_bytes(data[: int(len(data) * keep)])
    return truncated


@pytest.fixture(scope="module")
def inputs(frames, tmp_path_factory):
    """The same video in every accepted form."""
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for index, frame in enumerate(frames):
        paths.append(folder / f"{index:03d}.png")
        Image.fromarray(frame).save(paths[-1])
    files = tmp_path_factory.mktemp("files")
    return {
        "array": (frames, FPS),
        "pil_list": ([Image.fromarray(frame) for frame in frames], FPS),
        "array_list": (list(frames), FPS),
        "path_list": (paths, FPS),
        "folder": (folder, FPS),
        "ffv1_mkv": (write_video(files / "video.mkv", frames, FPS), None),
        "png_avi": (write_video(files / "video.avi", frames, FPS, codec="png", pix_fmt="rgb24"), None),
    }


@pytest.mark.parametrize("kind", ["array", "pil_list", "array_list", "path_list", "folder", "ffv1_mkv", "png_avi"])
@pytest.mark.parametrize("every", [1, 3])
def test_every_input_kind_streams_the_same_frames(frames, inputs, kind, every):
    video, fps = inputs[kind]
    source = FrameSource(video, every=every, fps=fps)
    assert source.fps == FPS
    assert source.output_fps == Fraction(FPS, every)
    decoded = list(source)
    expected_indices = list(range(0, NUM_FRAMES, every))
    assert [frame.index for frame in decoded] == expected_indices
    assert source.num_selected_frames == len(expected_indices)
    assert [frame.timestamp for frame in decoded] == pytest.approx([index / FPS for index in expected_indices])
    for frame in decoded:
        assert frame.image.dtype == np.uint8
        np.testing.assert_array_equal(frame.image, frames[frame.index], err_msg=f"{kind}: frame {frame.index}")


def test_in_memory_frames_default_to_30_fps(frames):
    source = FrameSource(frames[:2])
    assert source.fps == 30
    assert [frame.timestamp for frame in source] == pytest.approx([0, 1 / 30])


def test_fps_is_refused_for_a_file_with_its_own_rate(inputs):
    path, _ = inputs["ffv1_mkv"]
    with pytest.raises(ValueError, match="has its own"):
        FrameSource(path, fps=25)


@pytest.mark.parametrize("every", [0, -2, 1.5, True])
def test_bad_stride(frames, every):
    with pytest.raises(ValueError, match="`every` must be a positive integer"):
        FrameSource(frames, every=every)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere.mp4"
    with pytest.raises(FileNotFoundError, match="nowhere.mp4"):
        FrameSource(path)


def test_file_that_is_not_a_video_names_the_path(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not video bytes\n" * 20)
    with pytest.raises(ValueError, match=r"notes\.mp4 is not a video that av can decode"):
        FrameSource(path)


def test_zero_frames(tmp_path):
    # a valid container whose video stream holds no frame
    path = write_empty_video(tmp_path / "empty.avi", FPS)
    with pytest.raises(ValueError, match=r"empty\.avi: the video has no frames"):
        list(FrameSource(path))

    (tmp_path / "no_images").mkdir()
    with pytest.raises(ValueError, match="no_images: the video has no frames"):
        FrameSource(tmp_path / "no_images")
    for empty in ([], np.zeros((0, 8, 8, 3), dtype=np.uint8)):
        with pytest.raises(ValueError, match="the video has no frames"):
            FrameSource(empty)


def test_frame_size_change_names_the_frame(frames):
    video = [Image.fromarray(frame) for frame in frames[:4]]
    video[2] = video[2].resize((40, 21))
    yielded = []
    with pytest.raises(ValueError, match=r"frame 2 is 40x21 .* started at 33x21"):
        for frame in FrameSource(video):
            yielded.append(frame.index)
    assert yielded == [0, 1]  # the frames before the change are kept


@pytest.mark.parametrize("kind", ["ffv1_mkv", "png_avi"])
def test_truncated_file_names_the_file(frames, inputs, kind):
    path, _ = inputs[kind]
    truncated = truncate(path)
    yielded = []
    with pytest.raises(ValueError, match=rf"{truncated.name}.*(truncated|cannot decode frame)"):
        for frame in FrameSource(truncated):
            yielded.append(frame)
    # whatever could be decoded before the cut is the original video's start
    assert 0 < len(yielded) < NUM_FRAMES
    for frame in yielded:
        np.testing.assert_array_equal(frame.image, frames[frame.index])


def test_unreadable_frame_file_names_the_frame(tmp_path, frames):
    good = tmp_path / "good.png"
    Image.fromarray(frames[0]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read frame 1 from .*bad\.png"):
        list(FrameSource([good, bad]))


@pytest.mark.parametrize(
    "video, message",
    [
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "must be uint8 of shape"),
        (np.zeros((8, 8, 3), dtype=np.uint8), "must be uint8 of shape"),
    ],
)
def test_bad_arrays(video, message):
    with pytest.raises(ValueError, match=message):
        FrameSource(video)


def test_bad_frame_in_a_list():
    with pytest.raises(ValueError, match=r"frame 1 must be a PIL image, an image path or a uint8"):
        list(FrameSource([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)]))
