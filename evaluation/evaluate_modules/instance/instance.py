"""`evaluate` module: COCO mask AP (and YouTube-VIS video AP) computed by pycocotools' COCOeval."""

import datasets
import evaluate
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.instance as instance

_DESCRIPTION = "Instance segmentation AP by pycocotools' COCOeval on RLE masks: " + "; ".join(
    f"{name}: {definition}" for name, definition in instance.INSTANCE_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `{"mask", "score", "category_id"}`): per image, the predicted instances; a mask is
        a boolean `(height, width)` array (or `(frames, height, width)` for a video instance).
    references (`list` of `list` of `{"mask", "category_id", "iscrowd"}`): per image, the ground-truth instances.
Returns:
    `dict` with "AP", "AP50", "AP75", "APs", "APm", "APl", fractions in [0, 1] (NaN where COCOeval reports -1).
"""
_CITATION = """@inproceedings{lin2014microsoft, title={Microsoft COCO: Common Objects in Context}, author={Lin,
Tsung-Yi and others}, booktitle={ECCV}, year={2014}}"""


def _instances(extra_keys):
    rle = {"size": datasets.List(datasets.Value("int64")), "counts": datasets.Value("string")}
    record = {"rle": rle, "area": datasets.Value("float64"), "frames": datasets.Value("int64")}
    record.update(extra_keys)
    return datasets.List(record)


class Instance(base.SegmentationMetric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": _instances(
                        {"score": datasets.Value("float64"), "category_id": datasets.Value("int64")}
                    ),
                    "references": _instances(
                        {"category_id": datasets.Value("int64"), "iscrowd": datasets.Value("int64")}
                    ),
                }
            ),
        )

    def _encode_pair(self, prediction, reference):
        records = instance.instance_sample_statistics(prediction, reference, index=self._next_index())
        return records["predictions"], records["references"]

    def _compute(self, predictions, references):
        records = [
            {"predictions": prediction, "references": reference}
            for prediction, reference in zip(predictions, references)
        ]
        return instance.aggregate_instance(records)
