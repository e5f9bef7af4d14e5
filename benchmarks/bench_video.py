"""
Speed and memory of the video front end on a short and a long synthetic video (a script, not a test: timings
depend on the machine).

    python benchmarks/bench_video.py [--frames 30 300] [--height 240 --width 320] [--model PATH]

For each length, a synthetic video (a red square and a blue disc moving over a gradient) is written losslessly (FFV1)
and segmented for two prompts in a fresh process, the way `python -m hyperseg.video` does it: frames streamed from
the file and every mask, `masks.json` and `overlay.mp4` written as they come. Each run reports its frames/s (the
segmentation loop, after the model is loaded), its resident memory once the model is loaded and its peak resident
memory (`ru_maxrss`). Streaming means the peak should not grow with the video's length: the last line compares the
longest video with the shortest.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hyperseg.processing import HyperSegProcessor
from hyperseg.processing.segment import DEFAULT_MODEL, load_model
from hyperseg.video import VideoFileWriter, iter_segment_video


PROMPTS = ["the red square", "the blue circle"]


def synthetic_frame(index: int, height: int, width: int) -> np.ndarray:
    """A horizontal gradient with a red square moving right and a blue disc moving down."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[:] = np.linspace(60, 200, width, dtype=np.uint8)[None, :, None]
    side = height // 4
    left = (index * 4) % (width - side)
    frame[side : 2 * side, left : left + side] = (220, 30, 30)
    rows, cols = np.ogrid[:height, :width]
    center_row = (index * 3) % (height - side) + side // 2
    frame[(rows - center_row) ** 2 + (cols - 3 * width // 4) ** 2 <= (side // 2) ** 2] = (30, 60, 220)
    return frame


def write_video(path: Path, num_frames: int, height: int, width: int, fps: int = 30) -> None:
    with VideoFileWriter(path, fps, codec="ffv1", pix_fmt="bgr0") as writer:
        for index in range(num_frames):
            writer.write(synthetic_frame(index, height, width))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(video: str, output_dir: str, model_path: str) -> None:
    """One measured run, in its own process; prints a JSON line."""
    model, _ = load_model(model_path)
    processor = HyperSegProcessor.from_pretrained(model_path)
    loaded_rss = peak_rss_mib()
    start = time.perf_counter()
    results = iter_segment_video(model, processor, video, PROMPTS, output_dir=output_dir, progress=False)
    num_frames = sum(1 for _ in results)
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": num_frames, "seconds": seconds, "loaded_rss": loaded_rss, "peak_rss": peak_rss_mib()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[30, 300], help="video lengths, shortest first")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="model folder (default: the shipped tiny model)")
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child, args.model)

    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for num_frames in args.frames:
            video = Path(workdir) / f"synthetic_{num_frames}.mkv"
            write_video(video, num_frames, args.height, args.width)
            output_dir = Path(workdir) / f"out_{num_frames}"
            command = [sys.executable, __file__, "--model", args.model, "--child", str(video), str(output_dir)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"the {num_frames}-frame run failed:\n{result.stderr}")
            row = json.loads(result.stdout.strip().splitlines()[-1])
            written = json.loads((output_dir / "masks.json").read_text())
            assert row["frames"] == num_frames and all(len(track) == num_frames for track in written["tracks"])
            rows.append(row)

    print(f"video {args.width}x{args.height}, {len(PROMPTS)} prompts per frame, model {args.model}")
    print(f"{'frames':>7} {'loop s':>8} {'frames/s':>9} {'RSS after load MiB':>19} {'peak RSS MiB':>13}")
    for row in rows:
        fps = row["frames"] / row["seconds"]
        print(
            f"{row['frames']:>7} {row['seconds']:>8.1f} {fps:>9.2f} {row['loaded_rss']:>19.1f} "
            f"{row['peak_rss']:>13.1f}"
        )
    shortest, longest = min(rows, key=lambda r: r["frames"]), max(rows, key=lambda r: r["frames"])
    growth = longest["peak_rss"] / shortest["peak_rss"] - 1
    print(f"peak RSS, {longest['frames']} vs {shortest['frames']} frames: {growth:+.1%}")


if __name__ == "__main__":
    main()
