"""Referring cIoU and panoptic PQ of a model on held-out synthetic shapes scenes.

    python -m hyperseg.training.evaluate_shapes --model PATH [--num_samples 100] [--seed 1]

The scenes come from `synthetic_dataset(num_samples, seed)`; training uses seed 0 (`finetune --synthetic_seed 0`),
so the default seed 1 draws scenes the training never saw. Referring: the processor's top-1 mask per expression,
scored with `hyperseg.evaluation`'s cIoU / gIoU. Panoptic: the processor's panoptic post-processing over
`SHAPES_CLASS_NAMES` (stuff fused per class), scored with its PQ / SQ / RQ. Referring results are also broken down by
kind of expression (`by_expression`).
"""

import argparse
import json

import numpy as np
import torch
from tqdm.auto import tqdm

from ..evaluation.metrics import aggregate_referring, compute_panoptic, referring_sample_statistics
from ..modeling import HyperSegForUniversalSegmentation
from ..processing import HyperSegProcessor
from .synthetic import EXPRESSION_KINDS, SHAPES, SHAPES_CLASS_NAMES, expression_kind, synthetic_dataset

HELD_OUT_SEED = 1
SHAPES_CATEGORIES = [{"id": index, "isthing": int(name in SHAPES)} for index, name in enumerate(SHAPES_CLASS_NAMES)]
STUFF_LABEL_IDS = {category["id"] for category in SHAPES_CATEGORIES if not category["isthing"]}


def _batches(dataset, batch_size: int, description: str):
    """Lists of at most `batch_size` rows, as dicts of column -> list."""
    for start in tqdm(range(0, len(dataset), batch_size), desc=description):
        yield dataset[start : start + batch_size]


@torch.no_grad()
def evaluate_referring(
    model, processor, num_samples: int = 100, seed: int = HELD_OUT_SEED, batch_size: int = 8
) -> dict:
    """
    cIoU, gIoU and precision@k of the top-1 referring mask on `num_samples` held-out scenes; `by_expression` holds the
    same metrics (and `samples`) per kind of expression (`EXPRESSION_KINDS`: shape, colour and shape, relation,
    position).
    """
    dataset = synthetic_dataset(num_samples, seed=seed, tasks=("referring",))
    records, kinds = [], []  # per sample: pixel counts, kind of expression
    for batch in _batches(dataset, batch_size, "referring"):
        inputs = processor(images=batch["image"], text=batch["text"], task="referring", return_tensors="pt")
        outputs = model(**inputs.to(model.device))
        sizes = [image.size[::-1] for image in batch["image"]]
        segmented = processor.post_process_referring_segmentation(outputs, target_sizes=sizes)
        masks = [result["mask"] for result in segmented]
        for mask, segmentation, ids, text in zip(masks, batch["segmentation"], batch["target_ids"], batch["text"]):
            reference = np.isin(np.asarray(segmentation), ids)
            records.append(referring_sample_statistics(mask.cpu().numpy(), reference, index=len(records)))
            kinds.append(expression_kind(text))
    results = aggregate_referring(records)
    results["by_expression"] = {}
    for kind in EXPRESSION_KINDS:
        members = [record for record, sample_kind in zip(records, kinds) if sample_kind == kind]
        if members:
            results["by_expression"][kind] = {"samples": len(members), **aggregate_referring(members)}
    return results


@torch.no_grad()
def evaluate_panoptic(model, processor, num_samples: int = 100, seed: int = HELD_OUT_SEED, batch_size: int = 8) -> dict:
    """PQ, SQ and RQ (overall, things, stuff) of panoptic segmentation on `num_samples` held-out scenes."""
    dataset = synthetic_dataset(num_samples, seed=seed, tasks=("panoptic",))
    predictions, references = [], []
    for batch in _batches(dataset, batch_size, "panoptic"):
        inputs = processor(
            images=batch["image"], task="panoptic", class_names=list(SHAPES_CLASS_NAMES), return_tensors="pt"
        )
        outputs = model(**inputs.to(model.device))
        sizes = [image.size[::-1] for image in batch["image"]]
        results = processor.post_process_panoptic_segmentation(
            outputs, label_ids_to_fuse=STUFF_LABEL_IDS, target_sizes=sizes
        )
        for result in results:
            segments = [{"id": s["id"], "category_id": s["label_id"]} for s in result["segments_info"]]
            predictions.append((result["segmentation"].cpu().numpy(), segments))
        for segmentation, segments in zip(batch["segmentation"], batch["segments"]):
            reference_segments = [{"id": s["id"], "category_id": s["category_id"], "iscrowd": 0} for s in segments]
            references.append((np.asarray(segmentation).astype(np.int64), reference_segments))
    return compute_panoptic(predictions, references, categories=SHAPES_CATEGORIES)


def evaluate_shapes(model, processor, num_samples: int = 100, seed: int = HELD_OUT_SEED, batch_size: int = 8) -> dict:
    """`{"referring": {...}, "panoptic": {...}}` on held-out scenes (see the module docstring)."""
    model.eval()
    return {
        "referring": evaluate_referring(model, processor, num_samples, seed, batch_size),
        "panoptic": evaluate_panoptic(model, processor, num_samples, seed, batch_size),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder or hub id")
    parser.add_argument("--num_samples", type=int, default=100, help="held-out scenes per task")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="seed of the held-out scenes (training: 0)")
    parser.add_argument("--batch_size", type=int, default=8)
    args = parser.parse_args(argv)
    processor = HyperSegProcessor.from_pretrained(args.model)
    model = HyperSegForUniversalSegmentation.from_pretrained(args.model)
    results = evaluate_shapes(model, processor, args.num_samples, args.seed, args.batch_size)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
