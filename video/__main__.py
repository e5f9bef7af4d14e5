"""
Segment a video from text prompts on the command line:

```bash
python -m hyperseg.video INPUT --prompt "expr" [--prompt "expr2"] --model PATH --output-dir OUT [--every N]
```

writes `OUT/masks/<prompt index>/<frame index>.png`, `OUT/masks.json` and `OUT/overlay.mp4` as frames come.
"""

import argparse
import sys

import torch

from hyperseg.processing import HyperSegProcessor
from hyperseg.processing.prompts import VIDEO_TASKS
from hyperseg.processing.segment import load_model

from .frames import FrameSource
from .segment import iter_segment_video
from .session import as_prompt_list


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hyperseg.video",
        description=(
            "Follow one or more text prompts through a video. Writes OUT/masks/<prompt index>/<frame index>.png, "
            "OUT/masks.json (per-frame COCO RLE masks, scores, timestamps) and OUT/overlay.mp4 (one colour per "
            "prompt) as frames come; after an error, what was written is kept and masks.json says where it stopped."
        ),
    )
    parser.add_argument("input", help="a video file that av can open, or a folder of frame images")
    parser.add_argument(
        "--prompt", action="append", required=True, help="a referring expression or question; repeat for several"
    )
    parser.add_argument(
        "--model",
        required=True,
        help="a model folder: a converted checkpoint (a folder with only a config gives a seeded random model)",
    )
    parser.add_argument("--output-dir", required=True, help="where to write the masks and the overlay")
    parser.add_argument("--every", type=int, default=1, help="segment every N-th frame (default: every frame)")
    parser.add_argument("--task", choices=VIDEO_TASKS, default="referring_video")
    parser.add_argument("--fps", type=float, help="frame rate of a folder of frames (default 30)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--max-batch-size", type=int, help="at most this many prompts per forward pass")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # the cheap checks first, then the model
        as_prompt_list(args.prompt)
        FrameSource(args.input, every=args.every, fps=args.fps)
        model, is_random = load_model(args.model)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if is_random:
        print(f"NOTE: {args.model} has no trained weights; the masks of this seeded random model are meaningless")
    model = model.to(device=args.device, dtype=getattr(torch, args.dtype))
    processor = HyperSegProcessor.from_pretrained(args.model)
    results = iter_segment_video(
        model,
        processor,
        args.input,
        args.prompt,
        args.task,
        every=args.every,
        fps=args.fps,
        output_dir=args.output_dir,
        max_batch_size=args.max_batch_size,
    )
    num_frames = 0
    try:
        for _ in results:
            num_frames += 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        print(f"the {num_frames} frame(s) segmented before the error are in {args.output_dir}", file=sys.stderr)
        return 1
    print(f"segmented {num_frames} frame(s) for {len(args.prompt)} prompt(s) into {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
