"""Evaluation runner: a model on a benchmark split, resumable per-sample results, and a JSON report.

The run is split in three parts so that everything but the model call is testable without a model:

1. `BENCHMARKS` reads the split (`hyperseg.evaluation.readers`) and turns each row into a reference;
2. a predictor (`HyperSegPredictor`, the only code that touches the model) turns a batch of rows into predictions;
3. per-sample records (`*_sample_statistics`) are appended to a JSONL file next to the report, and the report is
   computed from that file alone by `aggregate_records`, so its numbers recompute exactly from the per-sample results
   and a killed run continues where it stopped.

The video benchmarks (`VIDEO_BENCHMARKS`: DAVIS-17, Ref-DAVIS-17, Ref-YouTube-VOS, ReVOS) follow the same plan with
one record per video: the predictor's `segment_video` runs `hyperseg.video.iter_segment_video` over the video with all
its prompts, and a scorer (`hyperseg.evaluation.video_benchmarks`) turns each frame into statistics as it comes.
"""

import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .masks import decode_rle
from .metrics import (
    aggregate_generalized_referring,
    aggregate_instance,
    aggregate_panoptic,
    aggregate_referring,
    aggregate_semantic,
    instance_sample_statistics,
    panoptic_sample_statistics,
    referring_sample_statistics,
    semantic_sample_statistics,
)
from .metrics.instance import INSTANCE_DEFINITIONS
from .metrics.panoptic import PANOPTIC_DEFINITIONS, categories_by_id
from .metrics.referring import GENERALIZED_REFERRING_DEFINITIONS, REFERRING_DEFINITIONS
from .metrics.semantic import SEMANTIC_DEFINITIONS
from .readers import (
    coco_instance_categories,
    coco_panoptic_categories,
    panoptic_id_map,
    read_coco_instances,
    read_coco_panoptic,
    read_grefcoco,
    read_reasonseg,
    read_refcoco,
    read_semantic_segmentation,
    semantic_class_names,
)
from .readers.semantic import DEFAULT_SEMANTIC_SPLIT, IGNORE_INDEX, SEMANTIC_BENCHMARKS
from .video_benchmarks import (
    SERVER_SCORED_DEFINITIONS,
    VIDEO_BENCHMARKS,
    VIDEO_DEFINITIONS_BY_METRIC,
    aggregate_video_records,
    video_groups,
    video_rows,
    write_submission,
)


def _no_context(data_root, split) -> dict:
    return {}


@dataclass(frozen=True)
class Benchmark:
    """How to read a benchmark, which model task it needs and which metric scores it.

    Attributes:
        metric: "referring", "generalized_referring", "semantic", "panoptic" or "instance".
        task: the processor task ("referring", "reasoning", "semantic", "panoptic", "instance").
        default_split: split used when none is given.
        read: `(data_root, split, skip_missing) -> datasets.Dataset`.
        context: `(data_root, split) -> dict` of dataset-level values the metric needs (class names, categories).
    """

    metric: str
    task: str
    default_split: str
    read: Callable
    context: Callable = _no_context


def _refer_benchmark(dataset: str) -> Benchmark:
    return Benchmark(
        metric="referring",
        task="referring",
        default_split="val",
        read=lambda data_root, split, skip_missing: read_refcoco(data_root, dataset, split, skip_missing=skip_missing),
    )


def _semantic_benchmark(name: str) -> Benchmark:
    def context(data_root, split):
        return {
            "class_names": list(semantic_class_names(name, data_root)),
            "num_labels": SEMANTIC_BENCHMARKS[name].num_labels,
        }

    return Benchmark(
        metric="semantic",
        task="semantic",
        default_split=DEFAULT_SEMANTIC_SPLIT[name],
        read=lambda data_root, split, skip_missing: read_semantic_segmentation(name, data_root, split, skip_missing),
        context=context,
    )


def _panoptic_context(data_root, split) -> dict:
    categories = coco_panoptic_categories(data_root, split)
    return {
        "categories": [{"id": c["id"], "isthing": c["isthing"]} for c in categories],
        "class_names": [c["name"] for c in categories],
    }


