"""Video benchmarks of the evaluation runner: DAVIS-17 semi-supervised, Ref-DAVIS-17, Ref-YouTube-VOS and ReVOS.

Each video goes once through `hyperseg.video.iter_segment_video` (the function behind `python -m hyperseg.video`), all
its prompts together: the expressions of a referring benchmark, or for DAVIS-17 the objects of the first annotation
as mask prompts (`task="interactive"`, see `hyperseg.video.PropagatedVisualPrompts`). A scorer per video turns each
segmented frame into per-frame statistics as it comes (nothing but numbers is kept, so memory does not grow with the
video) and, when asked, writes the predictions in the benchmark's official result layout. Its record, one per video,
holds every number the report is computed from (`aggregate_video_records`).
"""

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import datasets
import numpy as np
from PIL import Image
from scipy.optimize import linear_sum_assignment

from .metrics import aggregate_revos, aggregate_video, revos_sample_statistics, video_sample_statistics
from .metrics.video import REVOS_DEFINITIONS, VIDEO_DEFINITIONS
from .readers import read_davis, read_referring_video, read_revos, revos_masks

DAVIS_DEFINITIONS = {
    **VIDEO_DEFINITIONS,
    "protocol": "DAVIS-2017 semi-supervised, as davis2017-evaluation scores it: the objects are the ids 1..N of the "
    "first annotation (255 counts as background); a frame's object masks are fused into one id map (where they "
    "overlap, the lower id wins) and object k is map == k; frames 1..T-2 are scored (the first is given, the last "
    "is dropped)",
    "prompts": "each object's first-frame mask as a visual prompt (task 'interactive'); on every later frame the "
    "object's mask predicted on the previous frame (hyperseg.video.PropagatedVisualPrompts), with HyperSeg's "
    "temporal latents carried from frame to frame",
}
REF_DAVIS_DEFINITIONS = {
    **VIDEO_DEFINITIONS,
    "J / F / J&F / recall / decay": "mean over the annotators of the values below, each annotator scored alone",
    "annotators": "the k-th expression of an object (meta_expressions order) is annotator k's, as ReferFormer's "
    "inference_davis.py reads the file (4 per object: 2 annotators x first-frame / full-video); per annotator and "
    "frame, its expressions' masks are fused into one id map, objects numbered in meta order (the lower wins on "
    "overlap)",
    "protocol": "davis2017-evaluation task 'unsupervised', as ReferFormer's eval_davis.py runs it on Ref-DAVIS: "
    "every frame is scored; the ground-truth objects are the ids 1..N of the first annotation; the predicted ids "
    "(up to max(N, highest id predicted), missing ones empty) are matched one-to-one to them per video by "
    "linear_sum_assignment on the mean over frames of (J + F) / 2",
}
REFERRING_VIDEO_DEFINITIONS = {
    **VIDEO_DEFINITIONS,
    "tracks": "one per expression, its object being annotation == obj_id, every listed frame scored",
}
REVOS_VIDEO_DEFINITIONS = {
    **REVOS_DEFINITIONS,
    "per-frame": "J, F, A, R computed frame by frame as the video streams and averaged per expression: the same "
    "numbers as revos_sample_statistics on the whole video",
}
SERVER_SCORED_DEFINITIONS = {
    "submission": "scored by the challenge server: upload submission.zip, which holds "
    "Annotations/<video>/<expression id>/<frame>.png (8-bit grey, 255 = object, the frame's size), one PNG per "
    "listed frame and expression, as ReferFormer's inference_ytvos.py writes them",
}


def _stored_paths(values: list) -> list[str]:
    return [value["path"] for value in values]


def load_annotation(path: str) -> np.ndarray:
    """An annotation PNG as an `(h, w)` array of object ids, 255 (void) read as background as the DAVIS toolkit does."""
    try:
        with Image.open(path) as image:
            ids = np.array(image)
    except OSError as error:
        raise ValueError(f"cannot read the annotation {path} ({error})") from error
    if ids.ndim != 2:
        raise ValueError(f"annotation {path} is not a single-channel PNG of object ids (shape {ids.shape})")
    ids = ids.astype(np.int64)
    ids[ids == 255] = 0
    return ids


