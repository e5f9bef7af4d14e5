"""`evaluate` module: panoptic quality PQ / SQ / RQ (overall, things, stuff) with panopticapi's matching rules."""

import datasets
import evaluate
import hyperseg.evaluation.masks as masks
import hyperseg.evaluation.metrics.base as base
import hyperseg.evaluation.metrics.panoptic as panoptic
import numpy as np

_DESCRIPTION = "Panoptic quality as panopticapi's pq_compute computes it: " + "; ".join(
    f"{name}: {definition}" for name, definition in panoptic.PANOPTIC_DEFINITIONS.items()
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `(segment-id map, segments_info)`): integer `(height, width)` map of segment ids (0 = void)
        and `[{"id", "category_id"}, ...]`.
    references (`list` of `(segment-id map, segments_info)`): the same with `[{"id", "category_id", "iscrowd"}, ...]`.
    categories (`list` of `{"id", "isthing"}`): the dataset categories.
Returns:
    `dict` with "PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st", fractions in [0, 1] (NaN for a
    group without any category to average).
"""
_CITATION = """@inproceedings{kirillov2019panoptic, title={Panoptic Segmentation}, author={Kirillov, Alexander and He,
Kaiming and Girshick, Ross and Rother, Carsten and Doll{\\'a}r, Piotr}, booktitle={CVPR}, year={2019}}"""
_PREDICTION_KEYS = ("id", "category_id")
_REFERENCE_KEYS = ("id", "category_id", "iscrowd")


def _features(segment_keys):
    return {
        "segmentation": datasets.List(datasets.List(datasets.Value("int32"))),
        "segments_info": datasets.List({key: datasets.Value("int64") for key in segment_keys}),
    }


def _encode(sample, segment_keys, description):
    if isinstance(sample, dict):
        sample = (sample.get("segmentation"), sample.get("segments_info"))
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise ValueError(f"{description}: expected a (segment-id map, segments_info) pair")
    id_map, segments_info = sample
    id_map = masks.as_label_map(id_map, description=description)
    if id_map.size and (id_map.min() < 0 or id_map.max() > np.iinfo(np.int32).max):
        raise ValueError(f"{description}: segment ids must lie in [0, 2**31), got {id_map.min()}..{id_map.max()}")
    segments = []
    for segment in segments_info:
        missing = [key for key in segment_keys if key not in segment]
        if missing:
            raise ValueError(f"{description}: segment {segment} lacks the keys {missing}")
        segments.append({key: int(segment[key]) for key in segment_keys})
    return {"segmentation": id_map.astype(np.int32), "segments_info": segments}


def _decode(sample):
    return np.asarray(sample["segmentation"]), sample["segments_info"]


class Panoptic(base.SegmentationMetric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": _features(_PREDICTION_KEYS), "references": _features(_REFERENCE_KEYS)}
            ),
        )

    def _encode_prediction(self, prediction, *, index):
        return _encode(prediction, _PREDICTION_KEYS, f"sample {index} (prediction)")

    def _encode_reference(self, reference, *, index):
        return _encode(reference, _REFERENCE_KEYS, f"sample {index} (reference)")

    def _compute(self, predictions, references, categories):
        return panoptic.compute_panoptic(
            [_decode(prediction) for prediction in predictions],
            [_decode(reference) for reference in references],
            categories=categories,
        )
