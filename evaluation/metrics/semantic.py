"""Semantic segmentation metrics (mIoU, frequency-weighted IoU, pixel accuracy) with an ignore label.

The definitions are those of detectron2's `SemSegEvaluator`, used by PSALM / HyperSeg for COCO, ADE20K, PASCAL-Context
and PASCAL VOC: a class that never occurs in the reference pixels has no IoU (NaN) and is left out of the mean, even
when it is predicted.

Every sample is reduced to a sparse confusion list `[[reference_label, predicted_label, pixel_count], ...]` over the
non-ignored pixels; the dataset numbers are computed from these records only.
"""

import numpy as np

from ..masks import as_label_map, check_same_shape

SEMANTIC_DEFINITIONS = {
    "per_category_iou": "TP_c / (TP_c + FP_c + FN_c) over all non-ignored pixels of the dataset; NaN when class c "
    "has no reference pixel",
    "mIoU": "mean of per_category_iou over the classes that have reference pixels",
    "fwIoU": "sum over those classes of IoU_c * (reference pixels of c / all non-ignored reference pixels)",
    "pixel_accuracy": "correctly labelled non-ignored pixels / non-ignored pixels",
}


def semantic_sample_statistics(prediction, reference, *, num_labels: int, ignore_index: int, index: int) -> dict:
    """Sparse confusion counts of one sample: `{"confusion": [[reference_label, predicted_label, count], ...]}`.

    Raises a `ValueError` naming the sample when a predicted label is outside `[0, num_labels)` or a reference
    label is outside `[0, num_labels)` and is not `ignore_index`.
    """
    prediction = as_label_map(prediction, description=f"sample {index} (prediction)")
    reference = as_label_map(reference, description=f"sample {index} (reference)")
    check_same_shape(prediction, reference, index=index)
    bad_predictions = np.unique(prediction[(prediction < 0) | (prediction >= num_labels)])
    if bad_predictions.size:
        raise ValueError(
            f"sample {index}: predicted labels {bad_predictions[:10].tolist()} are outside the class range "
            f"[0, {num_labels})"
        )
    valid = reference != ignore_index
    bad_references = np.unique(reference[valid & ((reference < 0) | (reference >= num_labels))])
    if bad_references.size:
        raise ValueError(
            f"sample {index}: reference labels {bad_references[:10].tolist()} are outside the class range "
            f"[0, {num_labels}) and are not the ignore label {ignore_index}"
        )
    pairs = reference[valid] * num_labels + prediction[valid]
    values, counts = np.unique(pairs, return_counts=True)
    return {
        "confusion": [
            [int(value // num_labels), int(value % num_labels), int(count)] for value, count in zip(values, counts)
        ]
    }


def confusion_matrix(records: list, num_labels: int) -> np.ndarray:
    """Dense `(num_labels, num_labels)` matrix, rows = reference label, columns = predicted label."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    for record in records:
        for reference_label, predicted_label, count in record["confusion"]:
            matrix[reference_label, predicted_label] += count
    return matrix


def aggregate_semantic(records: list, num_labels: int) -> dict:
    """mIoU, fwIoU, pixel accuracy and per-category IoU (a list, NaN for classes absent from the references)."""
    matrix = confusion_matrix(records, num_labels).astype(np.float64)
    true_positives = np.diag(matrix)
    reference_pixels = matrix.sum(axis=1)
    predicted_pixels = matrix.sum(axis=0)
    union = reference_pixels + predicted_pixels - true_positives
    present = reference_pixels > 0
    per_category_iou = np.full(num_labels, np.nan)
    per_category_iou[present] = true_positives[present] / union[present]
    total = reference_pixels.sum()
    if total == 0:
        mean_iou = frequency_weighted_iou = pixel_accuracy = float("nan")
    else:
        mean_iou = float(per_category_iou[present].mean())
        frequency_weighted_iou = float((per_category_iou[present] * reference_pixels[present] / total).sum())
        pixel_accuracy = float(true_positives.sum() / total)
    return {
        "mIoU": mean_iou,
        "fwIoU": frequency_weighted_iou,
        "pixel_accuracy": pixel_accuracy,
        "per_category_iou": per_category_iou.tolist(),
    }


def compute_semantic(predictions, references, *, num_labels: int, ignore_index: int = 255) -> dict:
    """Semantic segmentation metrics of integer `(height, width)` label maps; see `SEMANTIC_DEFINITIONS`."""
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    records = [
        semantic_sample_statistics(
            prediction, reference, num_labels=num_labels, ignore_index=ignore_index, index=index
        )
        for index, (prediction, reference) in enumerate(zip(predictions, references))
    ]
    return aggregate_semantic(records, num_labels)
