"""
Inference benchmark of HyperSeg / InstructSeg: latency per 640x480 image, stage split, peak memory, several prompts on
one image and video frames per second, each figure next to a reference configuration measured in the same process.

    python benchmarks/bench_inference.py --scale real --dtype bfloat16 --only referring prompts --repeats 2
    python benchmarks/bench_inference.py --scale tiny --only video --video-frames 300

The model has random weights (the released ones are not needed for timing): it is built on the meta device and
materialised once, directly in the requested dtype, so no second copy of the weights ever exists. Text goes through
the stand-in tokenizer of the shipped tiny checkpoint (a few tokens off Phi-2's, about 1 % of the real-size sequence).

Optimised = the library defaults: SDPA attention, the image encoded once and the shared prompt prefix run once for
several prompts on one image, post-processing of only what a rule needs. Reference = eager attention, no sharing
(one call per prompt), every query brought to full resolution the original way (bilinear upsampling to the padded
1024x1024 input, crop, bilinear resize). Preprocessing is done once, outside the timer.
"""

import argparse
import ctypes
import ctypes.util
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from transformers import AutoTokenizer

from hyperseg.modeling import HyperSegConfig, HyperSegForUniversalSegmentation, int8_language_model_config
from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor, select_reference_frames
from hyperseg.processing.image_processing_hyperseg import get_resized_size
from hyperseg.processing.post_processing_hyperseg import panoptic_inference, referring_inference


TINY_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "hyperseg-tiny-random"
IMAGE_SIZE = (480, 640)  # (height, width)
EXPRESSIONS = [
    "the red square on the left",
    "the blue circle",
    "the green triangle at the bottom",
    "the yellow bar at the top",
    "the shape in the middle",
    "the largest object",
    "the smallest object on the right",
    "the background",
]
CLASS_NAMES = [  # Pascal VOC
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "dining table", "dog",
    "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train", "tv monitor",
]
STAGES = {  # stage name -> attribute of the model
    "siglip": "vision_tower",
    "swin": "backbone",
    "llm": "language_model",
    "pixel_decoder": "pixel_decoder",
    "mask_decoder": "mask_decoder",
}
INSTRUCTSEG_TINY = {  # InstructSeg's parts at the sizes of the tiny checkpoint
    "perceiver_type": "object_aware",
    "perceiver_head_dim": 16,
    "text_fusion": "vmtf",
    "text_fusion_hidden_size": 64,
    "text_fusion_num_heads": 2,
    "text_fusion_head_dim": 16,
    "prompt_heads": ["seg"],
}


# Model and inputs


def build_model(config: HyperSegConfig, dtype: torch.dtype) -> HyperSegForUniversalSegmentation:
    """Random weights, created once in `dtype`: built on the meta device, then materialised and initialised."""
    with torch.device("meta"):
        model = HyperSegForUniversalSegmentation._from_config(config, dtype=dtype)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.initialize_weights()
    return model.eval()


def build(scale: str, variant: str, dtype: torch.dtype) -> tuple[HyperSegForUniversalSegmentation, HyperSegProcessor]:
    tokenizer = AutoTokenizer.from_pretrained(TINY_CHECKPOINT)
    style = "instructseg" if variant == "instructseg" else "hyperseg"
    if scale == "tiny":
        config = HyperSegConfig.from_pretrained(TINY_CHECKPOINT)
        if variant == "instructseg":
            config = HyperSegConfig(**{**config.to_dict(), **INSTRUCTSEG_TINY})
        image_processor = HyperSegImageProcessor.from_pretrained(TINY_CHECKPOINT)
    else:
        # the stand-in tokenizer's placeholder ids replace Phi-2's; they lie inside the 51200-row embedding
        placeholders = {"image": "<image>", "temporal": "<temporal>", "query": "<seg>", "region": "<region>"}
        placeholder_ids = {
            f"{name}_token_id": tokenizer.convert_tokens_to_ids(token) for name, token in placeholders.items()
        }
        factory = HyperSegConfig.instructseg_3b if variant == "instructseg" else HyperSegConfig.hyperseg_3b
        config = factory(seg_token_id=tokenizer.encode("[SEG]", add_special_tokens=False)[0], **placeholder_ids)
        image_processor = HyperSegImageProcessor()
    processor = HyperSegProcessor.from_model_config(config, tokenizer, image_processor, prompt_style=style)
    return build_model(config, dtype), processor


