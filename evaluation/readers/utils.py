"""Helpers shared by the dataset readers: file checks, the missing-image policy and the RLE feature."""

import json
import logging
import os
import pickle
from pathlib import Path

import datasets

logger = logging.getLogger("hyperseg.evaluation")

RLE_FEATURE = {"size": datasets.List(datasets.Value("int64")), "counts": datasets.Value("string")}
# the image columns of the COCO-based readers (COCO panoptic / instances, RefCOCO family)
COCO_IMAGE_FEATURES = {
    "image": datasets.Image(),
    "image_id": datasets.Value("int64"),
    "file_name": datasets.Value("string"),
    "height": datasets.Value("int64"),
    "width": datasets.Value("int64"),
}


def require_file(path, description: str) -> Path:
    """Returns `path` as a `Path`, raising `FileNotFoundError` naming it (and what it is) when it does not exist."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{description} not found: {path}")
    return path


def read_json(path, description: str):
    """Loads a JSON annotation file, raising `FileNotFoundError` / `ValueError` naming the file on failure."""
    path = require_file(path, description)
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"{description} {path} is not valid JSON: {error}") from None


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickler that refuses every class or function reference, so a file can only yield plain Python data."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: refer annotation files hold only lists, dicts, strings and numbers"
        )


def read_refer_pickle(path, description: str):
    """Loads a refer-toolkit `refs(<split_by>).p` file.

    These pickles are the only released form of the RefCOCO/+/g annotations, so pickle is used for this one known
    file type, through an unpickler that refuses any class or function (the files hold plain lists and dicts).
    """
    path = require_file(path, description)
    with open(path, "rb") as file:
        try:
            return _PlainDataUnpickler(file).load()
        except pickle.UnpicklingError as error:
            raise ValueError(f"{description} {path} is not a plain-data refer pickle: {error}") from None


def drop_samples_with_missing_files(rows: list, *, file_keys: tuple, dataset_name: str, skip_missing: bool) -> list:
    """Checks that every file a sample refers to exists.

    Args:
        rows: sample dicts; each key in `file_keys` holds a path or a list of paths.
        file_keys: the keys holding file paths.
        dataset_name: used in messages.
        skip_missing: when False, the first missing file raises `FileNotFoundError` naming it and its sample; when
            True, samples with a missing file are dropped and their number is logged as a warning.
    """
    kept, skipped, first_missing = [], 0, None
    for position, row in enumerate(rows):
        missing = None
        for key in file_keys:
            paths = row[key] if isinstance(row[key], list) else [row[key]]
            missing = next((path for path in paths if not os.path.exists(path)), None)
            if missing is not None:
                break
        if missing is None:
            kept.append(row)
            continue
        if not skip_missing:
            raise FileNotFoundError(
                f"{dataset_name}: sample {position} ({_sample_name(row)}) refers to {missing}, which does not exist "
                "(pass skip_missing=True to drop such samples)"
            )
        skipped += 1
        first_missing = first_missing or missing
    if skipped:
        logger.warning(
            f"{dataset_name}: skipped {skipped} of {len(rows)} samples whose files are missing "
            f"(first: {first_missing})"
        )
    return kept


def _sample_name(row: dict) -> str:
    keys = ("video", "expression_id", "ref_id", "sentence_id", "image_id", "file_name")
    return ", ".join(f"{key}={row[key]}" for key in keys if key in row)


def to_dataset(rows: list, features: dict) -> datasets.Dataset:
    """Builds an in-memory `datasets.Dataset` from sample dicts; image columns hold paths and decode lazily."""
    features = datasets.Features(features)
    columns = {name: [row[name] for row in rows] for name in features}
    return datasets.Dataset.from_dict(columns, features=features)
