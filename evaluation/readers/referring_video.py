"""Ref-YouTube-VOS and Ref-DAVIS-17 readers (the `meta_expressions.json` layout of ReferFormer and its successors).

```
<data_root>/meta_expressions/<split>/meta_expressions.json
<data_root>/<split>/JPEGImages/<video>/<frame>.jpg
<data_root>/<split>/Annotations/<video>/<frame>.png     # palette PNG of object ids (absent for server-scored splits)
```

`meta_expressions.json` is `{"videos": {video: {"frames": [...], "expressions": {id: {"exp": str, "obj_id": str}}}}}`.
Ref-YouTube-VOS `valid` has no public annotations (scored by the challenge server): its rows have no annotations.
"""

from pathlib import Path

import datasets

from .utils import drop_samples_with_missing_files, read_json, to_dataset

_FEATURES = {
    "video": datasets.Value("string"),
    "expression_id": datasets.Value("string"),
    "expression": datasets.Value("string"),
    "object_id": datasets.Value("int64"),
    "frame_names": datasets.List(datasets.Value("string")),
    "frames": datasets.List(datasets.Image()),
    "annotations": datasets.List(datasets.Image()),
}


def read_referring_video(data_root, split: str = "valid", skip_missing: bool = False) -> datasets.Dataset:
    """Reads a Ref-YouTube-VOS / Ref-DAVIS split, one row per (video, expression).

    Returns:
        Columns `video`, `expression_id`, `expression`, `object_id` (the referred object's id in the annotation PNGs,
        -1 when the file does not give one), `frame_names`, `frames` and `annotations` (lazily decoded images;
        `annotations` is empty when the split folder has no `Annotations`).

    Raises:
        FileNotFoundError: `meta_expressions.json`, or (unless `skip_missing`) a listed frame or annotation, is
            missing.
    """
    root = Path(data_root)
    meta = read_json(
        root / "meta_expressions" / split / "meta_expressions.json", "referring-video meta_expressions file"
    )
    frame_root = root / split / "JPEGImages"
    annotation_root = root / split / "Annotations"
    has_annotations = annotation_root.exists()
    rows = []
    for video, entry in meta["videos"].items():
        frame_names = list(entry["frames"])
        for expression_id, expression in entry["expressions"].items():
            rows.append(
                {
                    "video": video,
                    "expression_id": str(expression_id),
                    "expression": expression["exp"],
                    "object_id": int(expression.get("obj_id", -1)),
                    "frame_names": frame_names,
                    "frames": [str(frame_root / video / f"{name}.jpg") for name in frame_names],
                    "annotations": [str(annotation_root / video / f"{name}.png") for name in frame_names]
                    if has_annotations
                    else [],
                }
            )
    rows = drop_samples_with_missing_files(
        rows, file_keys=("frames", "annotations"), dataset_name=f"referring video {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)
