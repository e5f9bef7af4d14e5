"""Panoptic quality (PQ, SQ, RQ) with panopticapi's matching rules.

Rules, as in panopticapi's `pq_compute_single_core`:

* segment id 0 is void (unlabeled) in both maps;
* a reference segment and a predicted segment of the same category match when their IoU is > 0.5, where the
  union leaves out the predicted pixels that fall on void;
* crowd reference segments (`iscrowd == 1`) never match and are not false negatives;
* an unmatched predicted segment is not a false positive when more than half of its pixels fall on void or on a crowd
  segment of its own category;
* a reference segment listed in `segments_info` but absent from the map counts as a false negative;
* PQ_c = sum IoU / (TP + FP/2 + FN/2), SQ_c = sum IoU / TP (0 without TP), RQ_c = TP / (TP + FP/2 + FN/2); overall
  values average over the categories with TP + FP + FN > 0 (NaN when there is none).

Every sample is reduced to per-category `[tp, fp, fn, iou_sum]` counts; the dataset numbers come from these only.
"""

import numpy as np

from ..masks import as_label_map, check_same_shape

VOID = 0
PANOPTIC_DEFINITIONS = {
    "matching": "same category and IoU > 0.5, the union excluding predicted pixels on void (id 0); crowd references "
    "never match; unmatched predictions more than half on void or same-category crowd are ignored",
    "PQ": "mean over categories with TP+FP+FN > 0 of sum(IoU of matches) / (TP + FP/2 + FN/2)",
    "SQ": "mean over the same categories of sum(IoU of matches) / TP (0 when TP == 0)",
    "RQ": "mean over the same categories of TP / (TP + FP/2 + FN/2)",
    "_th / _st": "the same means restricted to thing (isthing == 1) / stuff categories",
}


def _segments_by_id(segments_info, *, description: str, required_keys: tuple) -> dict:
    segments = {}
    for segment in segments_info:
        missing = [key for key in required_keys if key not in segment]
        if missing:
            raise ValueError(f"{description}: segment {segment} lacks the keys {missing}")
        segment_id = int(segment["id"])
        if segment_id == VOID:
            raise ValueError(f"{description}: segment id 0 is reserved for void and cannot be listed in segments_info")
        if segment_id in segments:
            raise ValueError(f"{description}: segment id {segment_id} is listed twice in segments_info")
        segments[segment_id] = segment
    return segments


def _segment_areas(id_map: np.ndarray, segments: dict, *, description: str) -> dict:
    ids, counts = np.unique(id_map, return_counts=True)
    unknown = [int(segment_id) for segment_id in ids if segment_id != VOID and segment_id not in segments]
    if unknown:
        raise ValueError(f"{description}: segment ids {unknown} appear in the map but not in segments_info")
    return {int(segment_id): int(count) for segment_id, count in zip(ids, counts)}


