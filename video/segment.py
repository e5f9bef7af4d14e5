"""`segment_video`: a video and text prompts in, one mask track per prompt out (and optionally written to disk)."""

import contextlib
from collections.abc import Iterator
from fractions import Fraction

from .frames import FrameSource
from .session import FrameSegmentation, VideoSession
from .writer import VideoSegmentationWriter


def iter_segment_video(
    model,
    processor,
    video,
    text: str | list[str] | None = None,
    task: str = "referring_video",
    *,
    visual_prompts: list[dict] | None = None,
    every: int = 1,
    fps: float | Fraction | None = None,
    output_dir=None,
    max_batch_size: int | None = None,
    progress: bool = True,
) -> Iterator[FrameSegmentation]:
    """
    The streaming form of [`segment_video`] (same arguments): yields one [`FrameSegmentation`] per processed frame
    as soon as it is ready and writes it when `output_dir` is given. It keeps no frame and no mask (only, when
    writing, the run-length encoded masks that go into `masks.json`), so memory does not grow with the video's
    length. The prompts and the input are checked before anything is written.
    """
    session = VideoSession(model, processor, text, task, max_batch_size=max_batch_size, visual_prompts=visual_prompts)
    source = FrameSource(video, every=every, fps=fps)
    writer = None
    if output_dir is not None:
        metadata = {"input": source.name, "task": task, "every": every}
        writer = VideoSegmentationWriter(output_dir, session.prompts, source.output_fps, metadata=metadata)
    with writer if writer is not None else contextlib.nullcontext():
        for result in session.run(source, progress=progress):
            if writer is not None:
                writer.write(result)
            yield result


def segment_video(
    model,
    processor,
    video,
    text: str | list[str] | None = None,
    task: str = "referring_video",
    *,
    visual_prompts: list[dict] | None = None,
    every: int = 1,
    fps: float | Fraction | None = None,
    output_dir=None,
    max_batch_size: int | None = None,
    progress: bool = True,
) -> list[list[dict]]:
    r"""
    Segments every frame of a video for each text prompt, carrying each prompt's state from frame to frame in a
    [`VideoSession`]. Frames are decoded one at a time (see [`FrameSource`]); [`iter_segment_video`] is the form
    that also returns them one at a time.

    Args:
        model ([`HyperSegForUniversalSegmentation`]): the model, on the device and in the dtype to run in.
        processor ([`HyperSegProcessor`]): its processor.
        video (`str`, `os.PathLike`, `np.ndarray` or `list`):
            A path that av can open, a folder of image files, a uint8 array `(num_frames, height, width, 3)`, or a
            list of PIL images / uint8 `(height, width, 3)` arrays / image paths.
        text (`str` or `list[str]`): one prompt or several; each gets its own track.
        task (`str`, *optional*, defaults to `"referring_video"`): `"referring_video"`, `"reasoning_video"`, or
            `"interactive"` to follow objects given by `visual_prompts` instead of `text`.
        visual_prompts (`list[dict]`, *optional*): for `task="interactive"`: one visual prompt per object on the
            first frame (`{"mask" | "box" | "point" | "scribble": ...}`, as the processor takes them); on later frames
            each object is prompted by its previous mask (see [`PropagatedVisualPrompts`]). One track per object.
        every (`int`, *optional*, defaults to 1): segment every `every`-th frame only.
        fps (`float`, *optional*): frame rate of in-memory frames or image files (default 30; files have their own).
        output_dir (`str` or `os.PathLike`, *optional*): also write the PNG masks, `masks.json` and `overlay.mp4`
            there as frames come (see [`VideoSegmentationWriter`]); what was written survives an error.
        max_batch_size (`int`, *optional*): at most this many prompts per forward pass (all by default).
        progress (`bool`, *optional*, defaults to `True`): show a progress bar with frames/s.

    Returns:
        `list[list[dict]]`: per prompt, one dict per processed frame with `frame_index` (`int`, position in the
        input video), `timestamp` (`float`, seconds), `mask` (`np.ndarray` of shape `(height, width)`, bool) and
        `score` (`float`).

    Example:

    ```python
    >>> from hyperseg import segment_video
    >>> tracks = segment_video(model, processor, "cats.mp4", text=["the cat on the left", "the sofa"])
    >>> [entry["score"] for entry in tracks[0]]
    ```
    """
    tracks = None
    results = iter_segment_video(
        model,
        processor,
        video,
        text,
        task,
        visual_prompts=visual_prompts,
        every=every,
        fps=fps,
        output_dir=output_dir,
        max_batch_size=max_batch_size,
        progress=progress,
    )
    for result in results:
        tracks = tracks or [[] for _ in result.masks]
        for track, mask, score in zip(tracks, result.masks, result.scores):
            track.append(
                {"frame_index": result.frame.index, "timestamp": result.frame.timestamp, "mask": mask, "score": score}
            )
    return tracks
