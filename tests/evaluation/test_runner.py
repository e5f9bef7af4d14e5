"""Evaluation runner: reports recompute from their per-sample results, resuming, and a run with a tiny model."""

import json

import numpy as np
import pytest
from hyperseg.evaluation.masks import decode_rle, encode_rle
from hyperseg.evaluation.metrics import aggregate_referring, compute_referring
from hyperseg.evaluation.readers import read_refcoco
from hyperseg.evaluation.runner import aggregate_records, per_sample_results_path, run_benchmark
from layouts import square_mask, write_ade, write_coco_instances, write_coco_panoptic, write_refcoco_split


def shifted_prediction(row):
    """A deterministic fake model: the reference mask, shifted right by `sentence_id % 3` pixels."""
    mask = decode_rle(row["mask_rle"])
    return np.roll(mask, row["sentence_id"] % 3, axis=1)


class FakePredictor:
    """Predicts `shifted_prediction` and records the rows it was asked about; can fail after some calls."""

    def __init__(self, fail_after_calls=None):
        self.seen, self.calls, self.fail_after_calls = [], 0, fail_after_calls

    def __call__(self, task, rows, context):
        if self.fail_after_calls is not None and self.calls == self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        assert task == "referring"
        self.seen.extend(row["sentence_id"] for row in rows)
        return [shifted_prediction(row) for row in rows]


def read_jsonl(path):
    lines = path.read_text().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


@pytest.fixture
def refcoco_root(tmp_path):
    write_refcoco_split(tmp_path / "data", num_refs=7)
    return tmp_path / "data"


def test_report_recomputes_from_per_sample_results(refcoco_root, tmp_path):
    output = tmp_path / "out" / "report.json"
    report = run_benchmark("refcoco", refcoco_root, FakePredictor(), output, batch_size=3, progress=False)

    assert json.loads(output.read_text()) == report
    header, records = read_jsonl(per_sample_results_path(output))
    assert header == {"benchmark": "refcoco", "split": "val", "model": "", "limit": None}
    assert [record["index"] for record in records] == list(range(14)) and report["num_samples"] == 14
    assert report["metrics"] == aggregate_referring([record["statistics"] for record in records])
    assert set(report["definitions"]) == {"cIoU", "gIoU", "precision@k"}

    # Independently: the metric on the predictions themselves gives the same numbers.
    dataset = read_refcoco(refcoco_root, "refcoco", "val")
    predictions = [shifted_prediction(row) for row in dataset]
    references = [decode_rle(row["mask_rle"]) for row in dataset]
    assert report["metrics"] == compute_referring(predictions, references)
    assert 0 < report["metrics"]["cIoU"] < 1


def test_resume_after_interruption_gives_the_same_report(refcoco_root, tmp_path):
    uninterrupted = run_benchmark(
        "refcoco", refcoco_root, FakePredictor(), tmp_path / "a" / "report.json", batch_size=2, progress=False
    )

    output = tmp_path / "b" / "report.json"
    with pytest.raises(KeyboardInterrupt):
        run_benchmark("refcoco", refcoco_root, FakePredictor(fail_after_calls=2), output, batch_size=2, progress=False)
    results_path = per_sample_results_path(output)
    _, records = read_jsonl(results_path)
    assert len(records) == 4 and not output.exists()
    with open(results_path, "a") as file:
        file.write('{"index": 4, "id": "ref_id=2/sent')  # a line torn by the kill

    resumed_predictor = FakePredictor()
    resumed = run_benchmark("refcoco", refcoco_root, resumed_predictor, output, batch_size=2, progress=False)
    assert resumed_predictor.seen == list(range(4, 14))  # only the samples without a result
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert read_jsonl(results_path)[1] == read_jsonl(per_sample_results_path(tmp_path / "a" / "report.json"))[1]


def test_resume_refuses_results_of_another_evaluation(refcoco_root, tmp_path):
    output = tmp_path / "report.json"
    run_benchmark("refcoco", refcoco_root, FakePredictor(), output, limit=3, progress=False)
    with pytest.raises(ValueError, match=r"report.samples.jsonl holds results of another evaluation"):
        run_benchmark("refcoco", refcoco_root, FakePredictor(), output, limit=5, progress=False)


def test_limit(refcoco_root, tmp_path):
    predictor = FakePredictor()
    report = run_benchmark(
        "refcoco", refcoco_root, predictor, tmp_path / "report.json", limit=3, batch_size=2, progress=False
    )
    assert report["num_samples"] == 3 and predictor.seen == [0, 1, 2]


def test_semantic_and_panoptic_benchmarks_recompute(tmp_path):
    write_ade(tmp_path / "ade")
    id_map = write_coco_panoptic(tmp_path / "coco")

    def predict_semantic(task, rows, context):
        assert task == "semantic" and len(context["class_names"]) == 150
        return [np.minimum(np.asarray(row["label"]), 149) for row in rows]  # right everywhere but on ignored pixels

    report = run_benchmark("ade20k", tmp_path / "ade", predict_semantic, tmp_path / "ade.json", progress=False)
    assert report["metrics"]["mIoU"] == 1.0 and report["metrics"]["per_category_iou"][2] is None
    _, records = read_jsonl(per_sample_results_path(tmp_path / "ade.json"))
    assert aggregate_records("semantic", records, {"num_labels": 150})["mIoU"] == report["metrics"]["mIoU"]

    def predict_panoptic(task, rows, context):
        assert task == "panoptic" and context["class_names"] == ["person", "sky"]
        prediction = np.where(id_map == 70000, 0, id_map)  # the crowd region left void
        return [(prediction, [{"id": 300, "category_id": 1}, {"id": 5, "category_id": 1}]) for _ in rows]

    report = run_benchmark("coco_panoptic", tmp_path / "coco", predict_panoptic, tmp_path / "pq.json", progress=False)
    # person: 300 matched (TP, IoU 1); sky: 5 predicted as person -> person FP (not on void / person crowd), sky FN.
    assert report["metrics"]["PQ_th"] == pytest.approx(1 / 1.5) and report["metrics"]["PQ_st"] == 0.0


