"""ReasonSeg reader (LISA layout: `<data_root>/<split>/<name>.jpg` next to `<name>.json`).

Each JSON holds `"text"` (the queries; the first one is evaluated, as in LISA and HyperSeg), `"is_sentence"` and
`"shapes"` (labelme polygons). The mask is rasterised like the released HyperSeg loader (`get_mask_from_json`):
polygons labelled "flag" are dropped, the others are drawn from the largest to the smallest, "target" polygons with 1
and polygons whose label contains "ignore" with 0 (HyperSeg draws ignore regions as background, where LISA uses 255;
spec O10).
"""

import json
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from ..masks import draw_polygon, encode_rle
from .utils import RLE_FEATURE, require_file, to_dataset

_FEATURES = {
    "image": datasets.Image(),
    "file_name": datasets.Value("string"),
    "height": datasets.Value("int64"),
    "width": datasets.Value("int64"),
    "sentence": datasets.Value("string"),
    "is_sentence": datasets.Value("bool"),
    "mask_rle": RLE_FEATURE,
}


def read_reasonseg(data_root, split: str = "val") -> datasets.Dataset:
    """Reads a ReasonSeg split (one row per image).

    Args:
        data_root: folder holding `<split>/`.
        split: "train", "val" or "test".

    Returns:
        Columns `image` (lazily decoded), `file_name`, `height`, `width`, `sentence`, `is_sentence`, `mask_rle`.

    Raises:
        FileNotFoundError: the split folder, or the JSON annotation of an image, does not exist.
    """
    split_dir = require_file(Path(data_root) / split, "ReasonSeg split folder")
    image_paths = sorted(split_dir.glob("*.jpg"))
    if not image_paths:
        raise FileNotFoundError(f"ReasonSeg split folder {split_dir} holds no .jpg image")
    rows = []
    for image_path in image_paths:
        annotation_path = require_file(image_path.with_suffix(".json"), f"ReasonSeg annotation of {image_path.name}")
        annotation = _read_annotation(annotation_path)
        with Image.open(image_path) as image:
            width, height = image.size
        rows.append(
            {
                "image": str(image_path),
                "file_name": image_path.name,
                "height": height,
                "width": width,
                "sentence": annotation["text"][0].strip(),
                "is_sentence": bool(annotation["is_sentence"]),
                "mask_rle": encode_rle(reasonseg_mask(annotation["shapes"], height, width)),
            }
        )
    return to_dataset(rows, _FEATURES)


def _read_annotation(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        # Some ReasonSeg files are cp1252-encoded; the released loader falls back to that encoding too.
        text = path.read_text(encoding="cp1252")
    try:
        annotation = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"ReasonSeg annotation {path} is not valid JSON: {error}") from None
    missing = [key for key in ("text", "is_sentence", "shapes") if key not in annotation]
    if missing or not annotation.get("text"):
        raise ValueError(f"ReasonSeg annotation {path} lacks {missing or ['a query in text']}")
    return annotation


def reasonseg_mask(shapes: list, height: int, width: int) -> np.ndarray:
    """Boolean target mask of ReasonSeg `shapes` (see the module docstring for the drawing rules)."""
    polygons = [shape for shape in shapes if shape["label"].lower() != "flag"]
    areas = []
    for shape in polygons:
        canvas = np.zeros((height, width), dtype=np.uint8)
        draw_polygon(canvas, shape["points"], 1)
        areas.append(int(canvas.sum()))
    mask = np.zeros((height, width), dtype=np.uint8)
    for position in np.argsort(areas)[::-1]:
        shape = polygons[position]
        draw_polygon(mask, shape["points"], 0 if "ignore" in shape["label"].lower() else 1)
    return mask.astype(bool)
