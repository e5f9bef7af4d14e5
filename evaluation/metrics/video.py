"""Video object segmentation metrics: DAVIS-2017 J (region) and F (boundary), and the ReVOS aggregation.

J, F and their statistics follow the DAVIS-2017 evaluation toolkit (`davis2017/metrics.py`, `davis2017/utils.py`):

* J per frame = |P & G| / |P | G|, 1 when the union is empty;
* F per frame = 2 P R / (P + R) of the one-pixel boundaries of P and G, a boundary pixel being matched when a pixel of
  the other boundary lies within `ceil(0.008 * image diagonal)` pixels (a disk); P = 1, R = 0 when only G has a
  boundary, P = 0, R = 1 when only the prediction has one, P = R = 1 when neither has;
* per object: mean (nan-mean over frames), recall (fraction of frames > 0.5), decay (mean of the first of four
  temporal bins minus mean of the last);
* dataset numbers: means over objects; J&F = (J + F) / 2.

One prediction / reference pair is one object track (DAVIS-17: one object of a sequence; referring VOS: one
expression). The DAVIS-2017 semi-supervised protocol scores frames 1..T-2 only (the first frame is given and the
last is dropped): pass those frames.
"""

import math

import numpy as np
from scipy import ndimage

from ..masks import as_binary_mask, check_same_shape

BOUNDARY_THRESHOLD = 0.008
REVOS_SPLITS = {"referring": 0, "reason": 1}  # split name -> type_id of its expressions
VIDEO_DEFINITIONS = {
    "J": "mean over objects of the nan-mean over frames of |P & G| / |P | G| (1 when the union is empty)",
    "F": "mean over objects of the nan-mean over frames of the DAVIS boundary F-measure, tolerance "
    "ceil(0.008 * image diagonal) pixels (disk)",
    "J&F": "(J + F) / 2",
    "J_recall / F_recall": "mean over objects of the fraction of frames with J (F) > 0.5",
    "J_decay / F_decay": "mean over objects of mean(first of 4 temporal bins) - mean(last bin), DAVIS bins",
}
REVOS_DEFINITIONS = {
    "J / F / A / R per expression": "means over all frames of J, F, pixel accuracy mean(P == G) and robustness "
    "max(1 - |P & ~G| / (|video foreground| + 1e-6), 0); each x100 and rounded to 2 decimals as the official "
    "script does",
    "J / F / A / R per split": "mean over the split's expressions (referring: type_id 0, reason: type_id 1), /100",
    "J&F per split": "(J + F) / 2 of the split means",
    "overall": "mean of the referring and reason split values (not a mean over all expressions)",
}


