"""Streaming frame sources: a video file decoded with av, an image folder, image files, PIL images or uint8 arrays."""

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import PIL.Image


DEFAULT_FPS = Fraction(30)
TRUNCATION_TOLERANCE = 2  # frames a file may fall short of what its container records before it counts as truncated
_DURATION_TAG = re.compile(r"^(\d+):(\d{2}):(\d{2}(?:\.\d+)?)$")  # Matroska's per-stream "DURATION" tag


@dataclass(frozen=True)
class VideoFrame:
    """
    One decoded frame.

    Args:
        index (`int`): position of the frame in the input video, counted before any `every=N` subsampling.
        timestamp (`float`): presentation time in seconds (the file's own timestamps; `index / fps` for frames given
            in memory or as image files).
        image (`np.ndarray` of shape `(height, width, 3)`): the RGB pixels, uint8.
    """

    index: int
    timestamp: float
    image: np.ndarray


class FrameSource:
    r"""
    Iterates over the frames of a video one at a time, so that memory does not grow with the video's length: a file
    is decoded with av frame by frame, image files are opened when their turn comes, and each frame is dropped once
    the caller lets go of it.

    `fps` is the input's frame rate and `num_frames` its frame count (for a file, the container's count, or an
    estimate from the video stream's duration when it records none, or `None`).

    Every frame must have the size of the first one; a frame that cannot be read, a size change, a file without
    frames and a truncated file (one whose decoding stops short of what its container records) raise a `ValueError`
    that names the file and the frame index. Frames already yielded stay valid, so a caller that writes results as
    they come keeps them.

    Args:
        video (`str`, `os.PathLike`, `np.ndarray` or `Sequence`):
            - a path that av can open (any container / codec FFmpeg decodes);
            - a folder of image files, read in file-name order;
            - a uint8 array of shape `(num_frames, height, width, 3)` (anything `np.asarray` turns into one, e.g. a
              CPU torch tensor);
            - a sequence of frames, each a PIL image, a `(height, width, 3)` uint8 array or the path of an image.
        every (`int`, *optional*, defaults to 1):
            Keep every `every`-th frame (frames `0, every, 2 * every, ...`); the others are decoded (video codecs
            need them) but never converted.
        fps (`float` or `Fraction`, *optional*):
            Frame rate of frames given in memory or as image files (defaults to 30). A video file has its own rate;
            passing `fps` with one is an error.
    """

    def __init__(self, video, every: int = 1, fps: float | Fraction | None = None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"`every` must be a positive integer, got {every!r}")
        if fps is not None and not fps > 0:
            raise ValueError(f"`fps` must be positive, got {fps!r}")
        self.every = every
        self.name = "the frames given in memory"
        self._path = None  # a video file, decoded with av
        self._frames = None  # frames, or paths of image files
        if isinstance(video, (str, os.PathLike)):
            path = Path(video)
            if not path.exists():
                raise FileNotFoundError(f"video not found: {path}")
            self.name = str(path)
            if path.is_dir():
                extensions = PIL.Image.registered_extensions()
                self._frames = sorted(file for file in path.iterdir() if file.suffix.lower() in extensions)
            else:
                self._path = path
        else:
            self._frames = self._as_frame_sequence(video)

        if self._path is not None:
            if fps is not None:
                raise ValueError(f"`fps` applies to frames given in memory or as image files; {self.name} has its own")
            self.fps, self.num_frames = self._probe(self._path)
        else:
            if len(self._frames) == 0:
                raise ValueError(f"{self.name}: the video has no frames")
            self.fps = Fraction(fps).limit_denominator(1_000_000) if fps is not None else DEFAULT_FPS
            self.num_frames = len(self._frames)

    @property
    def num_selected_frames(self) -> int | None:
        """How many frames iteration yields (see `num_frames`)."""
        return None if self.num_frames is None else -(-self.num_frames // self.every)

    @property
    def output_fps(self) -> Fraction:
        """The rate of the yielded frames: `fps / every`."""
        return self.fps / self.every

    def __iter__(self) -> Iterator[VideoFrame]:
        frames = self._decode_file() if self._path is not None else self._read_sequence()
        size = None
        for frame in frames:
            if size is None:
                size = frame.image.shape[:2]
            elif frame.image.shape[:2] != size:
                raise ValueError(
                    f"{self.name}: frame {frame.index} is {frame.image.shape[1]}x{frame.image.shape[0]} (width x "
                    f"height) but the video started at {size[1]}x{size[0]}; every frame must have the same size"
                )
            yield frame

    @staticmethod
    def _as_frame_sequence(video) -> Sequence:
        if isinstance(video, (list, tuple)):
            return video
        array = np.asarray(video)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(
                "a video given as an array must be uint8 of shape (num_frames, height, width, 3), got "
                f"{array.dtype} of shape {array.shape}"
            )
        return array

    def _read_sequence(self) -> Iterator[VideoFrame]:
        for index in range(0, len(self._frames), self.every):
            yield VideoFrame(index, float(index / self.fps), self._frame_to_array(self._frames[index], index))

    def _frame_to_array(self, frame, index: int) -> np.ndarray:
        """One frame as a (height, width, 3) uint8 RGB array, or a ValueError naming the frame."""
        if isinstance(frame, (str, os.PathLike)):
            try:
                with PIL.Image.open(frame) as image:
                    return np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as error:
                raise ValueError(f"{self.name}: cannot read frame {index} from {frame} ({error})") from error
        if isinstance(frame, PIL.Image.Image):
            return np.asarray(frame.convert("RGB"))
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"{self.name}: frame {index} must be a PIL image, an image path or a uint8 (height, width, 3) array, "
                f"got {type(frame).__name__} {getattr(array, 'dtype', '')} of shape {array.shape}"
            )
        return array

    def _open(self, path: Path) -> av.container.InputContainer:
        try:
            container = av.open(str(path))
        except av.error.FFmpegError as error:
            raise ValueError(f"{path} is not a video that av can decode ({error})") from error
        if not container.streams.video:
            container.close()
            raise ValueError(f"{path} has no video stream")
        return container

    def _probe(self, path: Path) -> tuple[Fraction, int | None]:
        """
        The file's frame rate and frame count: the container's count, else an estimate from the stream's duration
        (Matroska records no count), else `None`.
        """
        with self._open(path) as container:
            stream = container.streams.video[0]
            fps = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_FPS)
            duration = _stream_duration(stream)
            if stream.frames:
                return fps, stream.frames
            return fps, (round(duration * fps) if duration is not None else None)

    def _decode_file(self) -> Iterator[VideoFrame]:
        with self._open(self._path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            index, end_time = 0, 0.0
            decoded = container.decode(stream)
            while True:
                try:
                    frame = next(decoded, None)
                except av.error.FFmpegError as error:
                    raise ValueError(
                        f"{self.name}: cannot decode frame {index}; the file is truncated or corrupt ({error})"
                    ) from error
                if frame is None:
                    break
                timestamp = frame.time if frame.time is not None else float(index / self.fps)
                if index % self.every == 0:
                    yield VideoFrame(index, timestamp, frame.to_ndarray(format="rgb24"))
                has_duration = frame.duration and frame.time_base
                end_time = timestamp + float(frame.duration * frame.time_base if has_duration else 1 / self.fps)
                index += 1
            if index == 0:
                raise ValueError(f"{self.name}: the video has no frames")
            self._check_complete(stream, index, end_time)

    def _check_complete(self, stream, num_decoded: int, end_time: float) -> None:
        """
        Raises when decoding stopped more than `TRUNCATION_TOLERANCE` frames short of the frame count or the video
        stream duration the container records (a frame or two may legitimately go, e.g. cut by an MP4 edit list).
        """
        if stream.frames and num_decoded < stream.frames - TRUNCATION_TOLERANCE:
            raise ValueError(
                f"{self.name} is truncated: its header announces {stream.frames} frames but decoding stops after "
                f"frame {num_decoded - 1}"
            )
        duration = _stream_duration(stream)
        if duration is not None and end_time + TRUNCATION_TOLERANCE / self.fps < duration:
            raise ValueError(
                f"{self.name} is truncated: its video stream lasts {duration:.3f} s but decoding stops after frame "
                f"{num_decoded - 1}, which ends at {end_time:.3f} s"
            )


def _stream_duration(stream) -> float | None:
    """Duration in seconds of a video stream from the container's own records, or `None`."""
    if stream.duration is not None and stream.time_base is not None:
        start = stream.start_time or 0
        return float((stream.duration + start) * stream.time_base)
    match = _DURATION_TAG.match(stream.metadata.get("DURATION", ""))
    if match is None:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