def fuse_objects(masks: list, shape: tuple) -> np.ndarray:
    """One uint8 id map from per-object masks (`None` = absent): object k + 1 is `masks[k]`; the lower id wins."""
    fused = np.zeros(shape, dtype=np.uint8)
    for object_id, mask in reversed(list(enumerate(masks, start=1))):
        if mask is not None:
            fused[mask] = object_id
    return fused


def _check_size(reference_shape: tuple, mask: np.ndarray, what: str, position: int) -> None:
    if tuple(reference_shape) != mask.shape:
        raise ValueError(
            f"{what} is {reference_shape[1]}x{reference_shape[0]} (width x height) but frame {position} is "
            f"{mask.shape[1]}x{mask.shape[0]}"
        )


class VideoScorer:
    """
    Scores one video of a benchmark: `prompts` to follow, `add_frame` for each segmented frame (per prompt a bool
    mask), `statistics` for the video's record.

    Args:
        rows: the reader rows of the video (one, or one per expression), as `video_rows` gives them.
        predictions_dir: when given, each frame's predictions are written there in the benchmark's result layout.
    """

    def __init__(self, rows: list[dict], predictions_dir=None):
        self.video = rows[0]["video"]
        self.frame_names = rows[0]["frame_names"]
        self.frames = _stored_paths(rows[0]["frames"])
        self.annotations = _stored_paths(rows[0].get("annotations") or [])
        self.predictions_dir = None if predictions_dir is None else Path(predictions_dir)
        self.num_frames_seen = 0
        self._palette = None  # of the first annotation, for the id maps written

    def add_frame(self, position: int, masks: list) -> None:
        if position != self.num_frames_seen:
            raise ValueError(f"video {self.video}: got frame {position}, expected frame {self.num_frames_seen}")
        self.num_frames_seen += 1
        self._add_frame(position, masks)

    def statistics(self) -> dict:
        if self.num_frames_seen != len(self.frames):
            raise ValueError(
                f"video {self.video}: the predictor returned {self.num_frames_seen} frames for {len(self.frames)}"
            )
        return self._statistics()

    def _annotation(self, position: int, mask: np.ndarray) -> np.ndarray:
        path = self.annotations[position]
        ids = load_annotation(path)
        _check_size(ids.shape, mask, f"annotation {path}", position)
        return ids

    def _save_id_map(self, ids: np.ndarray, folder: Path, position: int) -> None:
        """An id map as a palette PNG with the first annotation's palette (the DAVIS result format)."""
        folder.mkdir(parents=True, exist_ok=True)
        if self._palette is None:
            with Image.open(self.annotations[0]) as first:
                self._palette = first.getpalette() or []
        image = Image.fromarray(ids)  # uint8: mode L
        if self._palette:
            image = image.convert("P")
            image.putpalette(self._palette)
        image.save(folder / f"{self.frame_names[position]}.png")

    def _save_binary(self, mask: np.ndarray, folder: Path, position: int) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{self.frame_names[position]}.png")


