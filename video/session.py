"""
Video sessions: text prompts, or visual prompts on the first frame, followed through a video, with the state that
carries each prompt from frame to frame held in an explicit memory object rather than in the model.

One memory per system, chosen from the model's perceiver ([`default_memory`]):

- [`TemporalLatents`] (HyperSeg, `perceiver_type="fine_grained"`): per prompt, the perceiver latents returned for
  the previous frame go in with the next one, as the original ReVOS / Ref-YouTube-VOS loops pass them;
- [`ReferenceFrames`] (InstructSeg, `perceiver_type="object_aware"`): each frame is segmented together with
  reference frames picked as the original loops pick them, from a bounded buffer of decoded frames.

A memory answers five calls: `add_frame` / `end_of_video` (which frames are ready), `processor_kwargs` and
`model_kwargs` (what it adds to the processor and model calls of a frame) and `update` (what it keeps of the outputs).
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from hyperseg.processing import select_reference_frames
from hyperseg.processing.prompts import VIDEO_TASKS

from .frames import FrameSource, VideoFrame

SESSION_TASKS = VIDEO_TASKS + ("interactive",)  # "interactive": objects given by visual prompts on the first frame


@dataclass
class FrameSegmentation:
    """
    The segmentation of one frame for every prompt of a session.

    Args:
        frame (`VideoFrame`): the frame (index, timestamp and pixels).
        masks (`list[np.ndarray]`): per prompt, the `(height, width)` bool mask of the best query.
        scores (`list[float]`): per prompt, that query's score (HyperSeg's referring rule).
        query_indices (`list[int]`): per prompt, the decoder query the mask comes from.
    """

    frame: VideoFrame
    masks: list[np.ndarray]
    scores: list[float]
    query_indices: list[int]


class TemporalLatents:
    """
    HyperSeg's video memory: per prompt, the perceiver latents the model returned for the previous processed frame
    (`outputs.temporal_latents`), passed back as `temporal_latents` with the next one; the first frame starts from
    the model's learned latents. Frames are segmented as they arrive.
    """

    perceiver_type = "fine_grained"

    def __init__(self):
        self.latents: dict[int, torch.Tensor] = {}  # prompt index -> (1, num_latents, hidden)

    def add_frame(self, frame: VideoFrame) -> list[VideoFrame]:
        """The frames now ready to be segmented, in order."""
        return [frame]

    def end_of_video(self) -> list[VideoFrame]:
        """The frames still waiting when the video ends."""
        return []

    def processor_kwargs(self, frame: VideoFrame, batch_size: int) -> dict:
        """Extra processor arguments for `frame` with a batch of `batch_size` prompts."""
        return {}

    def model_kwargs(self, prompt_indices: list[int]) -> dict:
        """Extra model arguments for a batch of prompts."""
        if prompt_indices[0] not in self.latents:  # the first frame: every prompt starts together
            return {}
        return {"temporal_latents": torch.cat([self.latents[index] for index in prompt_indices])}

    def update(self, prompt_indices: list[int], outputs) -> None:
        """Keeps what the model returned for a batch of prompts."""
        for row, index in enumerate(prompt_indices):
            self.latents[index] = outputs.temporal_latents[row : row + 1]


class ReferenceFrames:
    """
    InstructSeg's video memory: each frame is segmented together with the reference frames
    [`select_reference_frames`] picks, as the original evaluation loops do. Those can lie ahead, so a frame is ready
    once its look-ahead has been decoded (or the video has ended), and frames come out in order with that delay.
    Decoded frames wait in a bounded buffer: the `num_reference_frames` frames before the next frame to segment (the
    end-of-video window reaches that far back), that frame, and at most `num_reference_frames` after it, i.e. at most
    `2 * num_reference_frames + 1` frames whatever the video's length.

    A video of at most `num_reference_frames` frames, which the original loops index out of range, uses all its other
    frames; a single frame (or `num_reference_frames=0`) is its own reference, as a still image is.

    Args:
        num_reference_frames (`int`, *optional*, defaults to 4): the original's `reference_frame_num`.
    """

    perceiver_type = "object_aware"

    def __init__(self, num_reference_frames: int = 4):
        if num_reference_frames < 0:
            raise ValueError(f"`num_reference_frames` must be >= 0, got {num_reference_frames}")
        self.num_reference_frames = num_reference_frames
        self.buffer: dict[int, VideoFrame] = {}  # position in the processed sequence -> frame
        self.references: dict[int, list[VideoFrame]] = {}  # frame index -> its references (frames of the last call)
        self._num_received = 0
        self._next_position = 0

    def _lookahead(self, position: int) -> int:
        """The last position the references of `position` can need while the video's length is unknown."""
        half = self.num_reference_frames // 2
        return max(position, self.num_reference_frames if position < half else position + half)

    def add_frame(self, frame: VideoFrame) -> list[VideoFrame]:
        """Buffers `frame`; returns the frames now ready to be segmented, in order."""
        self.buffer[self._num_received] = frame
        self._num_received += 1
        self.references = {}
        ready = []
        while self._next_position < self._num_received and self._lookahead(self._next_position) < self._num_received:
            ready.append(self._release())
        return ready

    def end_of_video(self) -> list[VideoFrame]:
        """The frames still waiting when the video ends, now that its length is known."""
        self.references = {}
        return [self._release() for _ in range(self._next_position, self._num_received)]

    def _release(self) -> VideoFrame:
        """Hands out the next frame with its references (the length so far matters only once the video has ended)."""
        position = self._next_position
        frame = self.buffer[position]
        if self._num_received > self.num_reference_frames:
            positions = select_reference_frames(position, self._num_received, self.num_reference_frames)
        else:  # the end of a video too short for the window
            positions = [index for index in range(self._num_received) if index != position]
        self.references[frame.index] = [self.buffer[index] for index in positions or [position]]
        self._next_position += 1
        for stale in [index for index in self.buffer if index < self._next_position - self.num_reference_frames]:
            del self.buffer[stale]
        return frame

    def processor_kwargs(self, frame: VideoFrame, batch_size: int) -> dict:
        """The reference frames of `frame`, for every prompt of the batch."""
        references = [PIL.Image.fromarray(reference.image) for reference in self.references[frame.index]]
        return {"reference_frames": [references] * batch_size}

    def model_kwargs(self, prompt_indices: list[int]) -> dict:
        """Nothing beyond the processor's inputs."""
        return {}

    def update(self, prompt_indices: list[int], outputs) -> None:
        """Nothing is carried from one frame's outputs to the next."""


