"""Dataset readers: standard on-disk benchmark layouts to `datasets.Dataset` objects with lazily decoded images.

Images stay where they are: image columns hold file paths and decode on access (`datasets.Image()`). Masks stored in
annotation files are carried as compressed COCO RLE (`{"size", "counts"}`); decode them with
`hyperseg.evaluation.masks.decode_rle`.
"""

from .coco_instances import coco_instance_categories, read_coco_instances
from .coco_panoptic import coco_panoptic_categories, panoptic_id_map, read_coco_panoptic
from .davis import read_davis
from .reasonseg import read_reasonseg, reasonseg_mask
from .refcoco import read_grefcoco, read_refcoco
from .referring_video import read_referring_video
from .revos import read_revos, revos_masks
from .semantic import SEMANTIC_BENCHMARKS, read_semantic_segmentation, semantic_class_names
from .youtube_vis import read_youtube_vis, youtube_vis_categories

__all__ = [
    "SEMANTIC_BENCHMARKS",
    "coco_instance_categories",
    "coco_panoptic_categories",
    "panoptic_id_map",
    "read_coco_instances",
    "read_coco_panoptic",
    "read_davis",
    "read_grefcoco",
    "read_reasonseg",
    "read_refcoco",
    "read_referring_video",
    "read_revos",
    "read_semantic_segmentation",
    "read_youtube_vis",
    "reasonseg_mask",
    "revos_masks",
    "semantic_class_names",
    "youtube_vis_categories",
]
