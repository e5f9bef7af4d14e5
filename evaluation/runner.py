"""Evaluation runner: a model on a benchmark split, resumable per-sample results, and a JSON report.

The run is split in three parts so that everything but the model call is testable without a model:

1. `BENCHMARKS` reads the split (`hyperseg.evaluation.readers`) and turns each row into a reference;
2. a predictor (`HyperSegPredictor`, the only code that touches the model) turns a batch of rows into predictions;
3. per-sample records (`*_sample_statistics`) are appended to a JSONL file next to the report, and the report is
   computed from that file alone by `aggregate_records`, so its numbers recompute exactly from the per-sample results
   and a killed run continues where it stopped.
"""

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .masks import decode_rle
from .metrics import (
    aggregate_generalized_referring,
    aggregate_panoptic,
    aggregate_referring,
    aggregate_semantic,
    panoptic_sample_statistics,
    referring_sample_statistics,
    semantic_sample_statistics,
)
from .metrics.panoptic import PANOPTIC_DEFINITIONS, categories_by_id
from .metrics.referring import GENERALIZED_REFERRING_DEFINITIONS, REFERRING_DEFINITIONS
from .metrics.semantic import SEMANTIC_DEFINITIONS
from .readers import (
    coco_panoptic_categories,
    panoptic_id_map,
    read_coco_panoptic,
    read_grefcoco,
    read_reasonseg,
    read_refcoco,
    read_semantic_segmentation,
    semantic_class_names,
)
from .readers.semantic import DEFAULT_SEMANTIC_SPLIT, IGNORE_INDEX, SEMANTIC_BENCHMARKS


def _no_context(data_root, split) -> dict:
    return {}


@dataclass(frozen=True)
class Benchmark:
    """How to read a benchmark, which model task it needs and which metric scores it.

    Attributes:
        metric: "referring", "generalized_referring", "semantic" or "panoptic".
        task: the processor task ("referring", "reasoning", "semantic", "panoptic").
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
        read=lambda data_root, split, skip_missing: read_coco_panoptic(data_root, split, skip_missing),
        context=_panoptic_context,
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
}


def reference_of(metric: str, row: dict):
    """Ground truth of a reader row, in the form the metric's `*_sample_statistics` takes."""
    if metric in ("referring", "generalized_referring"):
        return decode_rle(row["mask_rle"])
    if metric == "semantic":
        return np.asarray(row["label"])
    if metric == "panoptic":
        return panoptic_id_map(row["panoptic"]), row["segments_info"]
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
    raise ValueError(f"unknown metric {metric!r}")


def aggregate_records(metric: str, records: list, context: dict) -> dict:
    """Dataset metrics from the per-sample records alone (a pure function of its arguments)."""
    statistics = [record["statistics"] for record in records]
    if metric == "referring":
        return aggregate_referring(statistics)
    if metric == "generalized_referring":
        return aggregate_generalized_referring(statistics)
    if metric == "semantic":
        return aggregate_semantic(statistics, context["num_labels"])
    if metric == "panoptic":
        return aggregate_panoptic(statistics, categories_by_id(context["categories"]))
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
        for record in records:
            file.write(json.dumps(record) + "\n")


def run_benchmark(
    benchmark: str,
    data_root,
    predictor: Callable,
    output,
    *,
    split: str | None = None,
    model_name: str = "",
    limit: int | None = None,
    batch_size: int = 1,
    skip_missing: bool = False,
    progress: bool = True,
) -> dict:
    """Evaluates `predictor` on a benchmark split and writes the report (and its per-sample JSONL) to `output`.

    Args:
        benchmark: a key of `BENCHMARKS`.
        data_root: the benchmark's data folder.
        predictor: `(task, rows, context) -> list of predictions`, one per row (see `HyperSegPredictor`).
        output: path of the JSON report; the per-sample results go to `per_sample_results_path(output)`.
        split: defaults to the benchmark's default split.
        model_name: recorded in the report (and used to refuse resuming another model's results).
        limit: evaluate only the first `limit` samples.
        batch_size: rows per predictor call.
        skip_missing: drop samples whose files are missing (the reader logs how many) instead of failing.
        progress: show a tqdm progress bar.

    Returns:
        The report dict.
    """
    spec = BENCHMARKS[benchmark]
    split = split or spec.default_split
    dataset = spec.read(data_root, split, skip_missing)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    context = spec.context(data_root, split)
    header = {"benchmark": benchmark, "split": split, "model": model_name, "limit": limit}
    results_path = per_sample_results_path(output)
    results_path.parent.mkdir(parents=True, exist_ok=True)
    records = _read_records(results_path, header)[: len(dataset)]
    _write_records(results_path, header, records)  # rewrites a torn last line away

    with (
        open(results_path, "a", encoding="utf-8") as file,
        tqdm(total=len(dataset), initial=len(records), desc=f"{benchmark} {split}", disable=not progress) as bar,
    ):
        for start in range(len(records), len(dataset), batch_size):
            rows = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
            predictions = predictor(spec.task, rows, context)
            for offset, (row, prediction) in enumerate(zip(rows, predictions, strict=True)):
                index = start + offset
                statistics = sample_statistics(
                    spec.metric, prediction, reference_of(spec.metric, row), context, index=index
                )
                file.write(json.dumps({"index": index, "id": _sample_id(row), "statistics": statistics}) + "\n")
            file.flush()
            os.fsync(file.fileno())
            bar.update(len(rows))

    report = build_report(benchmark, split, model_name, _read_records(results_path, header), context, results_path)
    Path(output).write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    return report


def build_report(benchmark: str, split: str, model_name: str, records: list, context: dict, results_path) -> dict:
    """The report of a finished run: metrics from `aggregate_records`, their definitions and the run's provenance."""
    spec = BENCHMARKS[benchmark]
    metrics = aggregate_records(spec.metric, records, context)
    return {
        "benchmark": benchmark,
        "split": split,
        "model": model_name,
        "num_samples": len(records),
        "metric": spec.metric,
        "metrics": _json_safe(metrics),
        "definitions": DEFINITIONS[spec.metric],
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


def format_table(report: dict) -> str:
    """Plain-text table of a report's scalar metrics, in percent."""
    rows = [(name, value) for name, value in report["metrics"].items() if not isinstance(value, list)]
    width = max(len(name) for name, _ in rows)
    lines = [f"{report['benchmark']} {report['split']} ({report['num_samples']} samples)"]
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
        result = self.processor.post_process_panoptic_segmentation(outputs, target_sizes=target_sizes)[0]
        category_ids = [category["id"] for category in context["categories"]]
        segments = [
            {"id": segment["id"], "category_id": category_ids[segment["label_id"]]}
            for segment in result["segments_info"]
        ]
        return result["segmentation"].cpu().numpy(), segments
