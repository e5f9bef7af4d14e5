"""RefCOCO / RefCOCO+ / RefCOCOg and gRefCOCO readers (refer-toolkit layout).

Layout (as used by the refer / grefer toolkits, LAVT and ReLA):

```
<data_root>/<dataset>/refs(<split_by>).p      # RefCOCO/+/g: a pickle of ref dicts
<data_root>/grefcoco/grefs(unc).json          # gRefCOCO: the same dicts as JSON, `ann_id` a list ([-1] = no target)
<data_root>/<dataset>/instances.json          # COCO-style images / annotations of the referred objects
<data_root>/images/train2014/COCO_train2014_*.jpg
```

One sample per (ref, sentence), as the standard evaluation iterates. Ground-truth masks are decoded with
pycocotools (the refer toolkit's `getMask`); the released HyperSeg script rasterises polygons with `cv2.fillPoly` on
integer-truncated vertices instead, which can differ on boundary pixels.
"""

from pathlib import Path

import datasets
import numpy as np

from ..masks import decode_rle, encode_rle, segmentation_to_rle
from .utils import (
    COCO_IMAGE_FEATURES,
    RLE_FEATURE,
    drop_samples_with_missing_files,
    read_json,
    read_refer_pickle,
    require_file,
    to_dataset,
)

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "grefcoco": "unc"}
NO_TARGET_ANNOTATION = -1

_FEATURES = {
    **COCO_IMAGE_FEATURES,
    "ref_id": datasets.Value("int64"),
    "sentence_id": datasets.Value("int64"),
    "sentence": datasets.Value("string"),
    "raw_sentence": datasets.Value("string"),
    "annotation_ids": datasets.List(datasets.Value("int64")),
    "no_target": datasets.Value("bool"),
    "mask_rle": RLE_FEATURE,
}


def read_refcoco(
    data_root,
    dataset: str = "refcoco",
    split: str = "val",
    split_by: str | None = None,
    image_dir=None,
    skip_missing: bool = False,
) -> datasets.Dataset:
    """Reads a RefCOCO-family split as a `datasets.Dataset`, one row per referring sentence.

    Args:
        data_root: folder holding `<dataset>/` and `images/train2014/`.
        dataset: "refcoco", "refcoco+", "refcocog" or "grefcoco".
        split: split name as stored in the refs ("val", "testA", "testB", "test", ...).
        split_by: annotation partition ("unc", "umd", "google"); defaults to `DEFAULT_SPLIT_BY[dataset]`.
        image_dir: folder of the COCO train2014 images; defaults to `<data_root>/images/train2014`.
        skip_missing: drop (and count in a warning) samples whose image file is missing instead of raising.

    Returns:
        Columns `image` (lazily decoded), `image_id`, `file_name`, `height`, `width`, `ref_id`, `sentence_id`,
        `sentence`, `raw_sentence`, `annotation_ids`, `no_target` and `mask_rle` (the union of the referred objects'
        masks; for gRefCOCO crowd annotations are left out, as grefer does, and a no-target sample is all-empty).
    """
    if dataset not in DEFAULT_SPLIT_BY:
        raise ValueError(f"unknown refer dataset {dataset!r}; expected one of {sorted(DEFAULT_SPLIT_BY)}")
    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    dataset_dir = Path(data_root) / dataset
    image_dir = Path(image_dir) if image_dir is not None else Path(data_root) / "images" / "train2014"
    refs = _read_refs(dataset_dir, dataset, split_by)
    instances_path = require_file(dataset_dir / "instances.json", f"{dataset} instances file")
    instances = read_json(instances_path, f"{dataset} instances file")
    images = {image["id"]: image for image in instances["images"]}
    annotations = {annotation["id"]: annotation for annotation in instances["annotations"]}

    split_refs = [ref for ref in refs if ref["split"] == split]
    if not split_refs:
        available = sorted({ref["split"] for ref in refs})
        raise ValueError(f"{dataset} ({split_by}) has no ref in split {split!r}; available splits: {available}")

    rows = []
    for ref in split_refs:
        if ref["image_id"] not in images:
            raise ValueError(
                f"{dataset}: ref {ref['ref_id']} refers to image {ref['image_id']}, absent from {instances_path}"
            )
        image = images[ref["image_id"]]
        annotation_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        mask_rle = _reference_mask(
            annotation_ids, annotations, image, ref["ref_id"], instances_path, skip_crowd=dataset == "grefcoco"
        )
        for sentence in ref["sentences"]:
            rows.append(
                {
                    "image": str(image_dir / image["file_name"]),
                    "image_id": image["id"],
                    "file_name": image["file_name"],
                    "height": image["height"],
                    "width": image["width"],
                    "ref_id": ref["ref_id"],
                    "sentence_id": sentence["sent_id"],
                    "sentence": sentence["sent"],
                    "raw_sentence": sentence.get("raw", sentence["sent"]),
                    "annotation_ids": annotation_ids,
                    "no_target": annotation_ids == [NO_TARGET_ANNOTATION],
                    "mask_rle": mask_rle,
                }
            )
    rows = drop_samples_with_missing_files(
        rows, file_keys=("image",), dataset_name=f"{dataset} {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def read_grefcoco(data_root, split: str = "val", image_dir=None, skip_missing: bool = False) -> datasets.Dataset:
    """Reads a gRefCOCO split; see `read_refcoco` (rows with `no_target` True have an all-empty mask)."""
    return read_refcoco(data_root, "grefcoco", split, image_dir=image_dir, skip_missing=skip_missing)


def _read_refs(dataset_dir: Path, dataset: str, split_by: str) -> list:
    stem = f"grefs({split_by})" if dataset == "grefcoco" else f"refs({split_by})"
    json_path, pickle_path = dataset_dir / f"{stem}.json", dataset_dir / f"{stem}.p"
    if json_path.exists():
        return read_json(json_path, f"{dataset} refs file")
    if pickle_path.exists():
        return read_refer_pickle(pickle_path, f"{dataset} refs file")
    raise FileNotFoundError(f"{dataset} refs file not found: neither {pickle_path} nor {json_path} exists")


def _reference_mask(
    annotation_ids: list, annotations: dict, image: dict, ref_id, instances_path, *, skip_crowd: bool
) -> dict:
    height, width = image["height"], image["width"]
    mask = np.zeros((height, width), dtype=bool)
    for annotation_id in annotation_ids:
        if annotation_id == NO_TARGET_ANNOTATION:
            continue
        if annotation_id not in annotations:
            raise ValueError(f"ref {ref_id} refers to annotation {annotation_id}, absent from {instances_path}")
        annotation = annotations[annotation_id]
        if skip_crowd and annotation.get("iscrowd", 0):
            continue
        mask |= decode_rle(segmentation_to_rle(annotation["segmentation"], height, width))
    return encode_rle(mask)
