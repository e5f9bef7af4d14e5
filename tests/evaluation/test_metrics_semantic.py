"""Semantic metrics: hand-computed cases, detectron2's confusion-matrix formulas, ignore handling and bad labels."""

import numpy as np
import pytest
from hyperseg.evaluation.metrics.semantic import compute_semantic


def detectron2_style_metrics(predictions, references, num_labels, ignore_index):
    """Direct transcription of detectron2 SemSegEvaluator's formulas ((K+1)x(K+1) bincount, ignore as class K)."""
    matrix = np.zeros((num_labels + 1, num_labels + 1), dtype=np.int64)
    for prediction, reference in zip(predictions, references):
        reference = reference.copy()
        reference[reference == ignore_index] = num_labels
        matrix += np.bincount(
            (num_labels + 1) * prediction.reshape(-1) + reference.reshape(-1), minlength=matrix.size
        ).reshape(matrix.shape)
    true_positives = matrix.diagonal()[:-1].astype(float)
    positives_gt = matrix[:-1, :-1].sum(axis=0).astype(float)
    positives_pred = matrix[:-1, :-1].sum(axis=1).astype(float)
    iou = np.full(num_labels, np.nan)
    valid = positives_gt > 0
    iou[valid] = true_positives[valid] / (positives_gt + positives_pred - true_positives)[valid]
    return {
        "mIoU": iou[valid].mean(),
        "fwIoU": (iou[valid] * positives_gt[valid] / positives_gt.sum()).sum(),
        "pixel_accuracy": true_positives.sum() / positives_gt.sum(),
        "per_category_iou": iou,
    }


def test_hand_computed_case():
    reference = np.array([[0, 0, 1], [1, 255, 2]])
    prediction = np.array([[0, 1, 1], [1, 2, 0]])
    results = compute_semantic([prediction], [reference], num_labels=3, ignore_index=255)
    # class 0: TP 1, reference 2, predicted 2 -> 1/3; class 1: TP 2, reference 2, predicted 3 -> 2/3;
    # class 2: TP 0, reference 1, predicted 1 (the pixel under 255 is ignored) -> 0.
    assert results["per_category_iou"] == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert results["mIoU"] == pytest.approx(1 / 3)
    assert results["fwIoU"] == pytest.approx((2 * 1 / 3 + 2 * 2 / 3 + 0) / 5)
    assert results["pixel_accuracy"] == pytest.approx(3 / 5)


def test_class_absent_from_references_is_nan_and_left_out():
    reference = np.array([[0, 0], [0, 0]])
    prediction = np.array([[0, 0], [0, 1]])  # class 1 predicted but never in the reference
    results = compute_semantic([prediction], [reference], num_labels=3, ignore_index=255)
    assert results["per_category_iou"][0] == pytest.approx(3 / 4)
    assert np.isnan(results["per_category_iou"][1]) and np.isnan(results["per_category_iou"][2])
    assert results["mIoU"] == pytest.approx(3 / 4)


def test_all_ignore_image_changes_nothing():
    rng = np.random.default_rng(0)
    predictions = [rng.integers(0, 4, (6, 7)) for _ in range(3)]
    references = [rng.integers(0, 4, (6, 7)) for _ in range(3)]
    base = compute_semantic(predictions, references, num_labels=4, ignore_index=255)
    with_ignored = compute_semantic(
        predictions + [rng.integers(0, 4, (5, 5))], references + [np.full((5, 5), 255)], num_labels=4, ignore_index=255
    )
    assert with_ignored == pytest.approx(base, nan_ok=True)
    only_ignored = compute_semantic([np.zeros((2, 2), int)], [np.full((2, 2), 255)], num_labels=4, ignore_index=255)
    assert np.isnan(only_ignored["mIoU"]) and np.isnan(only_ignored["pixel_accuracy"])


@pytest.mark.parametrize("seed", range(4))
def test_matches_detectron2_formulas_on_random_maps(seed):
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 12))
    predictions, references = [], []
    for _ in range(int(rng.integers(1, 15))):
        shape = tuple(rng.integers(1, 30, size=2))
        reference = rng.integers(0, num_labels, shape)
        reference[rng.random(shape) < rng.uniform(0, 0.5)] = 255
        predictions.append(
            np.where(rng.random(shape) < 0.6, reference % num_labels, rng.integers(0, num_labels, shape))
        )
        references.append(reference)
    expected = detectron2_style_metrics(predictions, references, num_labels, 255)
    results = compute_semantic(predictions, references, num_labels=num_labels, ignore_index=255)
    for key in ("mIoU", "fwIoU", "pixel_accuracy"):
        assert results[key] == pytest.approx(expected[key], abs=1e-12, nan_ok=True)
    np.testing.assert_allclose(results["per_category_iou"], expected["per_category_iou"], atol=1e-12)


def test_perfect_prediction_scores_one():
    reference = np.array([[0, 1], [2, 255]])
    results = compute_semantic([np.array([[0, 1], [2, 0]])], [reference], num_labels=3, ignore_index=255)
    assert results["mIoU"] == results["fwIoU"] == results["pixel_accuracy"] == 1.0


def test_predicted_label_outside_class_range():
    reference = np.zeros((2, 2), int)
    with pytest.raises(ValueError, match=r"sample 1: predicted labels \[3\] are outside the class range \[0, 3\)"):
        compute_semantic(
            [reference, np.array([[0, 3], [0, 0]])], [reference, reference], num_labels=3, ignore_index=255
        )


def test_reference_label_outside_class_range():
    prediction = np.zeros((2, 2), int)
    with pytest.raises(ValueError, match=r"sample 0: reference labels \[7\] are outside .* not the ignore label 255"):
        compute_semantic([prediction], [np.array([[0, 7], [255, 0]])], num_labels=3, ignore_index=255)


def test_shape_mismatch_names_the_sample():
    with pytest.raises(
        ValueError, match=r"sample 0: prediction shape \(2, 3\) does not match reference shape \(2, 2\)"
    ):
        compute_semantic([np.zeros((2, 3), int)], [np.zeros((2, 2), int)], num_labels=3, ignore_index=255)
