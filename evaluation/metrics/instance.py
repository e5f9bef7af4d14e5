"""Instance segmentation AP through pycocotools' `COCOeval` (mask IoU on RLE), for images and for videos.

Nothing of the AP computation is re-implemented: the masks are RLE-encoded, put into in-memory `COCO` objects and
evaluated by `COCOeval(iouType="segm")`.

Video instances (YouTube-VIS) are `(frames, height, width)` masks. Their IoU is the YouTube-VIS one,
sum over frames of intersections / sum over frames of unions, obtained exactly by stacking the frames into one
`(frames * height, width)` RLE. Their area, used for the small / medium / large ranges, is the mean area over the
frames where the instance is visible (`avg_area` of the YouTube-VIS API). An image is a one-frame video, for which
both rules reduce to COCO's.
"""

import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..masks import as_binary_mask, encode_rle, to_numpy

INSTANCE_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
INSTANCE_DEFINITIONS = {
    "AP": "pycocotools COCOeval (iouType 'segm', maxDets 100) mean AP over IoU 0.50:0.05:0.95, NaN where COCOeval "
    "reports -1 (no reference in the range)",
    "AP50 / AP75": "the same at IoU 0.50 / 0.75",
    "APs / APm / APl": "the same for areas < 32^2, 32^2..96^2, > 96^2 pixels (video: mean area over visible frames)",
    "video IoU": "sum over frames of |P & G| / sum over frames of |P | G| (YouTube-VIS)",
}


def encode_instance(mask, *, description: str) -> dict:
    """RLE record `{"rle", "area", "frames"}` of one instance mask, `(h, w)` or `(frames, h, w)`."""
    array = to_numpy(mask)
    array = as_binary_mask(array, description=description, ndim=2 if array.ndim == 2 else 3)
    frames = array[None] if array.ndim == 2 else array
    frame_areas = frames.sum(axis=(1, 2))
    visible = frame_areas[frame_areas > 0]
    return {
        "rle": encode_rle(frames.reshape(-1, frames.shape[-1])),
        "area": float(visible.mean()) if visible.size else 0.0,
        "frames": int(frames.shape[0]),
    }


def instance_sample_statistics(prediction, reference, *, index: int) -> dict:
    """Encodes one image's (or video's) predicted and reference instances as RLE records.

    Args:
        prediction: `[{"mask", "score", "category_id"}, ...]`.
        reference: `[{"mask", "category_id", "iscrowd"}, ...]`.
        index: sample index, used in error messages.

    Returns:
        `{"predictions": [{"rle", "area", "frames", "score", "category_id"}], "references": [{..., "iscrowd"}]}`.
    """
    records = {"predictions": [], "references": []}
    for role, instances, extra_keys in (
        ("prediction", prediction, ("score", "category_id")),
        ("reference", reference, ("category_id", "iscrowd")),
    ):
        for position, instance in enumerate(instances):
            description = f"sample {index} ({role} instance {position})"
            missing = [key for key in ("mask",) + extra_keys if key not in instance]
            if missing:
                raise ValueError(f"{description}: missing keys {missing}")
            record = encode_instance(instance["mask"], description=description)
            record.update({key: float(instance[key]) if key == "score" else int(instance[key]) for key in extra_keys})
            records[f"{role}s"].append(record)
    sizes = {(record["frames"], tuple(record["rle"]["size"])) for role in records.values() for record in role}
    if len(sizes) > 1:
        shapes = sorted((frames, size[0] // frames, size[1]) for frames, size in sizes)
        raise ValueError(f"sample {index}: instance masks of different shapes {shapes} (frames, height, width)")
    return records


def aggregate_instance(records: list) -> dict:
    """AP, AP50, AP75, APs, APm, APl from per-sample RLE records, computed by pycocotools' `COCOeval`."""
    if not records:
        raise ValueError("cannot compute instance metrics over zero samples")
    images, references, predictions = [], [], []
    for image_id, record in enumerate(records, start=1):
        instances = record["references"] + record["predictions"]
        height, width = instances[0]["rle"]["size"] if instances else (1, 1)
        images.append({"id": image_id, "height": height, "width": width})
        for instance in record["references"]:
            references.append(
                _coco_annotation(instance, image_id, len(references) + 1, iscrowd=int(instance["iscrowd"]))
            )
        for instance in record["predictions"]:
            annotation = _coco_annotation(instance, image_id, len(predictions) + 1, iscrowd=0)
            annotation["score"] = float(instance["score"])
            predictions.append(annotation)
    category_ids = sorted({annotation["category_id"] for annotation in references + predictions})
    categories = [{"id": category_id} for category_id in category_ids]

    reference_set = _in_memory_coco({"images": images, "annotations": references, "categories": categories})
    prediction_set = _in_memory_coco({"images": images, "annotations": predictions, "categories": categories})
    evaluator = COCOeval(reference_set, prediction_set, iouType="segm")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {
        name: float(value) if value >= 0 else float("nan")
        for name, value in zip(INSTANCE_METRIC_NAMES, evaluator.stats[: len(INSTANCE_METRIC_NAMES)])
    }


def _coco_annotation(instance: dict, image_id: int, annotation_id: int, *, iscrowd: int) -> dict:
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": int(instance["category_id"]),
        "segmentation": {"size": list(instance["rle"]["size"]), "counts": instance["rle"]["counts"]},
        "area": float(instance["area"]),
        "iscrowd": iscrowd,
    }


def _in_memory_coco(dataset: dict) -> COCO:
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def compute_instance(predictions, references) -> dict:
    """COCO mask AP of per-image instance lists; see `INSTANCE_DEFINITIONS`.

    Args:
        predictions: per image, `[{"mask": bool (h, w) or (frames, h, w), "score": float, "category_id": int}, ...]`.
        references: per image, `[{"mask": ..., "category_id": int, "iscrowd": 0 or 1}, ...]`.
    """
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    records = [
        instance_sample_statistics(prediction, reference, index=index)
        for index, (prediction, reference) in enumerate(zip(predictions, references))
    ]
    return aggregate_instance(records)
