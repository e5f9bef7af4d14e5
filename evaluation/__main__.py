"""Command line of the evaluation runner.

python -m hyperseg.evaluation --benchmark refcoco --split val --data-root DIR --model PATH --output report.json

Video benchmarks (davis, ref_davis, ref_youtube_vos, revos) run every video through hyperseg.video's
iter_segment_video, one resumable record per video; --predictions-dir also writes the predicted masks in the
benchmark's result layout (Ref-YouTube-VOS valid, scored by the challenge server, always writes its submission).
"""

import argparse
import logging

from .runner import BENCHMARKS, HyperSegPredictor, format_table, per_sample_results_path, run_benchmark
from .video_benchmarks import VIDEO_BENCHMARKS


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hyperseg.evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--benchmark", required=True, choices=sorted({**BENCHMARKS, **VIDEO_BENCHMARKS}))
    parser.add_argument("--split", default=None, help="benchmark split (default: the benchmark's usual eval split)")
    parser.add_argument("--data-root", required=True, help="folder holding the benchmark's standard layout")
    parser.add_argument("--model", required=True, help="checkpoint folder or hub id loadable by from_pretrained")
    parser.add_argument(
        "--output", required=True, help="report JSON; per-sample results go next to it (.samples.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples (videos)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="samples per model call (default 1); video benchmarks: prompts per forward pass (default: all of a video)",
    )
    parser.add_argument(
        "--predictions-dir", default=None, help="video benchmarks: also write the predicted masks here (PNG)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--skip-missing",
        action="store_true",
        help="drop samples whose image files are missing (their number is logged)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    report = run_benchmark(
        args.benchmark,
        args.data_root,
        HyperSegPredictor(args.model, device=args.device),
        args.output,
        split=args.split,
        model_name=args.model,
        limit=args.limit,
        batch_size=args.batch_size,
        skip_missing=args.skip_missing,
        predictions_dir=args.predictions_dir,
    )
    print(format_table(report))
    print(f"report: {args.output}\nper-sample results: {per_sample_results_path(args.output)}")


if __name__ == "__main__":
    main()
