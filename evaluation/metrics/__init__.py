"""Pure metric functions (numpy / pycocotools, no model dependency).

Each module reduces a sample to a small JSON-serialisable record (`*_sample_statistics`) and computes the dataset
numbers from a list of records (`aggregate_*`); `compute_*` chains the two for in-memory inputs.
"""

from .instance import aggregate_instance, compute_instance, instance_sample_statistics
from .panoptic import aggregate_panoptic, compute_panoptic, panoptic_sample_statistics
from .referring import (
    aggregate_generalized_referring,
    aggregate_referring,
    compute_generalized_referring,
    compute_referring,
    referring_sample_statistics,
)
from .semantic import aggregate_semantic, compute_semantic, semantic_sample_statistics
from .video import (
    aggregate_revos,
    aggregate_video,
    boundary_f_measure,
    compute_video,
    davis_statistics,
    region_similarity,
    revos_sample_statistics,
    video_sample_statistics,
)

__all__ = [
    "aggregate_generalized_referring",
    "aggregate_instance",
    "aggregate_panoptic",
    "aggregate_referring",
    "aggregate_revos",
    "aggregate_semantic",
    "aggregate_video",
    "boundary_f_measure",
    "compute_generalized_referring",
    "compute_instance",
    "compute_panoptic",
    "compute_referring",
    "compute_semantic",
    "compute_video",
    "davis_statistics",
    "instance_sample_statistics",
    "panoptic_sample_statistics",
    "referring_sample_statistics",
    "region_similarity",
    "revos_sample_statistics",
    "semantic_sample_statistics",
    "video_sample_statistics",
]
