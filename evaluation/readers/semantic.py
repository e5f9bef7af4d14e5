"""Semantic segmentation readers: ADE20K-150, PASCAL-Context-59 and PASCAL VOC-20 (detectron2-prepared layouts).

The label PNGs are those written by the Mask2Former / detectron2 `prepare_*` scripts: one 8-bit class index per
pixel, in `[0, num_labels)`, and 255 for ignored pixels (ADE20K "other", PASCAL-Context's unlabeled pixels, VOC
background and boundaries). A sample is a label PNG; its image is the file with the same stem in the image folder.
"""

from dataclasses import dataclass
from pathlib import Path

import datasets

from .utils import drop_samples_with_missing_files, require_file, to_dataset

IGNORE_INDEX = 255
PASCAL_VOC_20_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
PASCAL_CONTEXT_59_CLASSES = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip


@dataclass(frozen=True)
class SemanticBenchmark:
    """Where a semantic benchmark lives under its data root, and its label space.

    `class_names` is None when the names are read from the dataset (ADE20K's `objectInfo150.txt`).
    """

    image_dir: str
    label_dir: str
    num_labels: int
    class_names: tuple | None = None
    class_names_file: str | None = None


SEMANTIC_BENCHMARKS = {
    "ade20k": SemanticBenchmark(
        image_dir="ADEChallengeData2016/images/{split}",
        label_dir="ADEChallengeData2016/annotations_detectron2/{split}",
        num_labels=150,
        class_names_file="ADEChallengeData2016/objectInfo150.txt",
    ),
    "pascal_context_59": SemanticBenchmark(
        image_dir="VOCdevkit/VOC2010/JPEGImages",
        label_dir="VOCdevkit/VOC2010/annotations_detectron2/pc59_{split}",
        num_labels=59,
        class_names=PASCAL_CONTEXT_59_CLASSES,
    ),
    "pascal_voc_20": SemanticBenchmark(
        image_dir="VOCdevkit/VOC2012/JPEGImages",
        label_dir="VOCdevkit/VOC2012/annotations_detectron2/{split}",
        num_labels=20,
        class_names=PASCAL_VOC_20_CLASSES,
    ),
}
DEFAULT_SEMANTIC_SPLIT = {"ade20k": "validation", "pascal_context_59": "val", "pascal_voc_20": "val"}

_FEATURES = {
    "image": datasets.Image(),
    "label": datasets.Image(),
    "file_name": datasets.Value("string"),
}


def read_semantic_segmentation(
    benchmark: str, data_root, split: str | None = None, skip_missing: bool = False
) -> datasets.Dataset:
    """Reads one of `SEMANTIC_BENCHMARKS` as a `datasets.Dataset` with lazily decoded `image` and `label` columns.

    Args:
        benchmark: "ade20k", "pascal_context_59" or "pascal_voc_20".
        data_root: folder holding the layout of `SEMANTIC_BENCHMARKS[benchmark]`.
        split: defaults to `DEFAULT_SEMANTIC_SPLIT[benchmark]`.
        skip_missing: drop (and count in a warning) label files without an image instead of raising.

    Decode a label with `np.asarray(sample["label"])`: the class index of each pixel, 255 = ignore.
    """
    if benchmark not in SEMANTIC_BENCHMARKS:
        raise ValueError(f"unknown semantic benchmark {benchmark!r}; expected one of {sorted(SEMANTIC_BENCHMARKS)}")
    spec = SEMANTIC_BENCHMARKS[benchmark]
    split = split or DEFAULT_SEMANTIC_SPLIT[benchmark]
    label_dir = require_file(Path(data_root) / spec.label_dir.format(split=split), f"{benchmark} label folder")
    image_dir = Path(data_root) / spec.image_dir.format(split=split)
    label_paths = sorted(label_dir.glob("*.png"))
    if not label_paths:
        raise FileNotFoundError(f"{benchmark} label folder {label_dir} holds no .png file")
    rows = [
        {"image": str(image_dir / f"{path.stem}.jpg"), "label": str(path), "file_name": f"{path.stem}.jpg"}
        for path in label_paths
    ]
    rows = drop_samples_with_missing_files(
        rows, file_keys=("image",), dataset_name=f"{benchmark} {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def semantic_class_names(benchmark: str, data_root) -> tuple:
    """Class names of a semantic benchmark, index = label value (ADE20K: from `objectInfo150.txt`)."""
    spec = SEMANTIC_BENCHMARKS[benchmark]
    if spec.class_names is not None:
        return spec.class_names
    path = require_file(Path(data_root) / spec.class_names_file, f"{benchmark} class list")
    lines = [
        line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip()
    ]
    names = tuple(columns[-1].replace(";", ", ") for columns in lines)
    if len(names) != spec.num_labels:
        raise ValueError(f"{path} lists {len(names)} classes, expected {spec.num_labels}")
    return names
