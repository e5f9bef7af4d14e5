"""Referring and generalized referring metrics: hand-computed cases, invariants, the released evaluation's formula."""

import numpy as np
import pytest
import torch
from hyperseg.evaluation.metrics.referring import (
    compute_generalized_referring,
    compute_referring,
    referring_sample_statistics,
)


def released_intersection_and_union(prediction: np.ndarray, reference: np.ndarray):
    """Foreground I and U as eval_refcoco.py's `intersectionAndUnionGPU(K=2, ignore_index=255)` computes them."""
    output = torch.from_numpy(prediction.astype(np.int64)).double().reshape(-1)
    target = torch.from_numpy(reference.astype(np.int64)).double().reshape(-1)
    output[target == 255] = 255
    intersection = output[output == target]
    area_intersection = torch.histc(intersection, bins=2, min=0, max=1)
    area_output = torch.histc(output, bins=2, min=0, max=1)
    area_target = torch.histc(target, bins=2, min=0, max=1)
    return area_intersection.numpy(), (area_output + area_target - area_intersection).numpy()


def released_metrics(predictions, references):
    """cIoU / gIoU as the released script aggregates its meters (float64 instead of the script's float32 sums)."""
    intersection_sum, union_sum, iou_sum = np.zeros(2), np.zeros(2), np.zeros(2)
    for prediction, reference in zip(predictions, references):
        intersection, union = released_intersection_and_union(prediction, reference)
        iou = intersection / (union + 1e-5)
        iou[union == 0] = 1.0
        intersection_sum += intersection
        union_sum += union
        iou_sum += iou
    return {"cIoU": (intersection_sum / (union_sum + 1e-10))[1], "gIoU": iou_sum[1] / len(predictions)}


def random_pairs(seed: int, count: int):
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for _ in range(count):
        height, width = rng.integers(1, 40, size=2)
        kind = rng.integers(0, 4)
        reference = rng.random((height, width)) < rng.uniform(0, 0.8)
        prediction = rng.random((height, width)) < rng.uniform(0, 0.8)
        if kind == 1:
            reference[:] = False
        elif kind == 2:
            prediction[:] = False
        elif kind == 3:
            prediction, reference = np.zeros_like(prediction), np.zeros_like(reference)
        predictions.append(prediction)
        references.append(reference)
    return predictions, references


def test_hand_computed_case():
    prediction_a = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)  # I = 2 with reference_a, U = 4
    reference_a = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)
    prediction_b = np.array([[1, 1], [1, 1]], dtype=bool)  # I = 1, U = 4
    reference_b = np.array([[0, 0], [0, 1]], dtype=bool)
    empty = np.zeros((3, 3), dtype=bool)  # both empty: IoU 1, adds nothing to cIoU

    results = compute_referring([prediction_a, prediction_b, empty], [reference_a, reference_b, empty])

    assert results["cIoU"] == pytest.approx(3 / 8, abs=1e-9)
    assert results["gIoU"] == pytest.approx((2 / (4 + 1e-5) + 1 / (4 + 1e-5) + 1.0) / 3, abs=1e-12)
    # exact IoUs are 0.5, 0.25 and 1: precision@0.5 counts the IoU equal to the threshold.
    assert results["precision@0.5"] == pytest.approx(2 / 3)
    for threshold in (0.6, 0.7, 0.8, 0.9):
        assert results[f"precision@{threshold}"] == pytest.approx(1 / 3)


def test_one_sample_invariants():
    predictions, references = random_pairs(seed=1, count=30)
    for prediction, reference in zip(predictions, references):
        intersection = np.logical_and(prediction, reference).sum()
        union = np.logical_or(prediction, reference).sum()
        results = compute_referring([prediction], [reference])
        expected_iou = 1.0 if union == 0 else intersection / union
        assert results["gIoU"] == pytest.approx(expected_iou, rel=1e-4)
        if union > 0:
            assert results["cIoU"] == pytest.approx(expected_iou, rel=1e-4)  # cIoU of one sample == its IoU


def test_cumulative_iou_is_union_weighted_mean_and_order_free():
    predictions, references = random_pairs(seed=2, count=25)
    results = compute_referring(predictions, references)
    unions = np.array([np.logical_or(p, r).sum() for p, r in zip(predictions, references)])
    ious = np.array([np.logical_and(p, r).sum() / max(u, 1) for p, r, u in zip(predictions, references, unions)])
    assert results["cIoU"] == pytest.approx(np.sum(ious * unions) / unions.sum(), rel=1e-9)
    order = np.random.default_rng(0).permutation(len(predictions))
    shuffled = compute_referring([predictions[i] for i in order], [references[i] for i in order])
    assert shuffled == pytest.approx(results)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_matches_released_formula_on_random_masks(seed):
    predictions, references = random_pairs(seed=seed, count=40)
    expected = released_metrics(predictions, references)
    results = compute_referring(predictions, references)
    assert results["cIoU"] == pytest.approx(expected["cIoU"], abs=1e-12)
    assert results["gIoU"] == pytest.approx(expected["gIoU"], abs=1e-12)


def test_generalized_referring_hand_computed_case():
    target = np.array([[1, 1], [0, 0]], dtype=bool)
    empty = np.zeros((2, 2), dtype=bool)
    full = np.ones((2, 2), dtype=bool)
    predictions = [empty, full, target, empty, full]
    references = [empty, empty, target, target, target]
    # no-target samples: 0 (predicted empty, correct), 1 (wrong); target samples: 2 (found), 3 (missed), 4 (found).
    results = compute_generalized_referring(predictions, references)
    assert results["N-acc"] == pytest.approx(1 / 2)
    assert results["T-acc"] == pytest.approx(2 / 3)
    # gIoU: 1, 0, 1, 0, 0.5 (with the 1e-5 epsilon); cIoU: (0 + 0 + 2 + 0 + 2) / (0 + 4 + 2 + 2 + 4).
    assert results["gIoU"] == pytest.approx((1 + 0 + 2 / (2 + 1e-5) + 0 + 2 / (4 + 1e-5)) / 5, abs=1e-12)
    assert results["cIoU"] == pytest.approx(4 / 12, abs=1e-9)


def test_generalized_referring_undefined_accuracies_are_nan():
    mask = np.array([[1, 0]], dtype=bool)
    results = compute_generalized_referring([mask], [mask])
    assert np.isnan(results["N-acc"]) and results["T-acc"] == 1.0


def test_shape_mismatch_names_the_sample():
    good = np.zeros((4, 4), dtype=bool)
    with pytest.raises(
        ValueError, match=r"sample 1: prediction shape \(4, 5\) does not match reference shape \(4, 4\)"
    ):
        compute_referring([good, np.zeros((4, 5), dtype=bool)], [good, good])


def test_non_binary_mask_is_rejected():
    with pytest.raises(ValueError, match=r"sample 0 \(prediction\).*found values \[0, 255\]"):
        referring_sample_statistics(np.array([[0, 255]], dtype=np.uint8), np.zeros((1, 2), dtype=bool), index=0)


def test_accepts_torch_and_01_integer_masks():
    prediction = torch.tensor([[1, 0], [1, 1]])
    reference = np.array([[1, 1], [0, 1]], dtype=np.uint8)
    assert referring_sample_statistics(prediction, reference, index=0) == {
        "intersection": 2,
        "prediction_area": 3,
        "reference_area": 3,
    }
