"""The `evaluate` modules: offline loading, the API contract's result keys, and agreement with the pure functions."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hyperseg.evaluation import METRIC_NAMES, load_metric
from hyperseg.evaluation.metrics import (
    compute_generalized_referring,
    compute_instance,
    compute_panoptic,
    compute_referring,
    compute_semantic,
    compute_video,
)

RNG = np.random.default_rng(0)
MASKS = [RNG.random((12, 9)) > 0.5, RNG.random((5, 17)) > 0.7, np.zeros((4, 4), dtype=bool)]
TARGETS = [RNG.random((12, 9)) > 0.5, np.zeros((5, 17), dtype=bool), np.zeros((4, 4), dtype=bool)]
LABEL_MAPS = [RNG.integers(0, 5, (7, 8)), RNG.integers(0, 5, (3, 11))]
LABEL_TARGETS = [np.where(RNG.random((7, 8)) < 0.2, 255, RNG.integers(0, 5, (7, 8))), RNG.integers(0, 5, (3, 11))]
TRACKS = [RNG.random((3, 20, 24)) > 0.5, RNG.random((2, 16, 16)) > 0.5]
TRACK_TARGETS = [RNG.random((3, 20, 24)) > 0.5, RNG.random((2, 16, 16)) > 0.5]
ID_MAP = np.array([[1, 1, 2, 2], [1, 3, 2, 0]])
PANOPTIC_PREDICTIONS = [
    (ID_MAP, [{"id": 1, "category_id": 1}, {"id": 2, "category_id": 5}, {"id": 3, "category_id": 1}])
]
PANOPTIC_REFERENCES = [
    (
        np.array([[1, 1, 2, 2], [1, 1, 2, 2]]),
        [{"id": 1, "category_id": 1, "iscrowd": 0}, {"id": 2, "category_id": 5, "iscrowd": 0}],
    )
]
PANOPTIC_CATEGORIES = [{"id": 1, "isthing": 1}, {"id": 5, "isthing": 0}]
SQUARE = np.zeros((40, 40), dtype=bool)
SQUARE[4:30, 4:30] = True
INSTANCE_PREDICTIONS = [
    [{"mask": SQUARE, "score": 0.9, "category_id": 1}, {"mask": ~SQUARE, "score": 0.3, "category_id": 2}],
    [{"mask": np.roll(SQUARE, 3, axis=1), "score": 0.8, "category_id": 1}],
]
INSTANCE_REFERENCES = [
    [{"mask": SQUARE, "category_id": 1, "iscrowd": 0}],
    [{"mask": SQUARE, "category_id": 1, "iscrowd": 0}],
]

CASES = {
    "referring": (
        MASKS,
        TARGETS,
        {},
        compute_referring,
        {"cIoU", "gIoU", "precision@0.5", "precision@0.6", "precision@0.7", "precision@0.8", "precision@0.9"},
    ),
    "generalized_referring": (MASKS, TARGETS, {}, compute_generalized_referring, {"cIoU", "gIoU", "N-acc", "T-acc"}),
    "semantic": (
        LABEL_MAPS,
        LABEL_TARGETS,
        {"num_labels": 5, "ignore_index": 255},
        compute_semantic,
        {"mIoU", "fwIoU", "pixel_accuracy", "per_category_iou"},
    ),
    "panoptic": (
        PANOPTIC_PREDICTIONS,
        PANOPTIC_REFERENCES,
        {"categories": PANOPTIC_CATEGORIES},
        compute_panoptic,
        {"PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st"},
    ),
    "instance": (
        INSTANCE_PREDICTIONS,
        INSTANCE_REFERENCES,
        {},
        compute_instance,
        {"AP", "AP50", "AP75", "APs", "APm", "APl"},
    ),
    "video": (
        TRACKS,
        TRACK_TARGETS,
        {},
        compute_video,
        {"J", "F", "J&F", "J_recall", "F_recall", "J_decay", "F_decay"},
    ),
}


def test_every_metric_has_a_case():
    assert set(CASES) == set(METRIC_NAMES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_module_equals_pure_function(name):
    predictions, references, kwargs, pure_function, keys = CASES[name]
    results = load_metric(name, keep_in_memory=True).compute(predictions=predictions, references=references, **kwargs)
    assert set(results) == keys
    expected = pure_function(predictions, references, **kwargs)
    assert json.dumps(results, sort_keys=True) == json.dumps(expected, sort_keys=True)
    for key, value in results.items():
        values = value if isinstance(value, list) else [value]
        low = -1 if key.endswith("_decay") else 0
        assert all(np.isnan(v) or low <= v <= 1 for v in values), (key, value)


def test_batches_accumulate_like_one_compute():
    metric = load_metric("referring", keep_in_memory=True)
    metric.add_batch(predictions=MASKS[:2], references=TARGETS[:2])
    metric.add(prediction=MASKS[2], reference=TARGETS[2])
    assert metric.compute() == compute_referring(MASKS, TARGETS)


def test_errors_name_the_sample_across_batches():
    metric = load_metric("referring", keep_in_memory=True)
    metric.add_batch(predictions=MASKS[:2], references=TARGETS[:2])
    with pytest.raises(ValueError, match=r"sample 2 \(prediction\).*found values \[255\]"):
        metric.add_batch(predictions=[np.full((4, 4), 255, dtype=np.uint8)], references=[TARGETS[2]])


def test_shape_mismatch_through_evaluate():
    metric = load_metric("referring", keep_in_memory=True)
    with pytest.raises(
        ValueError, match=r"sample 1: prediction shape \(12, 9\) does not match reference shape \(5, 17\)"
    ):
        metric.compute(predictions=[MASKS[0], MASKS[0]], references=TARGETS[:2])


def test_semantic_label_out_of_range_through_evaluate():
    metric = load_metric("semantic", keep_in_memory=True)
    predictions = [LABEL_MAPS[0], np.array([[0, 5]])]
    references = [LABEL_TARGETS[0], np.array([[0, 1]])]
    with pytest.raises(ValueError, match=r"sample 1: predicted labels \[5\] are outside the class range \[0, 5\)"):
        metric.compute(predictions=predictions, references=references, num_labels=5)


def test_loads_offline_in_a_fresh_process(tmp_path):
    script = (
        "import numpy as np\n"
        "from hyperseg.evaluation import METRIC_NAMES, load_metric\n"
        "modules = {name: load_metric(name) for name in METRIC_NAMES}\n"
        "mask = np.ones((3, 3), dtype=bool)\n"
        "results = modules['referring'].compute(predictions=[mask], references=[mask])\n"
        "print(sorted(modules), round(results['cIoU'], 6))\n"
    )
    environment = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    completed = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == f"{sorted(METRIC_NAMES)} 1.0"
