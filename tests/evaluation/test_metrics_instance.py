"""Instance AP: the metric must equal pycocotools' COCOeval run the standard way (JSON file + loadRes)."""

import contextlib
import io
import json

import numpy as np
import pytest
from hyperseg.evaluation.metrics.instance import compute_instance
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def random_image(rng, height, width, num_categories=3):
    """Reference instances (rectangles, some crowd) and noisy, scored predictions of them plus false positives."""
    references, predictions = [], []
    for _ in range(int(rng.integers(0, 6))):
        top, left = rng.integers(0, height - 1), rng.integers(0, width - 1)
        bottom, right = rng.integers(top + 1, height + 1), rng.integers(left + 1, width + 1)
        mask = np.zeros((height, width), dtype=bool)
        mask[top:bottom, left:right] = True
        category = int(rng.integers(1, num_categories + 1))
        references.append({"mask": mask, "category_id": category, "iscrowd": int(rng.random() < 0.1)})
        if rng.random() < 0.8:
            noisy = mask ^ (rng.random((height, width)) < rng.uniform(0, 0.3))
            predictions.append({"mask": noisy, "score": float(rng.random()), "category_id": category})
    for _ in range(int(rng.integers(0, 3))):
        predictions.append(
            {
                "mask": rng.random((height, width)) < 0.2,
                "score": float(rng.random()),
                "category_id": int(rng.integers(1, num_categories + 1)),
            }
        )
    return predictions, references


def cocoeval_through_files(tmp_path, predictions, references):
    """COCOeval the standard way: a ground-truth JSON file and `loadRes` of a result list."""
    images, annotations, results = [], [], []
    for image_id, (image_predictions, image_references) in enumerate(zip(predictions, references), start=1):
        height, width = (
            (image_references or image_predictions)[0]["mask"].shape
            if (image_references or image_predictions)
            else (1, 1)
        )
        images.append({"id": image_id, "height": int(height), "width": int(width), "file_name": f"{image_id}.jpg"})
        for instance in image_references:
            rle = mask_utils.encode(np.asfortranarray(instance["mask"].astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": instance["category_id"],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": instance["iscrowd"],
                    "bbox": mask_utils.toBbox(rle).tolist(),
                }
            )
        for instance in image_predictions:
            rle = mask_utils.encode(np.asfortranarray(instance["mask"].astype(np.uint8)))
            results.append(
                {
                    "image_id": image_id,
                    "category_id": instance["category_id"],
                    "score": instance["score"],
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                }
            )
    category_ids = sorted({a["category_id"] for a in annotations} | {r["category_id"] for r in results})
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": c} for c in category_ids]})
    )
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(path))
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [value if value >= 0 else np.nan for value in evaluator.stats[:6]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_cocoeval_on_random_instances(tmp_path, seed):
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for _ in range(12):
        height, width = (int(size) for size in rng.integers(8, 160, size=2))  # areas on both sides of 32^2 and 96^2
        image_predictions, image_references = random_image(rng, height, width)
        predictions.append(image_predictions)
        references.append(image_references)
    expected = cocoeval_through_files(tmp_path, predictions, references)
    results = compute_instance(predictions, references)
    assert list(results) == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    np.testing.assert_allclose([results[key] for key in results], expected, atol=1e-12)
    assert 0 < results["AP"] < 1  # the random data is neither trivially perfect nor trivially wrong


def test_video_iou_sums_over_frames():
    """A track is matched by sum-over-frames IoU (YouTube-VIS), not by the mean of per-frame IoUs."""
    reference = np.zeros((2, 10, 10), dtype=bool)
    reference[0] = True  # frame 0: 100 pixels, predicted exactly
    reference[1, :2, :2] = True  # frame 1: 4 pixels, missed by a 4-pixel prediction elsewhere
    prediction = reference.copy()
    prediction[1] = False
    prediction[1, 8:, 8:] = True
    # sum-over-frames IoU = 100 / 108 = 0.93, whereas the mean of frame IoUs would be (1 + 0) / 2 = 0.5.
    results = compute_instance(
        [[{"mask": prediction, "score": 0.9, "category_id": 1}]],
        [[{"mask": reference, "category_id": 1, "iscrowd": 0}]],
    )
    assert results["AP75"] == pytest.approx(1.0)
    assert results["AP"] == pytest.approx(0.9)  # matched at the 9 IoU thresholds 0.50..0.90, not at 0.95


def test_video_area_is_mean_over_visible_frames():
    """A track of 20x20 pixels in 4 frames (1600 pixels in total) is a small object, as in YouTube-VIS."""
    track = np.zeros((5, 60, 60), dtype=bool)
    track[:4, 10:30, 10:30] = True
    results = compute_instance(
        [[{"mask": track, "score": 0.5, "category_id": 3}]], [[{"mask": track, "category_id": 3, "iscrowd": 0}]]
    )
    assert results["APs"] == pytest.approx(1.0)
    assert np.isnan(results["APm"]) and np.isnan(results["APl"])


def test_instances_of_different_shapes_name_the_sample():
    mask = np.ones((4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"sample 1: instance masks of different shapes"):
        compute_instance(
            [[], [{"mask": np.ones((4, 5), dtype=bool), "score": 1.0, "category_id": 1}]],
            [[], [{"mask": mask, "category_id": 1, "iscrowd": 0}]],
        )


def test_missing_key_names_the_instance():
    with pytest.raises(ValueError, match=r"sample 0 \(prediction instance 0\): missing keys \['score'\]"):
        compute_instance([[{"mask": np.ones((2, 2), bool), "category_id": 1}]], [[]])
