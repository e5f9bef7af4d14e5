"""
Peak memory of loading a real-size HyperSeg folder with `from_pretrained(..., dtype=...)`, in a fresh process.

    python benchmarks/bench_loading.py --folder /tmp/hyperseg-3b-bf16 --save-dtype bfloat16 --load-dtype bfloat16

Without a model in `--folder`, a real-size HyperSeg-3B with random weights is first built in `--save-dtype` (on the
meta device, materialised once) and saved there, by another process. The load then runs in a process of its own, so
its peak RSS (`ru_maxrss`) is the loading's alone, then again once every weight has been read (weights that stay
memory-mapped from the safetensors file only become resident when read).
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch


def save(folder: Path, dtype: torch.dtype):
    from bench_inference import build

    model, processor = build("real", "hyperseg", dtype)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def load(folder: Path, dtype: torch.dtype) -> dict:
    from hyperseg.modeling import HyperSegForUniversalSegmentation

    start = time.perf_counter()
    model = HyperSegForUniversalSegmentation.from_pretrained(folder, dtype=dtype)
    seconds = time.perf_counter() - start
    peak_after_load = peak_rss_gib()
    # weights that stay memory-mapped from the file become resident only when read: read every one of them
    for parameter in model.parameters():
        parameter.sum(dtype=torch.float32)
    return {
        "seconds": seconds,
        "peak_rss_gib": peak_after_load,
        "peak_rss_after_reading_every_weight_gib": peak_rss_gib(),
        "parameter_gib": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30,
        "parameter_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
    }


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--save-dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--load-dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--step", choices=("all", "save", "load"), default="all", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step == "save":
        return save(args.folder, getattr(torch, args.save_dtype))
    if args.step == "load":
        return print(json.dumps(load(args.folder, getattr(torch, args.load_dtype))))
    command = [sys.executable, __file__, "--folder", str(args.folder), "--save-dtype", args.save_dtype]
    if not (args.folder / "config.json").exists():
        subprocess.run([*command, "--step", "save"], check=True)
    folder_gib = sum(path.stat().st_size for path in args.folder.glob("*.safetensors")) / 2**30
    output = subprocess.run(
        [*command, "--load-dtype", args.load_dtype, "--step", "load"], check=True, capture_output=True, text=True
    ).stdout
    result = {"folder_gib": folder_gib, "save_dtype": args.save_dtype, "load_dtype": args.load_dtype}
    result.update(json.loads(output.strip().splitlines()[-1]))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
