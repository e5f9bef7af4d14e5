"""Video memories without a model: InstructSeg's streamed reference frames and their bounded buffer, prompt checks."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import require_fixture

from hyperseg.processing import select_reference_frames
from hyperseg.video import ReferenceFrames, TemporalLatents, VideoFrame, VideoSession, default_memory


def make_frames(count: int) -> list[VideoFrame]:
    return [VideoFrame(index, index / 30, np.zeros((2, 2, 3), dtype=np.uint8)) for index in range(count)]


def stream(memory: ReferenceFrames, num_frames: int) -> tuple[list[int], dict[int, list[int]], int]:
    """Feeds `num_frames` frames: the release order, each frame's reference indices, the largest buffer seen."""
    released, references, largest = [], {}, 0

    def collect(frames):
        for frame in frames:
            released.append(frame.index)
            references[frame.index] = [reference.index for reference in memory.references[frame.index]]

    for frame in make_frames(num_frames):
        collect(memory.add_frame(frame))
        largest = max(largest, len(memory.buffer))
    collect(memory.end_of_video())
    return released, references, largest


@pytest.mark.parametrize("case", ["b_rvos_frames", "c_revos_frames"])
def test_streamed_references_match_the_recorded_loops(case):
    """Frame by frame, the reference frames InstructSeg's released loops used (5 and 6 frames, 4 references)."""
    meta = json.loads((require_fixture("instructseg_forward_tiny", case) / "meta.json").read_text())
    released, references, _ = stream(ReferenceFrames(meta["reference_frame_num"]), len(meta["frames"]))
    assert released == list(range(len(meta["frames"])))
    assert references == {record["frame"]: record["reference_frames"] for record in meta["per_frame"]}


@pytest.mark.parametrize("num_references", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("length", [1, 2, 4, 5, 6, 9, 17])
def test_reference_buffer_streams_in_order_with_bounded_memory(length, num_references):
    released, references, largest = stream(ReferenceFrames(num_references), length)
    assert released == list(range(length))
    assert largest <= 2 * num_references + 1
    for frame, frame_references in references.items():
        if length > num_references:
            # released before the end, with the length still unknown, yet the references of the whole video
            assert frame_references == (select_reference_frames(frame, length, num_references) or [frame])
        else:
            # too short for the window (the original indexes out of range): all other frames, or itself
            assert frame_references == ([index for index in range(length) if index != frame] or [frame])


def test_reference_frames_wait_for_their_lookahead():
    memory = ReferenceFrames(num_reference_frames=4)
    frames = make_frames(6)
    assert [memory.add_frame(frame) for frame in frames[:4]] == [[], [], [], []]
    # frames 0-1 take the first five frames as references, frame 2 takes 0, 1, 3 and 4
    assert [frame.index for frame in memory.add_frame(frames[4])] == [0, 1, 2]
    assert [frame.index for frame in memory.add_frame(frames[5])] == [3]  # needs frame 5
    # the video ends after frame 5: the end-of-video window picks the rest
    assert [frame.index for frame in memory.end_of_video()] == [4, 5]
    assert [reference.index for reference in memory.references[4]] == [1, 2, 3, 5]
    kwargs = memory.processor_kwargs(frames[4], batch_size=3)
    assert len(kwargs["reference_frames"]) == 3 and all(len(refs) == 4 for refs in kwargs["reference_frames"])


def test_temporal_latents_carry_each_prompt():
    memory = TemporalLatents()
    frame = make_frames(1)[0]
    assert memory.add_frame(frame) == [frame] and memory.end_of_video() == []
    assert memory.model_kwargs([0, 1]) == {}  # first frame: the model's learned latents
    latents = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5)
    memory.update([2, 0], SimpleNamespace(temporal_latents=latents))
    carried = memory.model_kwargs([0, 2])["temporal_latents"]
    assert torch.equal(carried, torch.stack([latents[1], latents[0]]))


def model_with(perceiver_type):
    return SimpleNamespace(config=SimpleNamespace(perceiver_type=perceiver_type))


def test_default_memory_follows_the_perceiver():
    assert isinstance(default_memory(model_with("fine_grained")), TemporalLatents)
    memory = default_memory(model_with("object_aware"))
    assert isinstance(memory, ReferenceFrames) and memory.num_reference_frames == 4
    with pytest.raises(ValueError, match="no video perceiver"):
        default_memory(model_with(None))


def test_memory_must_fit_the_model():
    with pytest.raises(ValueError, match="ReferenceFrames serves models with perceiver_type='object_aware'"):
        VideoSession(model_with("fine_grained"), None, "the dog", memory=ReferenceFrames())


@pytest.mark.parametrize(
    "text, message",
    [
        (["the dog", "  "], r"prompt 1 is empty"),
        ([""], r"prompt 0 is empty"),
        ([], r"non-empty list of prompts"),
        (None, r"non-empty list of prompts"),
    ],
)
def test_empty_prompts_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        VideoSession(model_with("fine_grained"), None, text=text)


def test_unknown_task_is_refused():
    with pytest.raises(ValueError, match="unknown video task 'referring'"):
        VideoSession(model_with("fine_grained"), None, text="the dog", task="referring")