def synthetic_frame(index: int = 0) -> Image.Image:
    """A 640x480 picture of a few coloured shapes; `index` moves them, as in a video."""
    height, width = IMAGE_SIZE
    image = Image.new("RGB", (width, height), (90, 140, 90))
    draw = ImageDraw.Draw(image)
    shift = 3 * index
    draw.rectangle([40 + shift, 160, 200 + shift, 320], fill=(220, 30, 30))
    draw.ellipse([380 - shift, 60, 560 - shift, 240], fill=(30, 60, 220))
    draw.polygon([(300, 460), (420 + shift, 300), (540, 460)], fill=(40, 200, 60))
    draw.rectangle([0, 0, width, 30], fill=(230, 220, 40))
    return image


# Measurement


def peak_rss_gib() -> float:
    """Peak resident set size of this process since start or the last `reset_peak_rss` (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("VmHWM not found in /proc/self/status")


def reset_peak_rss():
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM <- current RSS


def load_average() -> float:
    return os.getloadavg()[0]


class StageTimer:
    """Wall time spent in each stage of the model (summed over calls: the LLM runs twice with a shared prefix)."""

    def __init__(self, model: HyperSegForUniversalSegmentation):
        self.seconds = {}
        self._starts = {}
        self._handles = []
        for stage, attribute in STAGES.items():
            module = getattr(model, attribute)
            self._handles.append(module.register_forward_pre_hook(self._start(stage)))
            self._handles.append(module.register_forward_hook(self._stop(stage)))

    def _start(self, stage):
        def hook(module, args):
            self._starts[stage] = time.perf_counter()

        return hook

    def _stop(self, stage):
        def hook(module, args, output):
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - self._starts.pop(stage)

        return hook

    @contextmanager
    def stage(self, stage: str):
        self._start(stage)(None, None)
        yield
        self._stop(stage)(None, None, None)

    def remove(self):
        for handle in self._handles:
            handle.remove()


def measure(run: Callable[[StageTimer], None], timer: StageTimer, repeats: int, warmup: int) -> dict:
    """Median total and per-stage seconds over `repeats` timed calls of `run`, after `warmup` untimed ones."""
    for _ in range(warmup):
        run(timer)
    totals, stage_runs = [], []
    reset_peak_rss()
    load_before = load_average()
    for _ in range(repeats):
        timer.seconds = {}
        start = time.perf_counter()
        run(timer)
        totals.append(time.perf_counter() - start)
        stage_runs.append(dict(timer.seconds))
    stages = {stage: statistics.median(run.get(stage, 0.0) for run in stage_runs) for stage in stage_runs[0]}
    return {
        "seconds": statistics.median(totals),
        "runs": totals,
        "stages": stages,
        "peak_rss_gib": peak_rss_gib(),
        "load_average": [load_before, load_average()],
    }


# Scenarios: each returns a function running one model call and its post-processing


def original_raw_size_logits(mask_logits: torch.Tensor, processor: HyperSegProcessor) -> torch.Tensor:
    """The original's resizing of every query: upsample to the padded input, crop, resize to the raw size."""
    backbone_size = processor.image_processor.backbone_size
    mask_logits = F.interpolate(mask_logits[None].float(), size=(backbone_size, backbone_size), mode="bilinear")
    valid_height, valid_width = get_resized_size(*IMAGE_SIZE, backbone_size)
    return F.interpolate(mask_logits[..., :valid_height, :valid_width], size=IMAGE_SIZE, mode="bilinear")[0]


def post_process(outputs, processor: HyperSegProcessor, task: str, reference: bool):
    sizes = [IMAGE_SIZE] * outputs.masks_queries_logits.shape[0]
    if not reference:
        if task == "panoptic":
            return processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes)
        return processor.post_process_referring_segmentation(outputs, target_sizes=sizes)
    results = []
    for index, mask_logits in enumerate(outputs.masks_queries_logits):
        full_size = original_raw_size_logits(mask_logits, processor)
        if task == "panoptic":
            results.append(panoptic_inference(outputs.class_queries_logits[index].float(), full_size))
        else:
            scores = referring_inference(outputs.seg_queries_logits[index].float(), full_size)
            results.append(full_size[scores.argmax()] > 0)
    return results


def image_run(model, processor, task: str, batch_size: int, reference: bool) -> Callable[[StageTimer], None]:
    """`batch_size` copies of the image, one prompt each (referring expression or class names)."""
    prompt = {"text": [EXPRESSIONS[0]] * batch_size} if task == "referring" else {"class_names": CLASS_NAMES}
    inputs = processor(images=[synthetic_frame()] * batch_size, task=task, **prompt)

    def run(timer: StageTimer):
        with torch.inference_mode():
            outputs = model(**inputs)
            with timer.stage("post_processing"):
                post_process(outputs, processor, task, reference)

    return run