def default_memory(model) -> TemporalLatents | ReferenceFrames:
    """The memory for the model's perceiver: [`TemporalLatents`] (HyperSeg) or [`ReferenceFrames`] (InstructSeg)."""
    memories = {memory.perceiver_type: memory for memory in (TemporalLatents, ReferenceFrames)}
    perceiver_type = model.config.perceiver_type
    if perceiver_type not in memories:
        raise ValueError(f"this model has no video perceiver (perceiver_type={perceiver_type!r})")
    return memories[perceiver_type]()


class PropagatedVisualPrompts:
    """
    The prompts of a `task="interactive"` session (DAVIS-17 semi-supervised): each object is prompted on the first
    processed frame by its given visual prompt (`{"mask" | "box" | "point" | "scribble": ...}`, as the processor takes
    them), and on every later frame by the mask predicted for it on the previous processed frame, as PSALM's DAVIS-17
    loop feeds its previous predictions back as region prompts. HyperSeg pools a region from the image it segments, so
    that mask is laid on the new frame (PSALM pools it from the previous frame's image). A prediction that is empty,
    or that covers no pixel once resized to the vision-tower grid, leaves the object's previous prompt in place.

    Args:
        visual_prompts (`list[dict]`): one visual prompt per object, on the first processed frame.
        image_processor ([`HyperSegImageProcessor`]): resizes a mask to the vision-tower grid as the processor does.
    """

    def __init__(self, visual_prompts: list[dict], image_processor):
        if not isinstance(visual_prompts, (list, tuple)) or not visual_prompts:
            raise ValueError(
                f"task 'interactive' needs `visual_prompts`, a non-empty list of one prompt per object, got "
                f"{visual_prompts!r}"
            )
        self.current = list(visual_prompts)
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.current)

    def processor_kwargs(self, prompt_indices: list[int]) -> dict:
        """One visual prompt per row of the batch: the objects `prompt_indices`."""
        return {"visual_prompts": [[self.current[index]] for index in prompt_indices]}

    def update(self, masks: list[np.ndarray]) -> None:
        """Prompts each object on the next frame with the mask just predicted for it, when that mask is usable."""
        size, resample = self.image_processor.size, self.image_processor.resample
        for index, mask in enumerate(masks):
            if self.image_processor.resize(mask[None].astype(np.uint8), size=size, resample=resample).any():
                self.current[index] = {"mask": mask}


def as_prompt_list(text) -> list[str]:
    """`text` (one prompt or a list) as a list of prompts; a ValueError names the first empty one."""
    prompts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
    if not prompts:
        raise ValueError(f"`text` must be a prompt or a non-empty list of prompts, got {text!r}")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"prompt {index} is empty ({prompt!r}); every prompt needs some text")
    return prompts


