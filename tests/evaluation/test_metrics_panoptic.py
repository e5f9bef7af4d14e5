"""Panoptic quality against panopticapi itself (`panopticapi-lite`) and against `hotcoco`, on random PNG/JSON data."""

import contextlib
import io
import json

import numpy as np
import pytest
from hyperseg.evaluation.metrics.panoptic import compute_panoptic
from PIL import Image

CATEGORIES = [
    {"id": 1, "isthing": 1},
    {"id": 2, "isthing": 1},
    {"id": 7, "isthing": 1},
    {"id": 3, "isthing": 0},
    {"id": 40, "isthing": 0},
    {"id": 41, "isthing": 0},
]


def id_to_rgb(id_map: np.ndarray) -> np.ndarray:
    return np.stack([id_map % 256, id_map // 256 % 256, id_map // 65536], axis=-1).astype(np.uint8)


def random_image_pair(rng):
    """A reference of rectangles (some crowd) and void, and a prediction made from it by shifts, noise, relabels."""
    height, width = (int(size) for size in rng.integers(2, 40, size=2))
    category_ids = [category["id"] for category in CATEGORIES]
    reference = np.zeros((height, width), dtype=np.int64)
    segments, next_id = [], int(rng.integers(1, 300))
    for _ in range(int(rng.integers(0, 7))):
        top, left = rng.integers(0, height), rng.integers(0, width)
        bottom, right = rng.integers(top + 1, height + 1), rng.integers(left + 1, width + 1)
        reference[top:bottom, left:right] = next_id
        segments.append(
            {"id": next_id, "category_id": int(rng.choice(category_ids)), "iscrowd": int(rng.random() < 0.15)}
        )
        next_id += int(rng.integers(1, 70000))  # ids beyond 256 exercise all three colour channels
    present = set(np.unique(reference).tolist())
    segments = [segment for segment in segments if segment["id"] in present]

    prediction = reference.copy()
    if rng.random() < 0.5:
        prediction = np.roll(prediction, int(rng.integers(-3, 4)), axis=int(rng.integers(0, 2)))
    noise = rng.random((height, width)) < rng.uniform(0, 0.35)
    candidates = [0, 123456] + [segment["id"] for segment in segments]
    prediction[noise] = rng.choice(candidates, size=int(noise.sum()))
    category_of = {segment["id"]: segment["category_id"] for segment in segments}
    prediction_segments = [
        {
            "id": segment_id,
            "category_id": category_of[segment_id]
            if segment_id in category_of and rng.random() < 0.85
            else int(rng.choice(category_ids)),
        }
        for segment_id in np.unique(prediction).tolist()
        if segment_id != 0
    ]
    return (prediction, prediction_segments), (reference, segments)


def write_panoptic_folder(tmp_path, pairs):
    """COCO panoptic JSON + PNG files for the predictions and the references."""
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
    images, reference_annotations, prediction_annotations = [], [], []
    for image_id, ((prediction, prediction_segments), (reference, segments)) in enumerate(pairs):
        name = f"{image_id:04d}.png"
        Image.fromarray(id_to_rgb(reference)).save(tmp_path / "gt" / name)
        Image.fromarray(id_to_rgb(prediction)).save(tmp_path / "pred" / name)
        images.append(
            {
                "id": image_id,
                "file_name": name.replace(".png", ".jpg"),
                "height": reference.shape[0],
                "width": reference.shape[1],
            }
        )
        reference_annotations.append(
            {
                "image_id": image_id,
                "file_name": name,
                "segments_info": [dict(segment, area=int((reference == segment["id"]).sum())) for segment in segments],
            }
        )
        prediction_annotations.append({"image_id": image_id, "file_name": name, "segments_info": prediction_segments})
    categories = [dict(category, name=str(category["id"])) for category in CATEGORIES]
    (tmp_path / "gt.json").write_text(
        json.dumps({"images": images, "annotations": reference_annotations, "categories": categories})
    )
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": prediction_annotations}))
    return reference_annotations, prediction_annotations


def panopticapi_results(tmp_path, reference_annotations, prediction_annotations):
    from panopticapi.evaluation import pq_compute_single_core

    categories = {category["id"]: category for category in CATEGORIES}
    with contextlib.redirect_stdout(io.StringIO()):
        statistics = pq_compute_single_core(
            0,
            list(zip(reference_annotations, prediction_annotations)),
            str(tmp_path / "gt"),
            str(tmp_path / "pred"),
            categories,
        )
    results = {}
    for suffix, isthing in (("", None), ("_th", True), ("_st", False)):
        averages, _ = statistics.pq_average(categories, isthing=isthing)
        results.update({f"PQ{suffix}": averages["pq"], f"SQ{suffix}": averages["sq"], f"RQ{suffix}": averages["rq"]})
    return results


def hotcoco_results(tmp_path):
    from hotcoco import panoptic

    evaluator = panoptic.PanopticEval(
        str(tmp_path / "gt.json"),
        str(tmp_path / "pred.json"),
        gt_folder=str(tmp_path / "gt"),
        pred_folder=str(tmp_path / "pred"),
    )
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.run()
    groups = evaluator.results()
    results = {}
    for suffix, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        results.update({f"{name.upper()}{suffix}": groups[group][name] for name in ("pq", "sq", "rq")})
    return results


REFERENCES = {"panopticapi": ("panopticapi.evaluation", panopticapi_results), "hotcoco": ("hotcoco", hotcoco_results)}


@pytest.mark.parametrize("reference_name", sorted(REFERENCES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_implementation(tmp_path, reference_name, seed):
    module, reference = REFERENCES[reference_name]
    pytest.importorskip(module)
    rng = np.random.default_rng(seed)
    pairs = [random_image_pair(rng) for _ in range(30)]
    reference_annotations, prediction_annotations = write_panoptic_folder(tmp_path, pairs)
    if reference_name == "panopticapi":
        expected = reference(tmp_path, reference_annotations, prediction_annotations)
    else:
        expected = reference(tmp_path)

    results = compute_panoptic([pair[0] for pair in pairs], [pair[1] for pair in pairs], categories=CATEGORIES)

    assert set(results) == {"PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"}
    for key, value in expected.items():
        assert results[key] == pytest.approx(value, abs=1e-9), key


def segments(*triples):
    return [{"id": i, "category_id": c, "iscrowd": crowd} for i, c, crowd in triples]


def test_void_and_crowd_rules_by_hand():
    categories = [{"id": 1, "isthing": 1}, {"id": 2, "isthing": 0}]
    reference = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0], [3, 3, 3, 3, 2, 2]])
    reference_segments = segments((1, 1, 0), (2, 2, 0), (3, 1, 1))  # 3 is a crowd region of category 1
    prediction = np.array([[5, 5, 5, 0, 6, 6], [5, 5, 5, 0, 6, 6], [7, 7, 7, 7, 0, 0]])
    prediction_segments = [{"id": 5, "category_id": 1}, {"id": 6, "category_id": 2}, {"id": 7, "category_id": 1}]
    # 5 vs 1: I = 6, U = 6 + 8 - 6 = 8 -> IoU 0.75, a TP of category 1.
    # 6 lies entirely on void: ignored, not a FP; 2 is then a FN of category 2.
    # 7 lies entirely on the crowd region of its category: ignored, not a FP; the crowd region is no FN.
    results = compute_panoptic(
        [(prediction, prediction_segments)], [(reference, reference_segments)], categories=categories
    )
    assert results["PQ_th"] == pytest.approx(0.75) and results["SQ_th"] == pytest.approx(0.75)
    assert results["RQ_th"] == 1.0
    assert results["PQ_st"] == 0.0 and results["SQ_st"] == 0.0 and results["RQ_st"] == 0.0
    assert results["PQ"] == pytest.approx(0.375)


def test_no_category_to_average_is_nan():
    reference = np.zeros((2, 2), dtype=int)
    results = compute_panoptic([(reference, [])], [(reference, [])], categories=[{"id": 1, "isthing": 1}])
    assert all(np.isnan(value) for value in results.values())


def test_segment_missing_from_segments_info_names_the_sample():
    id_map = np.array([[1, 2]])
    with pytest.raises(
        ValueError, match=r"sample 0 \(prediction\): segment ids \[2\] appear in the map but not in segments_info"
    ):
        compute_panoptic(
            [(id_map, [{"id": 1, "category_id": 1}])],
            [(id_map, segments((1, 1, 0), (2, 1, 0)))],
            categories=[{"id": 1, "isthing": 1}],
        )


def test_unknown_category_names_the_sample():
    id_map = np.array([[1, 1]])
    with pytest.raises(
        ValueError, match=r"sample 0 \(reference\): category ids \[9\] are not in the dataset categories"
    ):
        compute_panoptic(
            [(id_map, [{"id": 1, "category_id": 1}])],
            [(id_map, segments((1, 9, 0)))],
            categories=[{"id": 1, "isthing": 1}],
        )


def test_shape_mismatch_names_the_sample():
    with pytest.raises(
        ValueError, match=r"sample 0: prediction shape \(1, 3\) does not match reference shape \(1, 2\)"
    ):
        compute_panoptic(
            [(np.array([[1, 1, 1]]), [{"id": 1, "category_id": 1}])],
            [(np.array([[1, 1]]), segments((1, 1, 0)))],
            categories=[{"id": 1, "isthing": 1}],
        )
