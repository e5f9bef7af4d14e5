"""YouTube-VIS reader (detectron2 / Mask2Former layout).

```
<data_root>/<split>.json                          # videos, annotations (per-frame RLE or null), categories
<data_root>/<split>/JPEGImages/<video>/<frame>.jpg   # file names as listed in the JSON's `file_names`
```

The public `valid` / `test` JSONs have no annotations (scored by the challenge server); their rows have no instances.
"""

from pathlib import Path

import datasets

from ..masks import segmentation_to_rle
from .utils import RLE_FEATURE, drop_samples_with_missing_files, read_json, to_dataset

_FEATURES = {
    "video_id": datasets.Value("int64"),
    "height": datasets.Value("int64"),
    "width": datasets.Value("int64"),
    "frame_names": datasets.List(datasets.Value("string")),
    "frames": datasets.List(datasets.Image()),
    "instances": datasets.List(
        {
            "id": datasets.Value("int64"),
            "category_id": datasets.Value("int64"),
            "iscrowd": datasets.Value("int64"),
            "segmentations": datasets.List(RLE_FEATURE),
        }
    ),
}


def read_youtube_vis(data_root, split: str = "valid", skip_missing: bool = False) -> datasets.Dataset:
    """Reads a YouTube-VIS split, one row per video.

    Returns:
        Columns `video_id`, `height`, `width`, `frame_names`, `frames` (lazily decoded images) and `instances`
        (`id`, `category_id`, `iscrowd`, `segmentations`: one compressed RLE or None per frame).

    Raises:
        FileNotFoundError: the JSON, or (unless `skip_missing`) a listed frame, is missing.
        ValueError: an annotation refers to an unknown video or has the wrong number of frames.
    """
    root = Path(data_root)
    json_path = root / f"{split}.json"
    annotations = read_json(json_path, "YouTube-VIS annotation file")
    videos = {video["id"]: video for video in annotations["videos"]}
    instances = {video_id: [] for video_id in videos}
    for annotation in annotations.get("annotations") or []:
        video = videos.get(annotation["video_id"])
        if video is None:
            raise ValueError(
                f"{json_path}: annotation {annotation['id']} refers to unknown video {annotation['video_id']}"
            )
        if len(annotation["segmentations"]) != len(video["file_names"]):
            raise ValueError(
                f"{json_path}: annotation {annotation['id']} has {len(annotation['segmentations'])} masks for "
                f"{len(video['file_names'])} frames"
            )
        instances[video["id"]].append(
            {
                "id": annotation["id"],
                "category_id": annotation["category_id"],
                "iscrowd": annotation.get("iscrowd", 0),
                "segmentations": [
                    None
                    if segmentation is None
                    else segmentation_to_rle(segmentation, video["height"], video["width"])
                    for segmentation in annotation["segmentations"]
                ],
            }
        )
    rows = [
        {
            "video_id": video["id"],
            "height": video["height"],
            "width": video["width"],
            "frame_names": list(video["file_names"]),
            "frames": [str(root / split / "JPEGImages" / name) for name in video["file_names"]],
            "instances": instances[video["id"]],
        }
        for video in videos.values()
    ]
    rows = drop_samples_with_missing_files(
        rows, file_keys=("frames",), dataset_name=f"YouTube-VIS {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)


def youtube_vis_categories(data_root, split: str = "valid") -> list:
    """The `categories` list (`{"id", "name"}`) of a YouTube-VIS JSON."""
    return read_json(Path(data_root) / f"{split}.json", "YouTube-VIS annotation file")["categories"]