class VideoSession:
    r"""
    Follows one or more text prompts (or, with `task="interactive"`, objects given by visual prompts on the first
    frame, see [`PropagatedVisualPrompts`]) through a video, frame by frame. Feed frames in order with
    [`~VideoSession.add_frame`] and call [`~VideoSession.close`] at the end of the video (or use
    [`~VideoSession.run`]); each call returns the frames segmented so far, one [`FrameSegmentation`] each, in order.

    All prompts of a frame go through the model together (in batches of at most `max_batch_size`); each keeps its
    own state, so every prompt's track is the one a session with that prompt alone would give.

    Args:
        model ([`HyperSegForUniversalSegmentation`]): the model, on the device and in the dtype to run in.
        processor ([`HyperSegProcessor`]): its processor.
        text (`str` or `list[str]`): the prompts (referring expressions or reasoning questions).
        task (`str`, *optional*, defaults to `"referring_video"`): `"referring_video"`, `"reasoning_video"` or
            `"interactive"` (HyperSeg's temporal latents only: InstructSeg has no region prompts).
        memory ([`TemporalLatents`] or [`ReferenceFrames`], *optional*): a fresh memory for the video; by default
            the one of the model's perceiver ([`default_memory`]).
        max_batch_size (`int`, *optional*): at most this many prompts per forward pass (all by default).
        visual_prompts (`list[dict]`, *optional*): for `task="interactive"` instead of `text`: one visual prompt per
            object on the first frame, e.g. `{"mask": first_frame_mask}`.
    """

    def __init__(
        self,
        model,
        processor,
        text: str | list[str],
        task: str = "referring_video",
        memory: TemporalLatents | ReferenceFrames | None = None,
        max_batch_size: int | None = None,
        visual_prompts: list[dict] | None = None,
    ):
        if task not in SESSION_TASKS:
            raise ValueError(f"unknown video task {task!r}; expected one of {', '.join(SESSION_TASKS)}")
        self.visual_prompts = None
        if task == "interactive":
            if text is not None:
                raise ValueError("task 'interactive' follows `visual_prompts`, not `text`")
            self.visual_prompts = PropagatedVisualPrompts(visual_prompts, processor.image_processor)
            self.prompts = [f"object {index}" for index in range(len(self.visual_prompts))]
        elif visual_prompts is not None:
            raise ValueError(f"`visual_prompts` are followed by task 'interactive', not {task!r}")
        else:
            self.prompts = as_prompt_list(text)
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"`max_batch_size` must be at least 1, got {max_batch_size}")
        self.memory = memory if memory is not None else default_memory(model)
        if self.memory.perceiver_type != model.config.perceiver_type:
            raise ValueError(
                f"{type(self.memory).__name__} serves models with perceiver_type={self.memory.perceiver_type!r}; this "
                f"one has {model.config.perceiver_type!r}"
            )
        if task == "interactive" and not isinstance(self.memory, TemporalLatents):
            raise ValueError(
                "task 'interactive' follows objects with HyperSeg's TemporalLatents (fine_grained perceiver); "
                f"this model's perceiver is {model.config.perceiver_type!r}"
            )
        self.model = model
        self.processor = processor
        self.task = task
        self.max_batch_size = max_batch_size or len(self.prompts)

    def add_frame(self, frame: VideoFrame) -> list[FrameSegmentation]:
        """Feeds the next frame; returns the frames this made ready, segmented."""
        return [self._segment(ready) for ready in self.memory.add_frame(frame)]

    def close(self) -> list[FrameSegmentation]:
        """Ends the video; returns the frames still waiting, segmented."""
        return [self._segment(ready) for ready in self.memory.end_of_video()]

    def run(self, frames: Iterable[VideoFrame], progress: bool = True) -> Iterator[FrameSegmentation]:
        """
        Feeds every frame of `frames` (e.g. a [`FrameSource`]) and closes the video, yielding the segmented frames
        as they come, with a progress bar (frames/s).
        """
        total = frames.num_selected_frames if isinstance(frames, FrameSource) else None
        with tqdm(total=total, unit="frame", desc="Segmenting video", disable=not progress) as bar:
            for frame in frames:
                for result in self.add_frame(frame):
                    bar.update()
                    yield result
            for result in self.close():
                bar.update()
                yield result

    @torch.no_grad()
    def _segment(self, frame: VideoFrame) -> FrameSegmentation:
        image = PIL.Image.fromarray(frame.image)
        target_size = frame.image.shape[:2]
        masks, scores, query_indices = [], [], []
        for start in range(0, len(self.prompts), self.max_batch_size):
            batch = list(range(start, min(start + self.max_batch_size, len(self.prompts))))
            if self.visual_prompts is not None:
                prompt_kwargs = self.visual_prompts.processor_kwargs(batch)
            else:
                prompt_kwargs = {"text": [self.prompts[index] for index in batch]}
            inputs = self.processor(
                images=[image] * len(batch),
                task=self.task,
                **prompt_kwargs,
                **self.memory.processor_kwargs(frame, len(batch)),
            ).to(self.model.device, dtype=self.model.dtype)
            outputs = self.model(**inputs, **self.memory.model_kwargs(batch))
            self.memory.update(batch, outputs)
            target_sizes = [target_size] * len(batch)
            if self.visual_prompts is not None:  # one region per row
                regions = self.processor.post_process_interactive_segmentation(outputs, target_sizes=target_sizes)
                results = [row[0] for row in regions]
            else:
                results = self.processor.post_process_referring_segmentation(outputs, target_sizes=target_sizes)
            masks.extend(result["mask"].cpu().numpy() for result in results)
            scores.extend(result["score"] for result in results)
            query_indices.extend(result["query_index"] for result in results)
        if self.visual_prompts is not None:
            self.visual_prompts.update(masks)
        return FrameSegmentation(frame, masks, scores, query_indices)
