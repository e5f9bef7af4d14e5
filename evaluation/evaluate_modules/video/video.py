"""`evaluate` module: DAVIS-2017 video object segmentation J, F, J&F, recall and decay."""

import datasets
import evaluate
import hyperseg.evaluation.masks as masks
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.video as video

_DESCRIPTION = "DAVIS-2017 toolkit metrics: " + "; ".join(
    f"{name}: {definition}" for name, definition in video.VIDEO_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of boolean `(frames, height, width)` arrays or tensors): one predicted track per object.
    references (`list` of boolean `(frames, height, width)` arrays or tensors): the ground-truth tracks.
Returns:
    `dict` with "J", "F", "J&F", "J_recall", "F_recall", "J_decay", "F_decay" (decays are differences of fractions,
    in [-1, 1]).
"""
_CITATION = """@article{pont2017davis, title={The 2017 DAVIS Challenge on Video Object Segmentation},
author={Pont-Tuset, Jordi and Perazzi, Federico and Caelles, Sergi and Arbel{\\'a}ez, Pablo and Sorkine-Hornung,
Alexander and Van Gool, Luc}, journal={arXiv:1704.00675}, year={2017}}"""


class Video(base.SegmentationMetric):
    def _info(self):
        track = datasets.List(datasets.List(datasets.List(datasets.Value("bool"))))
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": track, "references": track}),
        )

    def _encode_prediction(self, prediction, *, index):
        return masks.as_binary_mask(prediction, description=f"sample {index} (prediction)", ndim=3)

    def _encode_reference(self, reference, *, index):
        return masks.as_binary_mask(reference, description=f"sample {index} (reference)", ndim=3)

    def _compute(self, predictions, references):
        return video.compute_video(predictions, references)
