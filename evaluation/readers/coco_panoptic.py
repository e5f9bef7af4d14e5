"""COCO panoptic reader (detectron2 layout).

```
<data_root>/annotations/panoptic_<split>2017.json
<data_root>/panoptic_<split>2017/<image name>.png     # segment ids encoded as R + 256 G + 256^2 B
<data_root>/<split>2017/<image name>.jpg
```
"""

from pathlib import Path

import datasets
import numpy as np

from ..masks import rgb_to_id
from .utils import COCO_IMAGE_FEATURES, drop_samples_with_missing_files, read_json, to_dataset

_FEATURES = {
    **COCO_IMAGE_FEATURES,
    "panoptic": datasets.Image(),
    "segments_info": datasets.List(
        {
            "id": datasets.Value("int64"),
            "category_id": datasets.Value("int64"),
            "iscrowd": datasets.Value("int64"),
            "area": datasets.Value("int64"),
        }
    ),
}


def _annotation_path(data_root, split: str) -> Path:
    return Path(data_root) / "annotations" / f"panoptic_{split}2017.json"


def read_coco_panoptic(data_root, split: str = "val", skip_missing: bool = False) -> datasets.Dataset:
    """Reads COCO panoptic `split` ("train" / "val"), one row per annotated image.

    Returns:
        Columns `image` and `panoptic` (the PNG of segment colours; both decoded lazily; turn the latter into ids with
        `panoptic_id_map`), `image_id`, `file_name`, `height`, `width`, `segments_info`.

    Raises:
        FileNotFoundError: the JSON, or (unless `skip_missing`) an image or PNG it refers to, does not exist.
        ValueError: an annotation refers to an image id absent from the JSON's `images`.
    """
    annotation_path = _annotation_path(data_root, split)
    annotations = read_json(annotation_path, "COCO panoptic annotation file")
    images = {image["id"]: image for image in annotations["images"]}
    png_dir = Path(data_root) / f"panoptic_{split}2017"
    image_dir = Path(data_root) / f"{split}2017"
    rows = []
    for annotation in annotations["annotations"]:
        if annotation["image_id"] not in images:
            raise ValueError(
                f"{annotation_path}: annotation {annotation['file_name']} refers to unknown image id "
                f"{annotation['image_id']}"
            )
        image = images[annotation["image_id"]]
        rows.append(
            {
                "image": str(image_dir / image["file_name"]),
                "panoptic": str(png_dir / annotation["file_name"]),
                "image_id": image["id"],
                "file_name": image["file_name"],
                "height": image["height"],
                "width": image["width"],
                "segments_info": [
                    {
                        "id": segment["id"],
                        "category_id": segment["category_id"],
                        "iscrowd": segment.get("iscrowd", 0),
                        "area": segment.get("area", 0),
                    }
                    for segment in annotation["segments_info"]
                ],
            }
        )
    rows = drop_samples_with_missing_files(
        rows, file_keys=("image", "panoptic"), dataset_name=f"COCO panoptic {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def coco_panoptic_categories(data_root, split: str = "val") -> list:
    """The `categories` list (`{"id", "name", "isthing", ...}`) of the COCO panoptic JSON."""
    return read_json(_annotation_path(data_root, split), "COCO panoptic annotation file")["categories"]


def panoptic_id_map(panoptic_png) -> np.ndarray:
    """Segment-id map of a decoded panoptic PNG (PIL image or `(h, w, 3)` array); 0 is void."""
    return rgb_to_id(np.asarray(panoptic_png.convert("RGB") if hasattr(panoptic_png, "convert") else panoptic_png))
