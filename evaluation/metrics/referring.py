"""Referring segmentation metrics: RefCOCO/+/g and ReasonSeg (cIoU, gIoU, precision@k) and gRefCOCO (N-acc, T-acc).

Every sample is reduced to three pixel counts, `intersection`, `prediction_area` and `reference_area`; the dataset
numbers are computed from these records only, so a report can be recomputed from its per-sample results.
"""

import numpy as np

from ..masks import as_binary_mask, check_same_shape

PRECISION_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
# Epsilons of the released HyperSeg / InstructSeg evaluation (eval_refcoco.py): the per-sample IoU is
# I / (U + 1e-5), set to 1 when U == 0, and the cumulative IoU is sum(I) / (sum(U) + 1e-10).
SAMPLE_IOU_EPSILON = 1e-5
CUMULATIVE_IOU_EPSILON = 1e-10

REFERRING_DEFINITIONS = {
    "cIoU": "sum over samples of |P & G| / (sum over samples of |P | G| + 1e-10)",
    "gIoU": "mean over samples of |P & G| / (|P | G| + 1e-5), a sample with |P | G| == 0 counting 1",
    "precision@k": "fraction of samples whose exact IoU |P & G| / |P | G| is >= k (1 when both masks are empty)",
}
GENERALIZED_REFERRING_DEFINITIONS = {
    "cIoU": REFERRING_DEFINITIONS["cIoU"],
    "gIoU": REFERRING_DEFINITIONS["gIoU"] + " (a no-target sample scores 1 if the prediction is empty, else 0)",
    "N-acc": "no-target samples (empty G) predicted empty / no-target samples",
    "T-acc": "target samples (non-empty G) predicted non-empty / target samples",
}


def referring_sample_statistics(prediction, reference, *, index: int) -> dict:
    """Pixel counts of one sample: `{"intersection", "prediction_area", "reference_area"}` (Python ints)."""
    prediction = as_binary_mask(prediction, description=f"sample {index} (prediction)")
    reference = as_binary_mask(reference, description=f"sample {index} (reference)")
    check_same_shape(prediction, reference, index=index)
    return {
        "intersection": int(np.logical_and(prediction, reference).sum()),
        "prediction_area": int(prediction.sum()),
        "reference_area": int(reference.sum()),
    }


def _union(record: dict) -> int:
    return record["prediction_area"] + record["reference_area"] - record["intersection"]


def sample_iou(record: dict) -> float:
    """IoU of one sample as the released code computes it: `I / (U + 1e-5)`, and 1 when the union is empty."""
    union = _union(record)
    return 1.0 if union == 0 else record["intersection"] / (union + SAMPLE_IOU_EPSILON)


def _exact_iou(record: dict) -> float:
    union = _union(record)
    return 1.0 if union == 0 else record["intersection"] / union


def _cumulative_iou(records: list) -> float:
    return sum(record["intersection"] for record in records) / (
        sum(_union(record) for record in records) + CUMULATIVE_IOU_EPSILON
    )


def _mean_iou(records: list) -> float:
    return float(np.mean([sample_iou(record) for record in records]))


def aggregate_referring(records: list) -> dict:
    """cIoU, gIoU and precision@{0.5,...,0.9} of a list of per-sample records."""
    if not records:
        raise ValueError("cannot compute referring metrics over zero samples")
    exact_ious = np.array([_exact_iou(record) for record in records])
    results = {"cIoU": _cumulative_iou(records), "gIoU": _mean_iou(records)}
    for threshold in PRECISION_THRESHOLDS:
        results[f"precision@{threshold}"] = float(np.mean(exact_ious >= threshold))
    return results


def aggregate_generalized_referring(records: list) -> dict:
    """cIoU, gIoU, N-acc and T-acc (gRefCOCO, as in ReLA's evaluator) of a list of per-sample records.

    An all-empty reference is a no-target sample, an all-empty prediction a no-target prediction. N-acc (T-acc) is
    NaN when the samples hold no no-target (target) sample.
    """
    if not records:
        raise ValueError("cannot compute generalized referring metrics over zero samples")
    no_target = np.array([record["reference_area"] == 0 for record in records])
    predicted_empty = np.array([record["prediction_area"] == 0 for record in records])
    return {
        "cIoU": _cumulative_iou(records),
        "gIoU": _mean_iou(records),
        "N-acc": float(predicted_empty[no_target].mean()) if no_target.any() else float("nan"),
        "T-acc": float((~predicted_empty[~no_target]).mean()) if (~no_target).any() else float("nan"),
    }


def compute_referring(predictions, references) -> dict:
    """Referring metrics of boolean `(height, width)` masks; see `REFERRING_DEFINITIONS`."""
    return aggregate_referring(_statistics(predictions, references))


def compute_generalized_referring(predictions, references) -> dict:
    """gRefCOCO metrics of boolean masks (all-False = "no target"); see `GENERALIZED_REFERRING_DEFINITIONS`."""
    return aggregate_generalized_referring(_statistics(predictions, references))


def _statistics(predictions, references) -> list:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    return [
        referring_sample_statistics(prediction, reference, index=index)
        for index, (prediction, reference) in enumerate(zip(predictions, references))
    ]
