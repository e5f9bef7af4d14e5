"""DAVIS-2017 semi-supervised reader (official layout).

```
<data_root>/ImageSets/2017/<split>.txt            # one sequence name per line
<data_root>/JPEGImages/<resolution>/<sequence>/<frame>.jpg
<data_root>/Annotations/<resolution>/<sequence>/<frame>.png   # palette PNG, pixel value = object id, 0 = background
```
"""

from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from .utils import drop_samples_with_missing_files, require_file, to_dataset

_FEATURES = {
    "video": datasets.Value("string"),
    "frame_names": datasets.List(datasets.Value("string")),
    "frames": datasets.List(datasets.Image()),
    "annotations": datasets.List(datasets.Image()),
    "num_objects": datasets.Value("int64"),
}


def read_davis(
    data_root, split: str = "val", resolution: str = "480p", skip_missing: bool = False
) -> datasets.Dataset:
    """Reads a DAVIS-2017 split, one row per sequence.

    Returns:
        Columns `video`, `frame_names`, `frames` and `annotations` (lists of lazily decoded images; an annotation's
        pixel values are object ids) and `num_objects` (the largest id of the first annotation, as the DAVIS toolkit
        counts objects). The toolkit scores frames 1..T-2 of each object; see `hyperseg.evaluation.metrics.video`.

    Raises:
        FileNotFoundError: the split list, a sequence folder or its frames, or (unless `skip_missing`) an annotation
            of a frame is missing.
    """
    root = Path(data_root)
    split_file = require_file(root / "ImageSets" / "2017" / f"{split}.txt", "DAVIS-2017 split list")
    sequences = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    rows = []
    for sequence in sequences:
        frame_dir = require_file(root / "JPEGImages" / resolution / sequence, f"DAVIS-2017 frames of {sequence}")
        annotation_dir = root / "Annotations" / resolution / sequence
        frame_names = sorted(path.stem for path in frame_dir.glob("*.jpg"))
        if not frame_names:
            raise FileNotFoundError(f"DAVIS-2017 frames of {sequence}: {frame_dir} holds no .jpg frame")
        first_annotation = require_file(
            annotation_dir / f"{frame_names[0]}.png", f"DAVIS-2017 first annotation of {sequence}"
        )
        with Image.open(first_annotation) as annotation:
            num_objects = int(np.asarray(annotation).max())
        rows.append(
            {
                "video": sequence,
                "frame_names": frame_names,
                "frames": [str(frame_dir / f"{name}.jpg") for name in frame_names],
                "annotations": [str(annotation_dir / f"{name}.png") for name in frame_names],
                "num_objects": num_objects,
            }
        )
    rows = drop_samples_with_missing_files(
        rows, file_keys=("annotations",), dataset_name=f"DAVIS-2017 {split}", skip_missing=skip_missing
    )
    return to_dataset(rows, _FEATURES)
