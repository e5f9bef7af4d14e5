"""`evaluate` module: semantic segmentation mIoU, frequency-weighted IoU and pixel accuracy (as detectron2)."""

import datasets
import evaluate
import hyperseg.evaluation.masks as masks
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.semantic as semantic
import numpy as np

_DESCRIPTION = "Semantic segmentation metrics as detectron2's SemSegEvaluator computes them: " + "; ".join(
    f"{name}: {definition}" for name, definition in semantic.SEMANTIC_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of integer `(height, width)` arrays or tensors): predicted class index per pixel, in
        [0, num_labels).
    references (`list` of integer `(height, width)` arrays or tensors): ground-truth class per pixel, in
        [0, num_labels) or `ignore_index`.
    num_labels (`int`): number of classes.
    ignore_index (`int`, defaults to 255): reference label of pixels left out of every count.
Returns:
    `dict` with "mIoU", "fwIoU", "pixel_accuracy" (fractions in [0, 1]) and "per_category_iou" (a list of
    `num_labels` fractions, NaN for classes without reference pixels).
"""
_CITATION = """@misc{wu2019detectron2, author={Yuxin Wu and Alexander Kirillov and Francisco Massa and Wan-Yen Lo and
Ross Girshick}, title={Detectron2}, howpublished={https://github.com/facebookresearch/detectron2}, year={2019}}"""
_INT32 = np.iinfo(np.int32)


class Semantic(base.SegmentationMetric):
    def _info(self):
        label_map = datasets.List(datasets.List(datasets.Value("int32")))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": label_map, "references": label_map}),
        )

    def _encode_label_map(self, labels, description):
        labels = masks.as_label_map(labels, description=description)
        if labels.size and (labels.min() < _INT32.min or labels.max() > _INT32.max):
            raise ValueError(f"{description}: labels {labels.min()}..{labels.max()} do not fit in int32")
        return labels.astype(np.int32)

    def _encode_prediction(self, prediction, *, index):
        return self._encode_label_map(prediction, f"sample {index} (prediction)")

    def _encode_reference(self, reference, *, index):
        return self._encode_label_map(reference, f"sample {index} (reference)")

    def _compute(self, predictions, references, num_labels, ignore_index=255):
        return semantic.compute_semantic(predictions, references, num_labels=num_labels, ignore_index=ignore_index)
