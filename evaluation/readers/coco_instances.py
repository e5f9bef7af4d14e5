"""COCO instance segmentation reader (official layout).

```
<data_root>/annotations/instances_<split>2017.json
<data_root>/<split>2017/<image name>.jpg
```
"""

from pathlib import Path

import datasets

from ..masks import segmentation_to_rle
from .utils import COCO_IMAGE_FEATURES, RLE_FEATURE, drop_samples_with_missing_files, read_json, to_dataset

_FEATURES = {
    **COCO_IMAGE_FEATURES,
    "instances": datasets.List(
        {"mask_rle": RLE_FEATURE, "category_id": datasets.Value("int64"), "iscrowd": datasets.Value("int64")}
    ),
}


def _annotation_path(data_root, split: str) -> Path:
    return Path(data_root) / "annotations" / f"instances_{split}2017.json"


def read_coco_instances(data_root, split: str = "val", skip_missing: bool = False) -> datasets.Dataset:
    """Reads COCO instance segmentation `split` ("train" / "val"), one row per image of the JSON (images without
    annotations included: COCO's AP counts their false positives).

    Returns:
        Columns `image` (decoded lazily), `image_id`, `file_name`, `height`, `width` and `instances`: per annotation
        its mask as compressed RLE (`mask_rle`, polygons merged as pycocotools' `annToRLE` does), `category_id` and
        `iscrowd`.

    Raises:
        FileNotFoundError: the JSON, or (unless `skip_missing`) an image it lists, does not exist.
        ValueError: an annotation refers to an image id absent from the JSON's `images`.
    """
    annotation_path = _annotation_path(data_root, split)
    annotations = read_json(annotation_path, "COCO instances annotation file")
    images = {image["id"]: image for image in annotations["images"]}
    instances = {image_id: [] for image_id in images}
    for annotation in annotations["annotations"]:
        image = images.get(annotation["image_id"])
        if image is None:
            raise ValueError(
                f"{annotation_path}: annotation {annotation.get('id')} refers to unknown image id "
                f"{annotation['image_id']}"
            )
        instances[image["id"]].append(
            {
                "mask_rle": segmentation_to_rle(annotation["segmentation"], image["height"], image["width"]),
                "category_id": annotation["category_id"],
                "iscrowd": annotation.get("iscrowd", 0),
            }
        )
    image_dir = Path(data_root) / f"{split}2017"
    rows = [
        {
            "image": str(image_dir / image["file_name"]),
            "image_id": image["id"],
            "file_name": image["file_name"],
            "height": image["height"],
            "width": image["width"],
            "instances": instances[image["id"]],
        }
        for image in annotations["images"]
    ]
    rows = drop_samples_with_missing_files(
        rows, file_keys=("image",), dataset_name=f"COCO instances {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def coco_instance_categories(data_root, split: str = "val") -> list:
    """The `categories` list (`{"id", "name", ...}`) of the COCO instances JSON."""
    return read_json(_annotation_path(data_root, split), "COCO instances annotation file")["categories"]
