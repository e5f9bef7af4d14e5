"""`evaluate` module: generalized referring segmentation (gRefCOCO) cIoU, gIoU, N-acc and T-acc."""

import datasets
import evaluate
import hyperseg.evaluation.masks as masks
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.referring as referring

_DESCRIPTION = "Generalized referring segmentation metrics (gRefCOCO, ReLA definitions): " + "; ".join(
    f"{name}: {definition}" for name, definition in referring.GENERALIZED_REFERRING_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of boolean `(height, width)` arrays or tensors): one predicted mask per sample; an all-False
        mask predicts "no target".
    references (`list` of boolean `(height, width)` arrays or tensors): the ground-truth masks; an all-False mask is a
        no-target sample.
Returns:
    `dict` with "cIoU", "gIoU", "N-acc", "T-acc", fractions in [0, 1] (N-acc / T-acc are NaN without no-target /
    target samples).
"""
_CITATION = """@inproceedings{liu2023gres, title={GRES: Generalized Referring Expression Segmentation},
author={Liu, Chang and Ding, Henghui and Jiang, Xudong}, booktitle={CVPR}, year={2023}}"""


class GeneralizedReferring(base.SegmentationMetric):
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
        return referring.compute_generalized_referring(predictions, references)