def prompts_run(model, processor, num_prompts: int, reference: bool) -> Callable[[StageTimer], None]:
    """`num_prompts` referring expressions on one image: one call (optimised) or one call per expression (reference)."""
    texts = (EXPRESSIONS * num_prompts)[:num_prompts]
    image = synthetic_frame()
    calls = [processor(images=image, text=text, task="referring") for text in texts] if reference else [
        processor(images=image, text=texts, task="referring")
    ]

    def run(timer: StageTimer):
        with torch.inference_mode():
            for inputs in calls:
                outputs = model(**inputs)
                with timer.stage("post_processing"):
                    post_process(outputs, processor, "referring", reference)

    return run


def video_seconds_per_frame(model, processor, num_frames: int, reference: bool, timer: StageTimer) -> list[float]:
    """Seconds per frame over a `num_frames` clip, one referring expression followed through it."""
    frames = [synthetic_frame(index) for index in range(num_frames)]
    instructseg = model.config.perceiver_type == "object_aware"
    latents, seconds = None, []
    for index, frame in enumerate(frames):
        if instructseg:
            references = [frames[i] for i in select_reference_frames(index, num_frames, num_reference_frames=4)]
            inputs = processor(images=frame, reference_frames=references, text=EXPRESSIONS[0], task="referring_video")
        else:
            inputs = processor(images=frame, text=EXPRESSIONS[0], task="referring_video")
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model(**inputs, temporal_latents=latents)
            with timer.stage("post_processing"):
                post_process(outputs, processor, "referring", reference)
        seconds.append(time.perf_counter() - start)
        latents = outputs.temporal_latents
    return seconds


