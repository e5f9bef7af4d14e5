"""ReVOS reader (layout of the VISA release, used by HyperSeg's `eval_revos.py`).

```
<data_root>/meta_expressions_<split>_.json    # {"videos": {video: {"frames": [...], "expressions": {id: {"exp",
                                             #   "anno_id": [...], "obj_id": [...], "type_id": 0|1|2}}}}}
<data_root>/mask_dict.json                    # {anno_id: [compressed RLE or null, one per frame]}
<data_root>/mask_dict_foreground.json         # {video: {"masks_rle": [RLE, one per frame]}}
<data_root>/JPEGImages/<video>/<frame>.jpg
```

`type_id` 0 is a referring expression, 1 a reasoning one (2: neither split, left out of the official tables).
"""

from pathlib import Path

import datasets
import numpy as np

from ..masks import decode_rle
from .utils import RLE_FEATURE, drop_samples_with_missing_files, read_json, to_dataset

_FEATURES = {
    "video": datasets.Value("string"),
    "expression_id": datasets.Value("string"),
    "expression": datasets.Value("string"),
    "type_id": datasets.Value("int64"),
    "frame_names": datasets.List(datasets.Value("string")),
    "frames": datasets.List(datasets.Image()),
    "annotation_rles": datasets.List(datasets.List(RLE_FEATURE)),
    "foreground_rles": datasets.List(RLE_FEATURE),
}


def read_revos(data_root, split: str = "valid", skip_missing: bool = False) -> datasets.Dataset:
    """Reads a ReVOS split, one row per (video, expression).

    Returns:
        Columns `video`, `expression_id`, `expression`, `type_id`, `frame_names`, `frames` (lazily decoded images),
        `annotation_rles` (per referred annotation, one RLE or None per frame) and `foreground_rles` (per frame, all
        annotated objects of the video). Decode them with `revos_masks`.

    Raises:
        FileNotFoundError: one of the JSON files, or (unless `skip_missing`) a listed frame, is missing.
        ValueError: an expression refers to an annotation id absent from `mask_dict.json`, or a mask list does not
            have one entry per frame.
    """
    root = Path(data_root)
    meta = read_json(root / f"meta_expressions_{split}_.json", "ReVOS meta_expressions file")
    mask_path = root / "mask_dict.json"
    mask_dict = read_json(mask_path, "ReVOS mask_dict file")
    foreground_path = root / "mask_dict_foreground.json"
    foreground_dict = read_json(foreground_path, "ReVOS mask_dict_foreground file")
    rows = []
    for video, entry in meta["videos"].items():
        frame_names = list(entry["frames"])
        if video not in foreground_dict:
            raise ValueError(f"ReVOS video {video} has no entry in {foreground_path}")
        foreground = foreground_dict[video]["masks_rle"]
        _check_length(foreground, frame_names, f"foreground masks of {video} in {foreground_path}")
        for expression_id, expression in entry["expressions"].items():
            annotation_rles = []
            for annotation_id in expression["anno_id"]:
                if str(annotation_id) not in mask_dict:
                    raise ValueError(
                        f"ReVOS expression {video}/{expression_id} refers to annotation {annotation_id}, "
                        f"absent from {mask_path}"
                    )
                rles = mask_dict[str(annotation_id)]
                _check_length(rles, frame_names, f"annotation {annotation_id} in {mask_path}")
                annotation_rles.append(rles)
            rows.append(
                {
                    "video": video,
                    "expression_id": str(expression_id),
                    "expression": expression["exp"],
                    "type_id": int(expression["type_id"]),
                    "frame_names": frame_names,
                    "frames": [str(root / "JPEGImages" / video / f"{name}.jpg") for name in frame_names],
                    "annotation_rles": annotation_rles,
                    "foreground_rles": foreground,
                }
            )
    rows = drop_samples_with_missing_files(
        rows, file_keys=("frames",), dataset_name=f"ReVOS {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def _check_length(masks: list, frame_names: list, description: str) -> None:
    if len(masks) != len(frame_names):
        raise ValueError(f"{description}: {len(masks)} masks for {len(frame_names)} frames")


def revos_masks(sample: dict) -> tuple:
    """`(reference, foreground)` boolean `(frames, h, w)` masks of a `read_revos` row.

    The reference is the union of the expression's annotations (an empty frame where all of them are None), the
    foreground the union of all annotated objects of the video, as the official evaluation builds them.
    """
    foreground = np.stack([decode_rle(rle) for rle in sample["foreground_rles"]])
    reference = np.zeros_like(foreground)
    for rles in sample["annotation_rles"]:
        for frame, rle in enumerate(rles):
            if rle is not None:
                reference[frame] |= decode_rle(rle)
    return reference, foreground
