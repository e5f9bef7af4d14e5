"""`evaluate` module: referring segmentation cIoU, gIoU and precision@k (RefCOCO/+/g, ReasonSeg)."""

import datasets
import evaluate
import hyperseg.evaluation.masks as masks
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.referring as referring

_DESCRIPTION = "Referring segmentation metrics as in the HyperSeg / InstructSeg evaluation: " + "; ".join(
    f"{name}: {definition}" for name, definition in referring.REFERRING_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of boolean `(height, width)` arrays or tensors): one predicted mask per sample.
    references (`list` of boolean `(height, width)` arrays or tensors): the ground-truth masks.
Returns:
    `dict` with "cIoU", "gIoU", "precision@0.5", ..., "precision@0.9", fractions in [0, 1].
Example:
    >>> metric = load_metric("referring")
    >>> metric.compute(predictions=[mask], references=[mask])["cIoU"]
"""
_CITATION = """@article{wei2024hyperseg,
title={HyperSeg: Towards Universal Visual Segmentation with Large Language Model},
author={Wei, Cong and Zhong, Yujie and Tan, Haoxian and Liu, Yong and Zhao, Zheng and Hu, Jie and Yang, Yujiu},
journal={arXiv preprint arXiv:2411.17606}, year={2024}}"""


class Referring(base.SegmentationMetric):
    def _info(self):
        mask = datasets.List(datasets.List(datasets.Value("bool")))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": mask, "references": mask}),
        )

    def _encode_prediction(self, prediction, *, index):
        return masks.as_binary_mask(prediction, description=f"sample {index} (prediction)")

    def _encode_reference(self, reference, *, index):
        return masks.as_binary_mask(reference, description=f"sample {index} (reference)")

    def _compute(self, predictions, references):
        return referring.compute_referring(predictions, references)