def panoptic_sample_statistics(prediction, reference, *, categories: dict, index: int) -> dict:
    """Per-category `[tp, fp, fn, iou_sum]` of one image: `{"per_category": {category_id: [...]}}`.

    Args:
        prediction: `(segment-id map, segments_info)` with `{"id", "category_id"}` segments.
        reference: `(segment-id map, segments_info)` with `{"id", "category_id", "iscrowd"}` segments.
        categories: `{category_id: isthing}` of the dataset.
        index: sample index, used in error messages.
    """
    prediction_map, prediction_segments = prediction
    reference_map, reference_segments = reference
    prediction_description, reference_description = f"sample {index} (prediction)", f"sample {index} (reference)"
    prediction_map = as_label_map(prediction_map, description=prediction_description)
    reference_map = as_label_map(reference_map, description=reference_description)
    check_same_shape(prediction_map, reference_map, index=index)
    prediction_segments = _segments_by_id(
        prediction_segments, description=prediction_description, required_keys=("id", "category_id")
    )
    reference_segments = _segments_by_id(
        reference_segments, description=reference_description, required_keys=("id", "category_id", "iscrowd")
    )
    for description, segments in (
        (prediction_description, prediction_segments),
        (reference_description, reference_segments),
    ):
        unknown = sorted({int(s["category_id"]) for s in segments.values()} - set(categories))
        if unknown:
            raise ValueError(f"{description}: category ids {unknown} are not in the dataset categories")

    prediction_areas = _segment_areas(prediction_map, prediction_segments, description=prediction_description)
    reference_areas = _segment_areas(reference_map, reference_segments, description=reference_description)
    absent = sorted(set(prediction_segments) - set(prediction_areas))
    if absent:
        raise ValueError(
            f"{prediction_description}: segments {absent} are listed in segments_info but absent from the map"
        )

    # Pixel counts of every (reference id, predicted id) pair, void included.
    offset = int(prediction_map.max()) + 1
    pair_ids, pair_counts = np.unique(reference_map * offset + prediction_map, return_counts=True)
    overlaps = {(int(pair // offset), int(pair % offset)): int(count) for pair, count in zip(pair_ids, pair_counts)}

    statistics = {}

    def category_statistics(category_id) -> list:
        return statistics.setdefault(int(category_id), [0, 0, 0, 0.0])

    matched_references, matched_predictions = set(), set()
    for (reference_id, prediction_id), intersection in overlaps.items():
        if reference_id == VOID or prediction_id == VOID:
            continue
        reference_segment, prediction_segment = reference_segments[reference_id], prediction_segments[prediction_id]
        if reference_segment["iscrowd"] == 1 or reference_segment["category_id"] != prediction_segment["category_id"]:
            continue
        union = (
            prediction_areas[prediction_id]
            + reference_areas[reference_id]
            - intersection
            - overlaps.get((VOID, prediction_id), 0)
        )
        iou = intersection / union
        if iou > 0.5:
            counts = category_statistics(reference_segment["category_id"])
            counts[0] += 1
            counts[3] += iou
            matched_references.add(reference_id)
            matched_predictions.add(prediction_id)

    crowd_by_category = {}
    for reference_id, segment in reference_segments.items():
        if reference_id in matched_references:
            continue
        if segment["iscrowd"] == 1:
            crowd_by_category[segment["category_id"]] = reference_id
            continue
        category_statistics(segment["category_id"])[2] += 1

    for prediction_id, segment in prediction_segments.items():
        if prediction_id in matched_predictions:
            continue
        ignored = overlaps.get((VOID, prediction_id), 0)
        if segment["category_id"] in crowd_by_category:
            ignored += overlaps.get((crowd_by_category[segment["category_id"]], prediction_id), 0)
        if ignored / prediction_areas[prediction_id] > 0.5:
            continue
        category_statistics(segment["category_id"])[1] += 1

    return {"per_category": statistics}


def aggregate_panoptic(records: list, categories: dict) -> dict:
    """PQ / SQ / RQ overall, over things (`_th`) and over stuff (`_st`) from per-sample records.

    Args:
        records: outputs of `panoptic_sample_statistics` (category ids may be JSON strings).
        categories: `{category_id: isthing}` of the dataset.
    """
    totals = {category_id: [0, 0, 0, 0.0] for category_id in categories}
    for record in records:
        for category_id, counts in record["per_category"].items():
            total = totals[int(category_id)]
            for position, value in enumerate(counts):
                total[position] += value

    results = {}
    for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
        qualities = []
        for category_id, (tp, fp, fn, iou_sum) in totals.items():
            if isthing is not None and bool(categories[category_id]) != isthing:
                continue
            if tp + fp + fn == 0:
                continue
            denominator = tp + 0.5 * fp + 0.5 * fn
            qualities.append((iou_sum / denominator, iou_sum / tp if tp else 0.0, tp / denominator))
        means = np.mean(qualities, axis=0) if qualities else np.full(3, np.nan)
        results.update(
            {f"PQ{suffix}": float(means[0]), f"SQ{suffix}": float(means[1]), f"RQ{suffix}": float(means[2])}
        )
    return results


def categories_by_id(categories) -> dict:
    """`[{"id", "isthing"}, ...]` to `{id: isthing}`."""
    return {int(category["id"]): int(category["isthing"]) for category in categories}


def compute_panoptic(predictions, references, *, categories) -> dict:
    """Panoptic quality of `(segment-id map, segments_info)` pairs; see `PANOPTIC_DEFINITIONS`.

    Args:
        predictions: `[(int map (h, w), [{"id", "category_id"}, ...]), ...]`.
        references: `[(int map (h, w), [{"id", "category_id", "iscrowd"}, ...]), ...]`.
        categories: `[{"id", "isthing"}, ...]`.
    """
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
    categories = categories_by_id(categories)
    records = [
        panoptic_sample_statistics(prediction, reference, categories=categories, index=index)
        for index, (prediction, reference) in enumerate(zip(predictions, references))
    ]
    return aggregate_panoptic(records, categories)
