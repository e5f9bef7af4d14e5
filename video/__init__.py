"""
Video front end: text prompts followed through a whole video, streamed one frame at a time, with HyperSeg's temporal
latents or InstructSeg's reference frames carried by a [`VideoSession`].

```python
from hyperseg import segment_video
tracks = segment_video(model, processor, "video.mp4", text=["the dog", "the red ball"], task="referring_video")
```

or from the command line, writing PNG masks, `masks.json` (COCO RLE) and `overlay.mp4`:

```bash
python -m hyperseg.video video.mp4 --prompt "the dog" --prompt "the red ball" --model PATH --output-dir OUT
```
"""

from .frames import FrameSource, VideoFrame
from .segment import iter_segment_video, segment_video
from .session import (
    FrameSegmentation,
    PropagatedVisualPrompts,
    ReferenceFrames,
    TemporalLatents,
    VideoSession,
    default_memory,
)
from .writer import VideoFileWriter, VideoSegmentationWriter, blend_masks, encode_rle, prompt_color


__all__ = [
    "FrameSegmentation",
    "FrameSource",
    "PropagatedVisualPrompts",
    "ReferenceFrames",
    "TemporalLatents",
    "VideoFrame",
    "VideoFileWriter",
    "VideoSegmentationWriter",
    "VideoSession",
    "blend_masks",
    "default_memory",
    "encode_rle",
    "iter_segment_video",
    "prompt_color",
    "segment_video",
]