class DavisScorer(VideoScorer):
    """DAVIS-17 semi-supervised: the first annotation's objects as mask prompts, frames 1..T-2 scored."""

    def __init__(self, rows: list[dict], predictions_dir=None):
        super().__init__(rows, predictions_dir)
        if len(self.frames) < 3:
            raise ValueError(f"DAVIS-17 video {self.video}: frames 1..T-2 are scored, but it has {len(self.frames)}")
        first = load_annotation(self.annotations[0])
        self.object_ids = list(range(1, int(first.max()) + 1))
        if not self.object_ids:
            raise ValueError(f"the first annotation of video {self.video}, {self.annotations[0]}, has no object")
        for object_id in self.object_ids:
            if not (first == object_id).any():
                raise ValueError(f"object {object_id} is absent from the first annotation {self.annotations[0]}")
        self.prompts = [{"mask": first == object_id} for object_id in self.object_ids]
        self.per_frame = {object_id: {"J": [], "F": []} for object_id in self.object_ids}

    def _add_frame(self, position: int, masks: list) -> None:
        fused = fuse_objects(masks, masks[0].shape)
        if self.predictions_dir is not None:
            self._save_id_map(fused, self.predictions_dir / self.video, position)
        if not 1 <= position <= len(self.frames) - 2:
            return
        reference = self._annotation(position, fused)
        for object_id, values in self.per_frame.items():
            frame = video_sample_statistics((fused == object_id)[None], (reference == object_id)[None], index=position)
            values["J"] += frame["J"]
            values["F"] += frame["F"]

    def _statistics(self) -> dict:
        return {"objects": [{"object_id": object_id, **values} for object_id, values in self.per_frame.items()]}


class RefDavisScorer(VideoScorer):
    """Ref-DAVIS-17: every annotator's expressions in one pass; per annotator, all prediction / object pairs scored."""

    def __init__(self, rows: list[dict], predictions_dir=None):
        super().__init__(rows, predictions_dir)
        if not self.annotations:
            raise ValueError(f"Ref-DAVIS-17 video {self.video} has no annotations to score")
        for row in rows:
            if row["object_id"] < 0:
                raise ValueError(f"expression {self.video}/{row['expression_id']} has no obj_id in meta_expressions")
        self.prompts = [row["expression"] for row in rows]
        object_ids = list(dict.fromkeys(row["object_id"] for row in rows))  # meta order
        self.annotators = []  # per annotator: per object (meta order) the index of its prompt, or None
        self.expression_ids = []
        for index, row in enumerate(rows):
            rank = sum(other["object_id"] == row["object_id"] for other in rows[:index])
            if rank == len(self.annotators):
                self.annotators.append([None] * len(object_ids))
                self.expression_ids.append([None] * len(object_ids))
            self.annotators[rank][object_ids.index(row["object_id"])] = index
            self.expression_ids[rank][object_ids.index(row["object_id"])] = row["expression_id"]
        self.num_objects = int(load_annotation(self.annotations[0]).max())
        # per annotator, candidate prediction id and ground-truth object: the per-frame J and F of the pair
        num_candidates = max(len(object_ids), self.num_objects)
        self.per_frame = [
            {key: [[[] for _ in range(self.num_objects)] for _ in range(num_candidates)] for key in ("J", "F")}
            for _ in self.annotators
        ]
        self.highest_predicted = [0] * len(self.annotators)

    def _add_frame(self, position: int, masks: list) -> None:
        reference = self._annotation(position, masks[0])
        for annotator, prompt_indices in enumerate(self.annotators):
            fused = fuse_objects([None if index is None else masks[index] for index in prompt_indices], reference.shape)
            if self.predictions_dir is not None:
                self._save_id_map(fused, self.predictions_dir / f"anno_{annotator}" / self.video, position)
            self.highest_predicted[annotator] = max(self.highest_predicted[annotator], int(fused.max()))
            values = self.per_frame[annotator]
            for candidate, (j_row, f_row) in enumerate(zip(values["J"], values["F"])):
                for object_index in range(self.num_objects):
                    frame = video_sample_statistics(
                        (fused == candidate + 1)[None], (reference == object_index + 1)[None], index=position
                    )
                    j_row[object_index] += frame["J"]
                    f_row[object_index] += frame["F"]

    def _statistics(self) -> dict:
        annotators = []
        for annotator, values in enumerate(self.per_frame):
            # the toolkit reads ids 1..(highest id in the PNGs) and pads with empty predictions up to N objects
            num_candidates = max(self.highest_predicted[annotator], self.num_objects)
            annotators.append(
                {
                    "annotator": annotator,
                    "expression_ids": self.expression_ids[annotator],
                    "J": values["J"][:num_candidates],
                    "F": values["F"][:num_candidates],
                }
            )
        return {"annotators": annotators}


