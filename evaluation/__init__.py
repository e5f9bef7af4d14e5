"""Evaluation suite: benchmark metrics, dataset readers and the evaluation runner (`python -m hyperseg.evaluation`)."""

from pathlib import Path

import evaluate

METRIC_NAMES = ("referring", "generalized_referring", "semantic", "panoptic", "instance", "video")
EVALUATE_MODULES_DIR = Path(__file__).resolve().parent / "evaluate_modules"


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Loads one of this package's metrics as an `evaluate.EvaluationModule`, from the installed files (offline).

    Args:
        name: one of `METRIC_NAMES`.
        kwargs: forwarded to `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id`).
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(METRIC_NAMES)}")
    return evaluate.load(str(EVALUATE_MODULES_DIR / name), **kwargs)


__all__ = ["METRIC_NAMES", "load_metric"]