def _instance_context(data_root, split) -> dict:
    categories = coco_instance_categories(data_root, split)
    return {"categories": [{"id": c["id"]} for c in categories], "class_names": [c["name"] for c in categories]}


BENCHMARKS = {
    "refcoco": _refer_benchmark("refcoco"),
    "refcoco+": _refer_benchmark("refcoco+"),
    "refcocog": _refer_benchmark("refcocog"),
    "grefcoco": Benchmark(
        metric="generalized_referring",
        task="referring",
        default_split="val",
        read=lambda data_root, split, skip_missing: read_grefcoco(data_root, split, skip_missing=skip_missing),
    ),
    "reasonseg": Benchmark(
        metric="referring",
        task="reasoning",
        default_split="val",
        # ReasonSeg's samples are its image files: there is no referenced image that could be missing.
        read=lambda data_root, split, skip_missing: read_reasonseg(data_root, split),
    ),
    "coco_panoptic": Benchmark(
        metric="panoptic",
        task="panoptic",
        default_split="val",
        read=read_coco_panoptic,
        context=_panoptic_context,
    ),
    "coco_instance": Benchmark(
        metric="instance",
        task="instance",
        default_split="val",
        read=read_coco_instances,
        context=_instance_context,
    ),
    "ade20k": _semantic_benchmark("ade20k"),
    "pascal_context_59": _semantic_benchmark("pascal_context_59"),
    "pascal_voc_20": _semantic_benchmark("pascal_voc_20"),
}
DEFINITIONS = {
    "referring": REFERRING_DEFINITIONS,
    "generalized_referring": GENERALIZED_REFERRING_DEFINITIONS,
    "semantic": SEMANTIC_DEFINITIONS,
    "panoptic": PANOPTIC_DEFINITIONS,
    "instance": INSTANCE_DEFINITIONS,
    **VIDEO_DEFINITIONS_BY_METRIC,
}


def reference_of(metric: str, row: dict):
    """Ground truth of a reader row, in the form the metric's `*_sample_statistics` takes."""
    if metric in ("referring", "generalized_referring"):
        return decode_rle(row["mask_rle"])
    if metric == "semantic":
        return np.asarray(row["label"])
    if metric == "panoptic":
        return panoptic_id_map(row["panoptic"]), row["segments_info"]
    if metric == "instance":
        return [
            {"mask": decode_rle(instance["mask_rle"]), **{key: instance[key] for key in ("category_id", "iscrowd")}}
            for instance in row["instances"]
        ]
    raise ValueError(f"unknown metric {metric!r}")


def sample_statistics(metric: str, prediction, reference, context: dict, *, index: int) -> dict:
    """Per-sample record of `metric` (JSON-serialisable)."""
    if metric in ("referring", "generalized_referring"):
        return referring_sample_statistics(prediction, reference, index=index)
    if metric == "semantic":
        return semantic_sample_statistics(
            prediction, reference, num_labels=context["num_labels"], ignore_index=IGNORE_INDEX, index=index
        )
    if metric == "panoptic":
        return panoptic_sample_statistics(
            prediction, reference, categories=categories_by_id(context["categories"]), index=index
        )
    if metric == "instance":
        return instance_sample_statistics(prediction, reference, index=index)
    raise ValueError(f"unknown metric {metric!r}")


def aggregate_records(metric: str, records: list, context: dict) -> dict:
    """Dataset metrics from the per-sample records alone (a pure function of its arguments)."""
    if metric in VIDEO_DEFINITIONS_BY_METRIC:
        return {} if context.get("server_scored") else aggregate_video_records(metric, records)
    statistics = [record["statistics"] for record in records]
    if metric == "referring":
        return aggregate_referring(statistics)
    if metric == "generalized_referring":
        return aggregate_generalized_referring(statistics)
    if metric == "semantic":
        return aggregate_semantic(statistics, context["num_labels"])
    if metric == "panoptic":
        return aggregate_panoptic(statistics, categories_by_id(context["categories"]))
    if metric == "instance":
        return aggregate_instance(statistics)
    raise ValueError(f"unknown metric {metric!r}")


def per_sample_results_path(output) -> Path:
    """The JSONL file of per-sample results kept next to the report `output`."""
    output = Path(output)
    return output.with_name(output.stem + ".samples.jsonl")