class ReferringVideoScorer(VideoScorer):
    """Ref-YouTube-VOS: one track per expression; written as the server's submission when there are no annotations."""

    def __init__(self, rows: list[dict], predictions_dir=None):
        super().__init__(rows, predictions_dir)
        self.prompts = [row["expression"] for row in rows]
        self.expressions = [{"expression_id": row["expression_id"], "object_id": row["object_id"]} for row in rows]
        if self.annotations:
            for expression in self.expressions:
                if expression["object_id"] < 0:
                    raise ValueError(
                        f"expression {self.video}/{expression['expression_id']} has no obj_id in meta_expressions, "
                        "so it cannot be scored against the annotations"
                    )
                expression.update(J=[], F=[])

    def _add_frame(self, position: int, masks: list) -> None:
        if self.predictions_dir is not None:
            for expression, mask in zip(self.expressions, masks):
                folder = self.predictions_dir / "Annotations" / self.video / expression["expression_id"]
                self._save_binary(mask, folder, position)
        if not self.annotations:
            return
        reference = self._annotation(position, masks[0])
        for expression, mask in zip(self.expressions, masks):
            frame = video_sample_statistics(mask[None], (reference == expression["object_id"])[None], index=position)
            expression["J"] += frame["J"]
            expression["F"] += frame["F"]

    def _statistics(self) -> dict:
        return {"expressions": self.expressions}


class RevosScorer(VideoScorer):
    """ReVOS: one track per expression, J / F / A / R per frame, averaged per expression."""

    def __init__(self, rows: list[dict], predictions_dir=None):
        super().__init__(rows, predictions_dir)
        self.rows = rows
        self.prompts = [row["expression"] for row in rows]
        self.per_frame = [{"J": [], "F": [], "A": [], "R": []} for _ in rows]

    def _add_frame(self, position: int, masks: list) -> None:
        for row, mask, values in zip(self.rows, masks, self.per_frame):
            if self.predictions_dir is not None:
                folder = self.predictions_dir / "Annotations" / self.video / row["expression_id"]
                self._save_binary(mask, folder, position)
            frame_row = {
                "foreground_rles": [row["foreground_rles"][position]],
                "annotation_rles": [[rles[position]] for rles in row["annotation_rles"]],
            }
            reference, foreground = revos_masks(frame_row)
            _check_size(reference.shape[1:], mask, f"the ReVOS masks of {self.video} frame {position}", position)
            for key, value in revos_sample_statistics(mask[None], reference, foreground, index=position).items():
                values[key].append(value)

    def _statistics(self) -> dict:
        return {
            "expressions": [
                {
                    "expression_id": row["expression_id"],
                    "type_id": row["type_id"],
                    **{key: float(np.mean(per_frame)) for key, per_frame in values.items()},
                }
                for row, values in zip(self.rows, self.per_frame)
            ]
        }


@dataclass(frozen=True)
class VideoBenchmark:
    """
    A video benchmark: how to read it, the task its prompts use and the scorer of its videos.

    Attributes:
        metric: `"davis"`, `"ref_davis"`, `"referring_video"` or `"revos"` (see `aggregate_video_records`).
        task: the `segment_video` task (`"interactive"`, `"referring_video"` or `"reasoning_video"`).
        default_split: split used when none is given.
        read: `(data_root, split, skip_missing) -> datasets.Dataset`, the rows of a video contiguous.
        scorer: the `VideoScorer` class of one video.
    """

    metric: str
    task: str
    default_split: str
    read: Callable
    scorer: type


