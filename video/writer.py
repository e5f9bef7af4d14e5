"""Writes a video segmentation as it comes: PNG masks, COCO RLE masks in JSON, and an overlay video."""

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import PIL.Image
from pycocotools import mask as mask_utils

from .session import FrameSegmentation


# one colour per prompt (RGB), cycled when there are more prompts
PROMPT_COLORS = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (145, 30, 180),
    (70, 240, 240),
    (245, 130, 48),
    (240, 50, 230),
    (128, 128, 0),
    (0, 0, 128),
)


def prompt_color(prompt_index: int) -> tuple[int, int, int]:
    return PROMPT_COLORS[prompt_index % len(PROMPT_COLORS)]


def blend_masks(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """
    Paints each mask over `image` in its prompt's colour: `(1 - alpha) * pixel + alpha * colour` inside the mask,
    prompts in order (a later prompt is painted over an earlier one).

    Args:
        image (`np.ndarray` of shape `(height, width, 3)`): uint8 RGB frame.
        masks (`list[np.ndarray]`): per prompt, a `(height, width)` bool mask.
        alpha (`float`, *optional*, defaults to 0.5): opacity of the colour.

    Returns:
        `np.ndarray` of shape `(height, width, 3)`: the uint8 overlay.
    """
    overlay = image.astype(np.float32)
    for prompt_index, mask in enumerate(masks):
        color = np.asarray(prompt_color(prompt_index), dtype=np.float32)
        overlay[mask] = (1 - alpha) * overlay[mask] + alpha * color
    return np.rint(overlay).astype(np.uint8)


def encode_rle(mask: np.ndarray) -> dict:
    """A `(height, width)` bool mask as COCO RLE: `{"size": [height, width], "counts": str}`."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(size) for size in rle["size"]], "counts": rle["counts"].decode("ascii")}


class VideoFileWriter:
    r"""
    Encodes RGB frames into a video file with av, one at a time. The stream is created at the first frame, whose size
    every later frame must have.

    Args:
        path (`str` or `os.PathLike`): the file to write; its extension picks the container (`.mp4`, `.mkv`, ...).
        fps (`Fraction` or `float`): frame rate.
        codec (`str`, *optional*, defaults to `"libx264"`): the av encoder, e.g. `"ffv1"` (lossless, `.mkv`).
        pix_fmt (`str`, *optional*): the encoded pixel format; by default `yuv420p` (what every player reads) for
            even sizes and `yuv444p` for odd ones. Use `"bgr0"` with `ffv1` for lossless RGB.
        options (`dict[str, str]`, *optional*): encoder options, e.g. `{"crf": "18"}` for libx264.
    """

    def __init__(self, path, fps, codec: str = "libx264", pix_fmt: str | None = None, options: dict | None = None):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.codec = codec
        self.pix_fmt = pix_fmt
        self.options = dict(options or {})
        self.num_frames = 0
        self._container = None
        self._stream = None

    def write(self, image: np.ndarray) -> None:
        """Appends one `(height, width, 3)` uint8 RGB frame."""
        if self._container is None:
            height, width = image.shape[:2]
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream(self.codec, rate=self.fps)
            self._stream.height, self._stream.width = height, width
            # 4:2:0 needs even sizes; 4:4:4 keeps odd ones
            self._stream.pix_fmt = self.pix_fmt or ("yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p")
            self._stream.options = self.options
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.num_frames
        frame.time_base = 1 / self.fps
        self._container.mux(self._stream.encode(frame))
        self.num_frames += 1

    def close(self) -> None:
        """Flushes the encoder and finalises the file (nothing is written when no frame came)."""
        if self._container is not None:
            self._container.mux(self._stream.encode(None))
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoFileWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close()


class VideoSegmentationWriter:
    r"""
    Writes each segmented frame as soon as it arrives, into `output_dir`:

    - `masks/<prompt index>/<frame index>.png`: the mask, 8-bit grey, 255 = object;
    - `overlay.mp4`: the frames with every prompt's mask blended in its colour (H.264, at `fps`);
    - `masks.json`, written on [`~VideoSegmentationWriter.close`]: the prompts, their colours, and per prompt one
      entry per frame with `frame_index`, `timestamp`, `score` and the mask as COCO RLE (`segmentation`).

    Used as a context manager, it also closes when an error interrupts the video: the overlay is finalised with the
    frames written so far and `masks.json` records them, with `"complete": false` and the error.

    Args:
        output_dir (`str` or `os.PathLike`): where to write; created if needed.
        prompts (`list[str]`): the prompts, in session order.
        fps (`Fraction` or `float`): frame rate of the overlay (the input's rate divided by the frame stride).
        metadata (`dict`, *optional*): extra fields stored at the top of `masks.json` (e.g. the input's path).
        alpha (`float`, *optional*, defaults to 0.5): opacity of the mask colours in the overlay.
    """

    def __init__(self, output_dir, prompts: list[str], fps, metadata: dict | None = None, alpha: float = 0.5):
        self.output_dir = Path(output_dir)
        self.prompts = list(prompts)
        self.fps = Fraction(fps).limit_denominator(1_000_000)
        self.metadata = dict(metadata or {})
        self.alpha = alpha
        self.tracks: list[list[dict]] = [[] for _ in self.prompts]
        self._mask_dirs = [self.output_dir / "masks" / str(index) for index in range(len(self.prompts))]
        for mask_dir in self._mask_dirs:
            mask_dir.mkdir(parents=True, exist_ok=True)
        self._overlay = VideoFileWriter(self.output_dir / "overlay.mp4", self.fps, options={"crf": "18"})

    @property
    def overlay_path(self) -> Path:
        return self._overlay.path

    @property
    def json_path(self) -> Path:
        return self.output_dir / "masks.json"

    def write(self, result: FrameSegmentation) -> None:
        """Writes the PNG masks and the overlay frame of one segmented frame."""
        frame = result.frame
        for prompt_index, (mask, score) in enumerate(zip(result.masks, result.scores)):
            PIL.Image.fromarray(mask.astype(np.uint8) * 255).save(self._mask_dirs[prompt_index] / f"{frame.index}.png")
            self.tracks[prompt_index].append(
                {
                    "frame_index": frame.index,
                    "timestamp": frame.timestamp,
                    "score": score,
                    "segmentation": encode_rle(mask),
                }
            )
        self._overlay.write(blend_masks(frame.image, result.masks, self.alpha))

    def close(self, error: BaseException | None = None) -> None:
        """Finalises the overlay video and writes `masks.json` (marked incomplete when `error` is given)."""
        self._overlay.close()
        document = {
            **self.metadata,
            "fps": float(self.fps),
            "complete": error is None,
            "prompts": [
                {"index": index, "text": text, "color": list(prompt_color(index))}
                for index, text in enumerate(self.prompts)
            ],
            "tracks": self.tracks,
        }
        if error is not None:
            document["error"] = str(error) or type(error).__name__
        partial_path = self.json_path.with_suffix(".json.partial")
        partial_path.write_text(json.dumps(document))
        os.replace(partial_path, self.json_path)

    def __enter__(self) -> "VideoSegmentationWriter":
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close(exc)