def video_summary(seconds: list[float]) -> dict:
    """Frames per second, and the cost per frame early (frames 10-19) and late (the last 10) in the clip."""
    early = seconds[10:20] if len(seconds) >= 30 else seconds[1 : len(seconds) // 2 + 1]
    late = seconds[-10:] if len(seconds) >= 30 else seconds[len(seconds) // 2 + 1 :]
    return {
        "frames": len(seconds),
        "frames_per_second": (len(seconds) - 1) / sum(seconds[1:]),
        "early_seconds_per_frame": statistics.mean(early),
        "late_seconds_per_frame": statistics.mean(late),
        "late_over_early": statistics.mean(late) / statistics.mean(early),
        "seconds_per_frame": seconds,
    }


# Driver


def with_attention(model, implementation: str):
    model.set_attn_implementation(implementation)
    return model


GLIBC_M_TRIM_THRESHOLD, GLIBC_M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)


def retain_freed_memory() -> None:
    """
    glibc: keep freed memory in the process for the next allocation instead of giving it back to the kernel (no
    `mmap` per large block, no heap trimming below 2 GiB), the in-process form of `MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=...`. Activations of hundreds of MiB (a batch of 8 at real size) are otherwise mapped,
    page-faulted and zeroed anew at every allocation.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not (libc.mallopt(GLIBC_M_MMAP_MAX, 0) and libc.mallopt(GLIBC_M_TRIM_THRESHOLD, 2**31 - 1)):
        raise RuntimeError("mallopt refused the settings: --retain-freed-memory needs glibc's malloc")


def run_benchmark(args) -> dict:
    torch.set_num_threads(args.threads)
    if args.retain_freed_memory:
        retain_freed_memory()
    results = {"conditions": conditions(args), "runs": []}
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        reset_peak_rss()
        start = time.perf_counter()
        model, processor = build(args.scale, args.model, dtype)
        if args.llm_int8:  # what `int8_language_model_config` does while loading, here on the random weights
            from torchao.quantization import quantize_

            quantize_(model.language_model, int8_language_model_config(model.config).quant_type)
            dtype_name += "+llm-int8"
        build_record = {"seconds": time.perf_counter() - start, "peak_rss_gib": peak_rss_gib()}
        print(f"[{args.scale} {args.model} {dtype_name}] built in {build_record['seconds']:.1f} s, "
              f"peak RSS {build_record['peak_rss_gib']:.2f} GiB, {model.num_parameters():,} parameters", flush=True)
        timer = StageTimer(model)
        records = {"dtype": dtype_name, "build": build_record, "figures": []}
        # the first call of a process is slower (memory first touched, oneDNN primitives created): not timed
        image_run(model, processor, "referring", 1, reference=False)(timer)
        for name, make_run, repeats in scenarios(args, model, processor):
            figure = {"name": name}
            for configuration in ("optimised", "reference"):
                if configuration == "reference" and args.skip_reference:
                    continue
                reference = configuration == "reference"
                with_attention(model, "eager" if reference else "sdpa")
                figure[configuration] = measure(make_run(reference), timer, repeats, args.warmup)
            with_attention(model, "sdpa")
            report(figure)
            records["figures"].append(figure)
        if "video" in args.only:
            records["video"] = {}
            for configuration in ("optimised", "reference"):
                if configuration == "reference" and args.skip_reference:
                    continue
                with_attention(model, "eager" if configuration == "reference" else "sdpa")
                reset_peak_rss()
                reference = configuration == "reference"
                seconds = video_seconds_per_frame(model, processor, args.video_frames, reference, timer)
                records["video"][configuration] = {**video_summary(seconds), "peak_rss_gib": peak_rss_gib()}
            with_attention(model, "sdpa")
            report_video(records["video"])
        records["process_peak_rss_gib"] = process_peak_rss_gib()
        results["runs"].append(records)
        timer.remove()
        del model
    return results


def scenarios(args, model, processor):
    """(name, function reference -> run, repeats) for every scenario asked for."""
    for task in ("referring", "panoptic"):
        if task in args.only and (task == "referring" or "class" in model.config.prompt_heads):
            for batch_size in args.batch_sizes:
                yield (
                    f"{task} batch {batch_size}",
                    lambda reference, task=task, batch_size=batch_size: image_run(
                        model, processor, task, batch_size, reference
                    ),
                    args.repeats,
                )
    if "prompts" in args.only:  # compare with "referring batch 1", the same call with one expression
        yield (
            f"{args.num_prompts} expressions on one image",
            lambda reference: prompts_run(model, processor, args.num_prompts, reference),
            args.repeats,
        )


def process_peak_rss_gib() -> float:
    """Peak RSS of the whole process so far, model build included (`ru_maxrss`, which `reset_peak_rss` leaves)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def conditions(args) -> dict:
    return {
        "arguments": vars(args),
        "host": platform.node(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def report(figure: dict):
    optimised = figure["optimised"]
    line = f"  {figure['name']:<32} {optimised['seconds']:8.2f} s   peak RSS {optimised['peak_rss_gib']:5.2f} GiB"
    if "reference" in figure:
        reference = figure["reference"]
        line += f"   reference {reference['seconds']:8.2f} s ({optimised['seconds'] / reference['seconds']:.2f}x of it)"
    line += f"   load {optimised['load_average'][0]:.1f}"
    print(line)
    stages = optimised["stages"]
    other = optimised["seconds"] - sum(stages.values())
    split = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in stages.items())
    print(f"      stages (s): {split}, other {other:.2f}", flush=True)


def report_video(video: dict):
    for configuration, summary in video.items():
        print(
            f"  video {configuration:<10} {summary['frames_per_second']:7.3f} frames/s over {summary['frames']} frames;"
            f" s/frame early {summary['early_seconds_per_frame']:.3f}, late {summary['late_seconds_per_frame']:.3f}"
            f" (x{summary['late_over_early']:.2f}); peak RSS {summary['peak_rss_gib']:.2f} GiB",
            flush=True,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=("tiny", "real"), default="tiny")
    parser.add_argument("--model", choices=("hyperseg", "instructseg"), default="hyperseg")
    parser.add_argument("--dtype", nargs="+", choices=("float32", "bfloat16"), default=["float32", "bfloat16"])
    parser.add_argument(
        "--only", nargs="+", choices=("referring", "panoptic", "prompts", "video"),
        default=["referring", "panoptic", "prompts", "video"],
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--num-prompts", type=int, default=8, help="expressions on one image (compared with 1)")
    parser.add_argument("--video-frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=0, help="untimed calls before each scenario (after one for the whole process)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-reference", action="store_true", help="time the optimised configuration only")
    parser.add_argument("--llm-int8", action="store_true", help="int8 weights in the LLM (torchao, see the README)")
    parser.add_argument(
        "--retain-freed-memory",
        action="store_true",
        help="glibc allocator: reuse freed memory instead of returning it to the kernel (see retain_freed_memory)",
    )
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = run_benchmark(args)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2, default=str))
        print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
