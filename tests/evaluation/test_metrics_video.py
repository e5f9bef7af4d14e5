"""Video metrics against a direct implementation of the DAVIS-2017 toolkit's published definitions, and ReVOS."""

import math

import numpy as np
import pytest
from hyperseg.evaluation.metrics.video import (
    aggregate_revos,
    boundary_f_measure,
    compute_video,
    revos_sample_statistics,
)
from scipy.spatial.distance import cdist

# --- reference implementation, written from davis2017/metrics.py and davis2017/utils.py -----------------------------


def davis_j(annotation, segmentation):
    inters = np.sum(annotation & segmentation)
    union = np.sum(annotation | segmentation)
    return 1.0 if np.isclose(union, 0) else inters / union


def davis_boundary_map(seg):
    """`_seg2bmap` at full resolution, pixel by pixel."""
    height, width = seg.shape
    bmap = np.zeros_like(seg)
    for y in range(height):
        for x in range(width):
            if y == height - 1 and x == width - 1:
                continue
            if y == height - 1:
                bmap[y, x] = seg[y, x] != seg[y, x + 1]
            elif x == width - 1:
                bmap[y, x] = seg[y, x] != seg[y + 1, x]
            else:
                bmap[y, x] = seg[y, x] != seg[y, x + 1] or seg[y, x] != seg[y + 1, x] or seg[y, x] != seg[y + 1, x + 1]
    return bmap


def matched(boundary, other_boundary, radius):
    """Pixels of `boundary` that the other boundary dilated by `disk(radius)` covers.

    `cv2.dilate(B, disk(r))` is 1 at p exactly when some pixel b of B satisfies |p - b|^2 <= r^2 (a disk is symmetric
    and the image border adds nothing), so the count is done here with squared distances instead of a dilation.
    """
    points, others = np.argwhere(boundary), np.argwhere(other_boundary)
    if len(points) == 0 or len(others) == 0:
        return 0
    return int((cdist(points, others, "sqeuclidean").min(axis=1) <= radius**2).sum())