VIDEO_BENCHMARKS = {
    "davis": VideoBenchmark(
        metric="davis",
        task="interactive",
        default_split="val",
        read=lambda data_root, split, skip_missing: read_davis(data_root, split, skip_missing=skip_missing),
        scorer=DavisScorer,
    ),
    "ref_davis": VideoBenchmark(
        metric="ref_davis",
        task="referring_video",
        default_split="valid",
        read=lambda data_root, split, skip_missing: read_referring_video(data_root, split, skip_missing=skip_missing),
        scorer=RefDavisScorer,
    ),
    "ref_youtube_vos": VideoBenchmark(
        metric="referring_video",
        task="referring_video",
        default_split="valid",
        read=lambda data_root, split, skip_missing: read_referring_video(data_root, split, skip_missing=skip_missing),
        scorer=ReferringVideoScorer,
    ),
    "revos": VideoBenchmark(
        metric="revos",
        task="reasoning_video",
        default_split="valid",
        read=lambda data_root, split, skip_missing: read_revos(data_root, split, skip_missing=skip_missing),
        scorer=RevosScorer,
    ),
}
VIDEO_DEFINITIONS_BY_METRIC = {
    "davis": DAVIS_DEFINITIONS,
    "ref_davis": REF_DAVIS_DEFINITIONS,
    "referring_video": REFERRING_VIDEO_DEFINITIONS,
    "revos": REVOS_VIDEO_DEFINITIONS,
}


def video_groups(dataset: datasets.Dataset) -> list[tuple[str, range]]:
    """`(video, row indices)` of each video of a reader's dataset, in order (a video's rows are contiguous)."""
    groups, start = [], 0
    for video, rows in groupby(dataset["video"]):
        count = len(list(rows))
        groups.append((video, range(start, start + count)))
        start += count
    return groups


def video_rows(dataset: datasets.Dataset, rows: range) -> list[dict]:
    """The rows of one video as stored: image columns as `{"path", "bytes"}` dicts, nothing decoded or copied."""
    return dataset.with_format("arrow")[rows.start : rows.stop].to_pylist()


def write_submission(predictions_dir) -> Path:
    """Zips `predictions_dir/Annotations` into `predictions_dir/submission.zip` (paths start with `Annotations/`)."""
    predictions_dir = Path(predictions_dir)
    archive = predictions_dir / "submission.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as file:
        for path in sorted((predictions_dir / "Annotations").rglob("*.png")):
            file.write(path, path.relative_to(predictions_dir))
    return archive


def _unsupervised_matches(annotator: dict) -> list[dict]:
    """davis2017-evaluation's `_evaluate_unsupervised`: per ground-truth object, per-frame J, F of its matched id."""
    j_values, f_values = np.asarray(annotator["J"], dtype=np.float64), np.asarray(annotator["F"], dtype=np.float64)
    rows, columns = linear_sum_assignment(-(j_values.mean(axis=2) + f_values.mean(axis=2)) / 2)
    return [{"J": j_values[row, column], "F": f_values[row, column]} for row, column in zip(rows, columns)]


def aggregate_video_records(metric: str, records: list) -> dict:
    """The dataset metrics of a video benchmark from its per-video records alone (see the `*_DEFINITIONS`)."""
    statistics = [record["statistics"] for record in records]
    if metric == "davis":
        return aggregate_video([track for video in statistics for track in video["objects"]])
    if metric == "referring_video":
        return aggregate_video([track for video in statistics for track in video["expressions"]])
    if metric == "revos":
        return aggregate_revos([track for video in statistics for track in video["expressions"]])
    if metric == "ref_davis":
        num_annotators = max(len(video["annotators"]) for video in statistics)
        per_annotator = [
            aggregate_video(
                [
                    track
                    for video in statistics
                    for annotator in video["annotators"]
                    if annotator["annotator"] == index
                    for track in _unsupervised_matches(annotator)
                ]
            )
            for index in range(num_annotators)
        ]
        metrics = {key: float(np.mean([values[key] for values in per_annotator])) for key in per_annotator[0]}
        return {**metrics, "per_annotator": per_annotator}
    raise ValueError(f"unknown video metric {metric!r}")