def region_similarity(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame J of boolean `(frames, h, w)` masks; frames with an empty union score 1."""
    intersection = np.logical_and(prediction, reference).sum(axis=(-2, -1))
    union = np.logical_or(prediction, reference).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, intersection / np.maximum(union, 1))


def segmentation_boundary(mask: np.ndarray) -> np.ndarray:
    """One-pixel boundary of a 2-D boolean mask (DAVIS `_seg2bmap` at full resolution).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour, pixels beyond the
    image counting as background; in the last row only the right neighbour and in the last column only the lower
    neighbour is compared, and the bottom-right pixel is never on the boundary.
    """
    right = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below = np.zeros_like(mask)
    below[:-1, :] = mask[1:, :]
    below_right = np.zeros_like(mask)
    below_right[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ below_right)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def boundary_f_measure(prediction: np.ndarray, reference: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD) -> float:
    """DAVIS boundary F-measure of one frame (2-D boolean masks).

    The toolkit dilates with `cv2.dilate(boundary, skimage.morphology.disk(r))`. A disk is symmetric, so dilating with
    it is the same whether or not the structuring element is reflected, and both OpenCV (default border) and
    `scipy.ndimage.binary_dilation` (`border_value=0`) let no pixel outside the image contribute; the two dilations
    are therefore identical.
    """
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*prediction.shape))
    prediction_boundary = segmentation_boundary(prediction)
    reference_boundary = segmentation_boundary(reference)
    structure = _disk(int(radius))
    prediction_dilated = ndimage.binary_dilation(prediction_boundary, structure=structure)
    reference_dilated = ndimage.binary_dilation(reference_boundary, structure=structure)

    prediction_count = int(prediction_boundary.sum())
    reference_count = int(reference_boundary.sum())
    if prediction_count == 0 and reference_count == 0:
        precision, recall = 1.0, 1.0
    elif prediction_count == 0:
        precision, recall = 1.0, 0.0
    elif reference_count == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = np.logical_and(prediction_boundary, reference_dilated).sum() / prediction_count
        recall = np.logical_and(reference_boundary, prediction_dilated).sum() / reference_count
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def davis_statistics(per_frame: np.ndarray) -> tuple:
    """`(mean, recall, decay)` of per-frame values, DAVIS `db_statistics`.

    The toolkit stores the bin edges as uint8, which wraps for sequences over 255 frames; plain integers are used here.
    """
    per_frame = np.asarray(per_frame, dtype=np.float64)
    mean = float(np.nanmean(per_frame))
    recall = float(np.nanmean(per_frame > 0.5))
    edges = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(np.int64)
    bins = [per_frame[edges[i] : edges[i + 1] + 1] for i in range(4)]
    decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def _video_pair(prediction, reference, index: int) -> tuple:
    prediction = as_binary_mask(prediction, description=f"sample {index} (prediction)", ndim=3)
    reference = as_binary_mask(reference, description=f"sample {index} (reference)", ndim=3)
    check_same_shape(prediction, reference, index=index)
    return prediction, reference


def video_sample_statistics(prediction, reference, *, index: int) -> dict:
    """Per-frame J and F of one object track: `{"J": [...], "F": [...]}`."""
    prediction, reference = _video_pair(prediction, reference, index)
    return {
        "J": region_similarity(prediction, reference).tolist(),
        "F": [boundary_f_measure(p, r) for p, r in zip(prediction, reference)],
    }


def aggregate_video(records: list) -> dict:
    """J, F, J&F, recall and decay, averaged over object tracks."""
    if not records:
        raise ValueError("cannot compute video metrics over zero samples")
    statistics = {
        measure: np.array([davis_statistics(record[measure]) for record in records]) for measure in ("J", "F")
    }
    j_mean, j_recall, j_decay = statistics["J"].mean(axis=0)
    f_mean, f_recall, f_decay = statistics["F"].mean(axis=0)
    return {
        "J": float(j_mean),
        "F": float(f_mean),
        "J&F": float((j_mean + f_mean) / 2),
        "J_recall": float(j_recall),
        "F_recall": float(f_recall),
        "J_decay": float(j_decay),
        "F_decay": float(f_decay),
    }


def compute_video(predictions, references) -> dict:
    """DAVIS J / F statistics of boolean `(frames, h, w)` object tracks; see `VIDEO_DEFINITIONS`."""
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    return aggregate_video(
        [
            video_sample_statistics(prediction, reference, index=index)
            for index, (prediction, reference) in enumerate(zip(predictions, references))
        ]
    )


def revos_sample_statistics(prediction, reference, foreground, *, index: int) -> dict:
    """ReVOS per-expression means `{"J", "F", "A", "R"}` (fractions, not yet rounded).

    Args:
        prediction: boolean `(frames, h, w)` prediction for the expression.
        reference: boolean `(frames, h, w)`, union of the expression's annotated objects.
        foreground: boolean `(frames, h, w)`, union of all annotated objects of the video (for the robustness R).
        index: sample index, used in error messages.

    The released HyperSeg script reads predictions as 0/255 while the references are 0/1, which breaks A and R
    (issue O11 of the architecture notes); this function uses boolean masks, i.e. the intended definitions.
    """
    prediction, reference = _video_pair(prediction, reference, index)
    foreground = as_binary_mask(foreground, description=f"sample {index} (foreground)", ndim=3)
    check_same_shape(reference, foreground, index=index)
    false_positives = np.logical_and(prediction, ~reference).sum(axis=(1, 2))
    robustness = np.maximum(1 - false_positives / (foreground.sum(axis=(1, 2)) + 1e-6), 0.0)
    return {
        "J": float(region_similarity(prediction, reference).mean()),
        "F": float(np.mean([boundary_f_measure(p, r) for p, r in zip(prediction, reference)])),
        "A": float((prediction == reference).mean(axis=(1, 2)).mean()),
        "R": float(robustness.mean()),
    }


def aggregate_revos(records: list) -> dict:
    """ReVOS table `{"referring" | "reason" | "overall": {"J", "F", "J&F", "A", "R"}}`, as the official script.

    Args:
        records: dicts with `"J", "F", "A", "R"` (fractions) and `"type_id"` (0 referring, 1 reason; other types are
            left out of every split, as in the official script).
    """
    results = {}
    for split, type_id in REVOS_SPLITS.items():
        split_records = [record for record in records if int(record["type_id"]) == type_id]
        if not split_records:
            results[split] = {key: float("nan") for key in ("J", "F", "J&F", "A", "R")}
            continue
        means = {
            key: float(np.mean([np.round(100 * record[key], 2) for record in split_records])) / 100
            for key in ("J", "F", "A", "R")
        }
        means["J&F"] = (means["J"] + means["F"]) / 2
        results[split] = means
    results["overall"] = {
        key: (results["referring"][key] + results["reason"][key]) / 2 for key in ("J", "F", "J&F", "A", "R")
    }
    return results