def davis_f(foreground_mask, gt_mask, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary, gt_boundary = davis_boundary_map(foreground_mask), davis_boundary_map(gt_mask)
    n_fg, n_gt = fg_boundary.sum(), gt_boundary.sum()
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = matched(fg_boundary, gt_boundary, bound_pix) / float(n_fg)
        recall = matched(gt_boundary, fg_boundary, bound_pix) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def davis_statistics(per_frame):
    mean = np.nanmean(per_frame)
    recall = np.nanmean(per_frame > 0.5)
    ids = (np.round(np.linspace(1, len(per_frame), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [per_frame[ids[i] : ids[i + 1] + 1] for i in range(4)]
    return mean, recall, np.nanmean(bins[0]) - np.nanmean(bins[3])


def davis_reference(predictions, references):
    per_object = []
    for prediction, reference in zip(predictions, references):
        j = np.array([davis_j(r, p) for p, r in zip(prediction, reference)])
        f = np.array([davis_f(p, r) for p, r in zip(prediction, reference)])
        per_object.append(davis_statistics(j) + davis_statistics(f))
    j_mean, j_recall, j_decay, f_mean, f_recall, f_decay = np.mean(per_object, axis=0)
    return {
        "J": j_mean,
        "F": f_mean,
        "J&F": (j_mean + f_mean) / 2,
        "J_recall": j_recall,
        "F_recall": f_recall,
        "J_decay": j_decay,
        "F_decay": f_decay,
    }


# --- tests -----------------------------------------------------------------------------------------------------------


def random_blobs(rng, shape):
    """A few random ellipses: boundaries with every orientation, sometimes empty, sometimes touching the border."""
    height, width = shape
    ys, xs = np.mgrid[:height, :width]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.5, max(height, 2) / 2), rng.uniform(0.5, max(width, 2) / 2)
        mask |= ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
    return mask


def perturbed(rng, mask):
    shifted = np.roll(mask, tuple(int(v) for v in rng.integers(-4, 5, size=2)), axis=(0, 1))
    return shifted ^ (rng.random(mask.shape) < rng.uniform(0, 0.02))


@pytest.mark.parametrize(
    "shape",
    [(1, 1), (2, 7), (20, 30), (90, 140), (170, 220), (250, 300)],  # tolerances of 1, 1, 1, 2, 3, 4 pixels
)
def test_boundary_f_matches_toolkit_definition(shape):
    rng = np.random.default_rng(sum(shape))
    for _ in range(4):
        reference = random_blobs(rng, shape)
        prediction = perturbed(rng, reference) if rng.random() < 0.8 else random_blobs(rng, shape)
        assert boundary_f_measure(prediction, reference) == pytest.approx(davis_f(prediction, reference), abs=1e-12)


def test_boundary_tolerance_in_pixels():
    rng = np.random.default_rng(7)
    reference = random_blobs(rng, (40, 50))
    prediction = perturbed(rng, reference)
    for bound_th in (1, 2, 5):
        expected = davis_f(prediction, reference, bound_th=bound_th)
        assert boundary_f_measure(prediction, reference, bound_th=bound_th) == pytest.approx(expected, abs=1e-12)


def test_boundary_empty_cases():
    empty, square = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    square[3:6, 3:6] = True
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(empty, square) == 0.0  # P = 1, R = 0
    assert boundary_f_measure(square, empty) == 0.0  # P = 0, R = 1
    assert boundary_f_measure(square, square) == 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_video_metric_matches_toolkit_definitions(seed):
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for _ in range(4):
        shape = (int(rng.integers(1, 13)),) + tuple(int(v) for v in rng.integers(10, 70, size=2))
        reference = np.stack([random_blobs(rng, shape[1:]) for _ in range(shape[0])])
        prediction = np.stack(
            [perturbed(rng, frame) if rng.random() < 0.7 else random_blobs(rng, shape[1:]) for frame in reference]
        )
        predictions.append(prediction)
        references.append(reference)
    expected = davis_reference(predictions, references)
    results = compute_video(predictions, references)
    assert set(results) == set(expected)
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-12), key


def test_region_similarity_empty_frames_score_one():
    empty = np.zeros((3, 4, 4), dtype=bool)
    results = compute_video([empty], [empty])
    assert results["J"] == 1.0 and results["F"] == 1.0 and results["J&F"] == 1.0 and results["J_decay"] == 0.0


def test_shape_mismatch_names_the_sample():
    track = np.zeros((2, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"sample 1: prediction shape \(3, 4, 4\) does not match reference shape"):
        compute_video([track, np.zeros((3, 4, 4), dtype=bool)], [track, track])


def test_revos_robustness_and_accuracy_by_hand():
    reference = np.zeros((2, 4, 5), dtype=bool)
    reference[:, 0, :2] = True  # 2 pixels per frame
    foreground = reference.copy()
    foreground[:, 3, :] = True  # 7 foreground pixels per frame
    prediction = reference.copy()
    prediction[0, 2, :] = True  # frame 0: 5 false positives -> R = 1 - 5 / 7; frame 1: R = 1
    record = revos_sample_statistics(prediction, reference, foreground, index=0)
    assert record["R"] == pytest.approx(((1 - 5 / (7 + 1e-6)) + 1) / 2)
    assert record["A"] == pytest.approx((15 / 20 + 1) / 2)
    assert record["J"] == pytest.approx((2 / 7 + 1) / 2)


def test_revos_aggregation_as_the_official_script():
    records = [
        {"type_id": 0, "J": 0.123456, "F": 0.5, "A": 0.9, "R": 0.8},
        {"type_id": 0, "J": 0.654321, "F": 0.25, "A": 0.7, "R": 0.6},
        {"type_id": 1, "J": 0.3, "F": 0.41116, "A": 0.5, "R": 0.4},
        {"type_id": 2, "J": 0.0, "F": 0.0, "A": 0.0, "R": 0.0},  # neither split
    ]
    results = aggregate_revos(records)
    # per-expression values are x100 and rounded to 2 decimals before averaging: 12.35 and 65.43.
    assert results["referring"]["J"] == pytest.approx((12.35 + 65.43) / 2 / 100, abs=1e-12)
    assert results["referring"]["J&F"] == pytest.approx(((12.35 + 65.43) / 2 + 37.5) / 2 / 100, abs=1e-12)
    assert results["reason"]["F"] == pytest.approx(0.4112, abs=1e-12)
    assert results["overall"]["J"] == pytest.approx(((12.35 + 65.43) / 2 + 30) / 2 / 100, abs=1e-12)
    assert results["overall"]["R"] == pytest.approx((0.7 + 0.4) / 2, abs=1e-12)
    assert math.isnan(aggregate_revos(records[:2])["reason"]["J"])