def test_coco_instance_benchmark_equals_cocoeval_on_the_annotation_file(tmp_path):
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotation_file = write_coco_instances(tmp_path / "coco")
    person = COCO(str(annotation_file)).annToMask(COCO(str(annotation_file)).loadAnns([1])[0]).astype(bool)
    predictions = {  # image id -> instances: the person found, a misplaced dog, a person where there is none
        1: [
            {"mask": person, "score": 0.9, "category_id": 1},
            {"mask": square_mask(8, 10, 4, 0, 3), "score": 0.3, "category_id": 18},
        ],
        7: [{"mask": square_mask(8, 10, 2, 2, 4), "score": 0.8, "category_id": 1}],
    }

    def predict_instances(task, rows, context):
        assert task == "instance" and context["class_names"] == ["person", "dog"]
        return [predictions[row["image_id"]] for row in rows]

    output = tmp_path / "ap.json"
    report = run_benchmark("coco_instance", tmp_path / "coco", predict_instances, output, batch_size=2, progress=False)
    _, records = read_jsonl(per_sample_results_path(output))
    recomputed = aggregate_records("instance", records, {})
    assert {k: None if np.isnan(v) else v for k, v in recomputed.items()} == report["metrics"]  # JSON: NaN -> null

    # pycocotools on the annotation file itself, the predictions given as results
    ground_truth = COCO(str(annotation_file))
    results = [
        {"image_id": image_id, "category_id": p["category_id"], "score": p["score"],
         "segmentation": {**encode_rle(p["mask"]), "counts": encode_rle(p["mask"])["counts"].encode()}}
        for image_id, instances in predictions.items() for p in instances
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes(results), iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    expected = dict(zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), evaluator.stats[:6]))
    for name, value in expected.items():
        assert report["metrics"][name] == (pytest.approx(value) if value >= 0 else None)
    assert 0 < report["metrics"]["AP"] < 1


def test_coco_instance_with_the_shipped_shapes_model(tmp_path):
    """The model path of the instance benchmark: held-out shapes scenes written in COCO's layout, scored end to end."""
    pytest.importorskip("torch")
    from conftest import REPO_ROOT
    from hyperseg.evaluation.runner import HyperSegPredictor
    from hyperseg.training.synthetic import SHAPES_CLASS_NAMES, synthetic_dataset
    from layouts import write_json

    image_dir = tmp_path / "coco" / "val2017"
    image_dir.mkdir(parents=True)
    images, annotations = [], []
    for row in synthetic_dataset(6, seed=1, tasks=("instance",)):
        image_id = row["index"] + 1
        row["image"].save(image_dir / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": 128, "width": 128})
        segmentation = np.asarray(row["segmentation"])
        for segment in (segment for segment in row["segments"] if segment["isthing"]):
            mask = segmentation == segment["id"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": segment["category_id"] + 1,
                    "segmentation": encode_rle(mask),
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(SHAPES_CLASS_NAMES)]
    write_json(
        tmp_path / "coco" / "annotations" / "instances_val2017.json",
        {"images": images, "annotations": annotations, "categories": categories},
    )

    predictor = HyperSegPredictor(str(REPO_ROOT / "checkpoints" / "hyperseg-tiny-shapes"), device="cpu")
    report = run_benchmark("coco_instance", tmp_path / "coco", predictor, tmp_path / "ap.json", progress=False)
    # the model finds every shape (its panoptic PQ is 0.92): 1.0 AP50 and 0.81 AP on these scenes when recorded
    assert report["num_samples"] == 6 and report["metrics"]["AP50"] > 0.9 and report["metrics"]["AP"] > 0.6


def test_command_line_with_a_tiny_model(refcoco_root, tmp_path, capsys):
    """The real model path: a seeded random tiny checkpoint through the public processor / model API."""
    torch = pytest.importorskip("torch")
    from conftest import REPO_ROOT
    from hyperseg.evaluation.__main__ import main
    from hyperseg.modeling import HyperSegForUniversalSegmentation
    from hyperseg.processing import HyperSegProcessor

    tiny = REPO_ROOT / "checkpoints" / "hyperseg-tiny-random"
    torch.manual_seed(0)
    model = HyperSegForUniversalSegmentation(HyperSegForUniversalSegmentation.config_class.from_pretrained(tiny))
    model.save_pretrained(tmp_path / "model")
    HyperSegProcessor.from_pretrained(tiny).save_pretrained(tmp_path / "model")

    output = tmp_path / "report.json"
    arguments = [
        "--benchmark",
        "refcoco",
        "--split",
        "val",
        "--data-root",
        str(refcoco_root),
        "--model",
        str(tmp_path / "model"),
        "--output",
        str(output),
        "--limit",
        "5",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    main(arguments)

    report = json.loads(output.read_text())
    _, records = read_jsonl(per_sample_results_path(output))
    assert report["num_samples"] == len(records) == 5
    assert report["metrics"] == aggregate_referring([record["statistics"] for record in records])
    areas = [record["statistics"]["prediction_area"] for record in records]
    assert all(0 <= area for area in areas)
    printed = capsys.readouterr().out
    assert "refcoco val (5 samples)" in printed and "cIoU" in printed
