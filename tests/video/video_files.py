"""Video files for the video tests: lossless ones written with av, an empty one, and reading one back."""

import av

from hyperseg.video import VideoFileWriter


def write_video(path, frames, fps, codec: str = "ffv1", pix_fmt: str = "bgr0"):
    """Writes RGB frames losslessly (FFV1 in Matroska by default, or `codec="png", pix_fmt="rgb24"` in AVI)."""
    with VideoFileWriter(path, fps, codec=codec, pix_fmt=pix_fmt) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def write_empty_video(path, fps):
    """An AVI file whose PNG video stream holds no frame."""
    container = av.open(str(path), "w")
    stream = container.add_stream("png", rate=fps)
    stream.height, stream.width, stream.pix_fmt = 16, 16, "rgb24"
    container.start_encoding()
    container.close()
    return path


def read_video(path):
    """The average frame rate and every frame (RGB arrays) of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.average_rate, [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
