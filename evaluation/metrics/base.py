"""Base class of the `evaluate` modules of this package (the scripts under `evaluation/evaluate_modules/`).

`evaluate` stores every added example in an Arrow table before `_compute` runs. Arrow would silently turn an 8-bit
0/255 mask into an all-True boolean mask and cannot store a `(map, segments)` tuple, so each module converts its inputs
with `_encode_prediction` / `_encode_reference` when they are added, validating them and naming the offending sample
(its position among all examples added since the last `compute`).
"""

import evaluate


class SegmentationMetric(evaluate.Metric):
    """An `evaluate.Metric` whose inputs are converted to the module's storage format when they are added."""

    def _encode_prediction(self, prediction, *, index: int):
        return prediction

    def _encode_reference(self, reference, *, index: int):
        return reference

    def _next_index(self) -> int:
        index = getattr(self, "_examples_added", 0)
        self._examples_added = index + 1
        return index

    def _encode_pair(self, prediction, reference) -> tuple:
        index = self._next_index()
        return self._encode_prediction(prediction, index=index), self._encode_reference(reference, index=index)

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Validates and converts a batch of examples, then stores it like `evaluate.Metric.add_batch`."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")
            pairs = [
                self._encode_pair(prediction, reference) for prediction, reference in zip(predictions, references)
            ]
            predictions, references = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Validates and converts one example, then stores it like `evaluate.Metric.add`."""
        if prediction is not None and reference is not None:
            prediction, reference = self._encode_pair(prediction, reference)
        return super().add(prediction=prediction, reference=reference, **kwargs)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Adds `predictions` / `references` (if given) and computes the metric (see the inputs description)."""
        try:
            return super().compute(predictions=predictions, references=references, **kwargs)
        finally:
            self._examples_added = 0