def _sample_id(row: dict) -> str:
    keys = ("ref_id", "sentence_id", "image_id", "file_name")
    return "/".join(f"{key}={row[key]}" for key in keys if key in row)


def _read_records(path: Path, header: dict) -> list:
    """Records already written by an earlier run of the same evaluation; a torn last line is dropped."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return []
    if json.loads(lines[0]) != header:
        raise ValueError(
            f"{path} holds results of another evaluation ({lines[0]}); remove it or choose another --output"
        )
    records = []
    for line in lines[1:]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # the run was killed while writing this line
        if record["index"] != len(records):
            raise ValueError(f"{path}: expected the record of sample {len(records)}, found sample {record['index']}")
        records.append(record)
    return records


def _write_records(path: Path, header: dict, records: list) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(header) + "\n")
        file.writelines(json.dumps(record) + "\n" for record in records)


def _resume(output, header: dict, num_samples: int) -> tuple[Path, list]:
    """The per-sample results file of `output` and the records it already holds for this evaluation."""
    results_path = per_sample_results_path(output)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    records = _read_records(results_path, header)[:num_samples]
    _write_records(results_path, header, records)  # rewrites a torn last line away
    return results_path, records


def _append_records(file, records: list) -> None:
    """Appends records and makes them durable, so that a kill loses at most the sample in progress."""
    file.writelines(json.dumps(record) + "\n" for record in records)
    file.flush()
    os.fsync(file.fileno())


def _write_report(output, report: dict) -> dict:
    Path(output).write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    return report


def run_benchmark(
    benchmark: str,
    data_root,
    predictor: Callable,
    output,
    *,
    split: str | None = None,
    model_name: str = "",
    limit: int | None = None,
    batch_size: int | None = None,
    skip_missing: bool = False,
    progress: bool = True,
    predictions_dir=None,
) -> dict:
    """Evaluates `predictor` on a benchmark split and writes the report (and its per-sample JSONL) to `output`.

    Args:
        benchmark: a key of `BENCHMARKS` or `VIDEO_BENCHMARKS`.
        data_root: the benchmark's data folder.
        predictor: `(task, rows, context) -> list of predictions`, one per row; for a video benchmark, an object whose
            `segment_video(frames, prompts, task, max_batch_size)` yields per frame one bool mask per prompt (see
            `HyperSegPredictor`).
        output: path of the JSON report; the per-sample results go to `per_sample_results_path(output)`.
        split: defaults to the benchmark's default split.
        model_name: recorded in the report (and used to refuse resuming another model's results).
        limit: evaluate only the first `limit` samples (videos for a video benchmark).
        batch_size: rows per predictor call (default 1); for a video benchmark, prompts per forward pass (default:
            all the prompts of a video).
        skip_missing: drop samples whose files are missing (the reader logs how many) instead of failing.
        progress: show a tqdm progress bar.
        predictions_dir: video benchmarks only: also write the predicted masks there, in the benchmark's result
            layout. A split scored by a challenge server (Ref-YouTube-VOS `valid`) always writes them (by default
            next to `output`) and zips them into `submission.zip`.

    Returns:
        The report dict.
    """
    if benchmark in VIDEO_BENCHMARKS:
        return _run_video_benchmark(
            benchmark,
            data_root,
            predictor,
            output,
            split=split,
            model_name=model_name,
            limit=limit,
            max_batch_size=batch_size,
            skip_missing=skip_missing,
            progress=progress,
            predictions_dir=predictions_dir,
        )
    if predictions_dir is not None:
        raise ValueError(f"`predictions_dir` applies to the video benchmarks ({', '.join(VIDEO_BENCHMARKS)})")
    spec = BENCHMARKS[benchmark]
    split = split or spec.default_split
    dataset = spec.read(data_root, split, skip_missing)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    context = spec.context(data_root, split)
    header = {"benchmark": benchmark, "split": split, "model": model_name, "limit": limit}
    results_path, records = _resume(output, header, len(dataset))
    batch_size = batch_size or 1

    with (
        open(results_path, "a", encoding="utf-8") as file,
        tqdm(total=len(dataset), initial=len(records), desc=f"{benchmark} {split}", disable=not progress) as bar,
    ):
        for start in range(len(records), len(dataset), batch_size):
            rows = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
            predictions = predictor(spec.task, rows, context)
            batch_records = []
            for offset, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
                index = start + offset
                statistics = sample_statistics(
                    spec.metric, prediction, reference_of(spec.metric, row), context, index=index
                )
                batch_records.append({"index": index, "id": _sample_id(row), "statistics": statistics})
            _append_records(file, batch_records)
            bar.update(len(rows))

    report = build_report(benchmark, split, model_name, _read_records(results_path, header), context, results_path)
    return _write_report(output, report)


def _run_video_benchmark(
    benchmark: str,
    data_root,
    predictor,
    output,
    *,
    split: str | None,
    model_name: str,
    limit: int | None,
    max_batch_size: int | None,
    skip_missing: bool,
    progress: bool,
    predictions_dir,
) -> dict:
    """`run_benchmark` for `VIDEO_BENCHMARKS`: one record per video, the frames scored as they are segmented."""
    spec = VIDEO_BENCHMARKS[benchmark]
    split = split or spec.default_split
    dataset = spec.read(data_root, split, skip_missing)
    videos = video_groups(dataset)[:limit]
    # a Ref-YouTube-VOS split without annotations is scored by the challenge server: write its submission
    first_row = video_rows(dataset, range(1))
    server_scored = spec.metric == "referring_video" and bool(first_row) and not first_row[0]["annotations"]
    context = {"server_scored": server_scored}
    if server_scored and predictions_dir is None:
        predictions_dir = Path(output).with_name(Path(output).stem + ".predictions")
    header = {
        "benchmark": benchmark,
        "split": split,
        "model": model_name,
        "limit": limit,
        "predictions_dir": None if predictions_dir is None else str(predictions_dir),
    }
    results_path, records = _resume(output, header, len(videos))
    frame_names = dataset["frame_names"]
    frame_counts = [len(frame_names[rows.start]) for _, rows in videos]

    with (
        open(results_path, "a", encoding="utf-8") as file,
        tqdm(
            total=sum(frame_counts),
            initial=sum(frame_counts[: len(records)]),
            unit="frame",
            desc=f"{benchmark} {split}",
            disable=not progress,
        ) as bar,
    ):
        for index in range(len(records), len(videos)):
            video, rows = videos[index]
            bar.set_postfix_str(f"video {index + 1}/{len(videos)}: {video}")
            try:
                scorer = spec.scorer(video_rows(dataset, rows), predictions_dir)
                predictions = predictor.segment_video(scorer.frames, scorer.prompts, spec.task, max_batch_size)
                for position, masks in enumerate(predictions):
                    scorer.add_frame(position, masks)
                    bar.update()
                statistics = scorer.statistics()
            except ValueError as error:
                raise ValueError(f"{benchmark} {split}, video {video}: {error}") from error
            _append_records(file, [{"index": index, "id": f"video={video}", "statistics": statistics}])

    report = build_report(benchmark, split, model_name, _read_records(results_path, header), context, results_path)
    if predictions_dir is not None:
        report["predictions_dir"] = str(predictions_dir)
    if server_scored:
        report["submission"] = str(write_submission(predictions_dir))
    return _write_report(output, report)


def build_report(benchmark: str, split: str, model_name: str, records: list, context: dict, results_path) -> dict:
    """The report of a finished run: metrics from `aggregate_records`, their definitions and the run's provenance."""
    spec = VIDEO_BENCHMARKS[benchmark] if benchmark in VIDEO_BENCHMARKS else BENCHMARKS[benchmark]
    metrics = aggregate_records(spec.metric, records, context)
    return {
        "benchmark": benchmark,
        "split": split,
        "model": model_name,
        "num_samples": len(records),
        "metric": spec.metric,
        "metrics": _json_safe(metrics),
        "definitions": SERVER_SCORED_DEFINITIONS if context.get("server_scored") else DEFINITIONS[spec.metric],
        "per_sample_results": str(results_path),
        "context": {key: value for key, value in context.items() if key != "class_names"},
    }


def _json_safe(value):
    """Strict-JSON form of a metric dict: NaN (undefined) becomes null."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _scalar_rows(metrics: dict, prefix: str = "") -> Iterator[tuple[str, float | None]]:
    """`(name, value)` of every scalar of a metric dict; nested dicts (ReVOS splits) give `"<split> <name>"`."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            yield from _scalar_rows(value, f"{prefix}{name} ")
        elif not isinstance(value, list):
            yield f"{prefix}{name}", value


def format_table(report: dict) -> str:
    """Plain-text table of a report's scalar metrics, in percent."""
    unit = "videos" if report["benchmark"] in VIDEO_BENCHMARKS else "samples"
    lines = [f"{report['benchmark']} {report['split']} ({report['num_samples']} {unit})"]
    if "submission" in report:
        lines.append(f"  scored by the challenge server: upload {report['submission']}")
    rows = list(_scalar_rows(report["metrics"]))
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        lines.append(f"  {name:<{width}}  {'n/a' if value is None else f'{100 * value:.2f}'}")
    return "\n".join(lines)


class HyperSegPredictor:
    """Runs a HyperSeg checkpoint through the public processor / model API; the only model-dependent code here."""

    def __init__(self, model_path: str, device: str | None = None):
        import torch
        from hyperseg.modeling import HyperSegForUniversalSegmentation
        from hyperseg.processing import HyperSegProcessor

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.processor = HyperSegProcessor.from_pretrained(model_path)
        self.model = HyperSegForUniversalSegmentation.from_pretrained(model_path).to(self.device).eval()

    def segment_video(self, frames: list, prompts: list, task: str, max_batch_size: int | None = None) -> Iterator:
        """
        Per frame of a video, one `(h, w)` bool mask per prompt, from `hyperseg.video.iter_segment_video` (the
        function behind `python -m hyperseg.video`): all prompts followed in one pass over the frames, at most
        `max_batch_size` per forward pass. `prompts` are texts, or visual prompts for `task="interactive"`.
        """
        from hyperseg.video import iter_segment_video

        prompt_kwargs = {"visual_prompts": prompts} if task == "interactive" else {"text": prompts}
        results = iter_segment_video(
            self.model,
            self.processor,
            frames,
            task=task,
            max_batch_size=max_batch_size,
            progress=False,
            **prompt_kwargs,
        )
        for result in results:
            yield result.masks

    def __call__(self, task: str, rows: list, context: dict) -> list:
        import torch

        with torch.inference_mode():
            if task in ("referring", "reasoning"):
                return self._predict_referring(task, rows)
            return [self._predict_generic(task, row, context) for row in rows]

    def _predict_referring(self, task: str, rows: list) -> list:
        images = [row["image"].convert("RGB") for row in rows]
        inputs = self.processor(images=images, text=[row["sentence"] for row in rows], task=task, return_tensors="pt")
        outputs = self.model(**inputs.to(self.device))
        results = self.processor.post_process_referring_segmentation(
            outputs, target_sizes=[(image.height, image.width) for image in images]
        )
        return [result["mask"].cpu().numpy() for result in results]

    def _predict_generic(self, task: str, row: dict, context: dict):
        image = row["image"].convert("RGB")
        inputs = self.processor(images=image, task=task, class_names=context["class_names"], return_tensors="pt")
        outputs = self.model(**inputs.to(self.device))
        target_sizes = [(image.height, image.width)]
        if task == "semantic":
            return (
                self.processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)[0].cpu().numpy()
            )
        category_ids = [category["id"] for category in context["categories"]]
        if task == "instance":  # every kept query's own mask (instances may overlap), as COCO's mask AP takes them
            result = self.processor.post_process_instance_segmentation(
                outputs, target_sizes=target_sizes, return_binary_maps=True
            )[0]
            return [
                {
                    "mask": mask.cpu().numpy(),
                    "score": float(segment["score"]),
                    "category_id": category_ids[segment["label_id"]],
                }
                for mask, segment in zip(result["segmentation"], result["segments_info"])
            ]
        result = self.processor.post_process_panoptic_segmentation(outputs, target_sizes=target_sizes)[0]
        segments = [
            {"id": segment["id"], "category_id": category_ids[segment["label_id"]]}
            for segment in result["segments_info"]
        ]
        return result["segmentation"].cpu().numpy(), segments
