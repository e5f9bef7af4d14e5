# Copyright 2025 The HyperSeg port authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
Pure tensor post-processing of HyperSeg's decoder outputs, one sample at a time.

The mask logits are brought to the raw image size as the original does it ([`resize_mask_logits`]), only for the
queries a rule needs (the panoptic and instance rules resize only the queries they select). The scoring rules then
follow the released HyperSeg code (referring) and PSALM, whose generic and region inference HyperSeg inherits but did
not release (panoptic, instance, semantic, interactive). All thresholds on mask
probabilities are applied to the logits (`p > t` <=> `logit > log(t / (1 - t))`), so the default 0.5 is the exact
`logit > 0` test of the original.
"""

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


def _resize_matrix(length: int, padded_length: int, valid_length: int, target_length: int) -> torch.Tensor:
    """
    `(length, target_length)` matrix of the original's resizing along one axis: bilinear (non-antialiased,
    `align_corners=False`) upsampling to `padded_length`, crop to `valid_length`, bilinear resize to `target_length`.
    It is that very computation applied to the identity, so its weights are the ones `interpolate` uses.
    """
    identity = torch.eye(length).unsqueeze(0)  # `length` unit signals
    upsampled = F.interpolate(identity, size=padded_length, mode="linear", align_corners=False)
    return F.interpolate(upsampled[..., :valid_length], size=target_length, mode="linear", align_corners=False)[0]


def resize_mask_logits(
    mask_logits: torch.Tensor,
    padded_size: tuple[int, int],
    valid_size: tuple[int, int],
    target_size: tuple[int, int],
) -> torch.Tensor:
    """
    Brings mask logits from the decoder resolution to the raw image size, as the original does: bilinear upsampling
    to the padded backbone input, crop of the valid (unpadded) area, bilinear resize to the raw size (detectron2's
    `sem_seg_postprocess`), both `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without
    antialiasing.

    Each of these steps is linear and separable, so their composition is one `(target_height, height)` matrix on the
    rows and one `(width, target_width)` matrix on the columns: the padded-size intermediate is never built, and the
    decoder rows / columns that only feed the padding are skipped. The result equals the original's up to float32
    rounding (about 1e-7 relative).

    Args:
        mask_logits (`torch.Tensor` of shape `(num_queries, height, width)`):
            Mask logits of one sample at the decoder resolution (float32).
        padded_size (`tuple[int, int]`):
            `(height, width)` of the padded backbone input.
        valid_size (`tuple[int, int]`):
            `(height, width)` of the resized image inside the padded input.
        target_size (`tuple[int, int]`):
            `(height, width)` of the raw image.

    Returns:
        `torch.Tensor` of shape `(num_queries, *target_size)`: the mask logits at the raw image size.
    """
    height, width = mask_logits.shape[-2:]
    rows = _resize_matrix(height, padded_size[0], valid_size[0], target_size[0]).T.to(mask_logits)
    columns = _resize_matrix(width, padded_size[1], valid_size[1], target_size[1]).to(mask_logits)
    used_rows = int(rows.any(0).nonzero().max()) + 1  # the valid area is the top-left corner of the padded input
    used_columns = int(columns.any(1).nonzero().max()) + 1
    rows, columns = rows[:, :used_rows], columns[:used_columns]
    mask_logits = mask_logits[:, :used_rows, :used_columns]
    target_height, target_width = target_size
    # the two products in the cheaper order
    columns_first_cost = used_rows * target_width * (used_columns + target_height)
    rows_first_cost = target_height * used_columns * (used_rows + target_width)
    if columns_first_cost <= rows_first_cost:
        return rows @ (mask_logits @ columns)
    return (rows @ mask_logits) @ columns


def probability_to_logit(probability: float) -> float:
    """The logit whose sigmoid is `probability` (exactly 0.0 for 0.5)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"A mask probability threshold must lie strictly between 0 and 1, got {probability}.")
    return math.log(probability / (1.0 - probability))


def mask_scores(mask_logits: torch.Tensor, binary_masks: torch.Tensor) -> torch.Tensor:
    """
    Mean foreground probability inside each binary mask, `sum(sigmoid * binary) / (sum(binary) + 1e-6)` (0 for an
    empty mask), the mask-quality factor of every HyperSeg / PSALM score.

    Args:
        mask_logits (`torch.Tensor` of shape `(num_masks, height, width)`): mask logits.
        binary_masks (`torch.Tensor` of shape `(num_masks, height, width)`): their binarisation (bool).

    Returns:
        `torch.Tensor` of shape `(num_masks,)`.
    """
    binary_masks = binary_masks.flatten(1)
    probabilities = mask_logits.sigmoid().flatten(1).mul_(binary_masks)  # in place: one full-size temporary
    return probabilities.sum(1) / (binary_masks.sum(1) + 1e-6)


QUERY_CHUNK_SIZE = 16  # queries whose raw-size logits live at once while scoring: 100 at 640x480 would be 123 MB


def raw_size_mask_scores(
    mask_logits: torch.Tensor,
    resize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    chunk_size: int = QUERY_CHUNK_SIZE,
) -> torch.Tensor:
    """
    [`mask_scores`] of every query at the raw image size, `chunk_size` queries at a time, so that the raw-size
    logits of all queries (the memory peak of the referring and region rules) never exist together.

    Args:
        mask_logits (`torch.Tensor` of shape `(num_queries, h, w)`): mask logits of one sample.
        resize (`Callable`, *optional*): brings `(n, h, w)` logits to the raw size (see [`resize_mask_logits`]);
            `None` when `mask_logits` are already at the raw size.

    Returns:
        `torch.Tensor` of shape `(num_queries,)`.
    """
    scores = []
    for chunk in mask_logits.split(chunk_size):
        raw_size_logits = chunk if resize is None else resize(chunk)  # (chunk, height, width)
        scores.append(mask_scores(raw_size_logits, raw_size_logits > 0))
    return torch.cat(scores)


def referring_inference(
    seg_logits: torch.Tensor, mask_logits: torch.Tensor, resize: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """
    HyperSeg's referring rule (`SEG_instance_inference`): score_q = sigmoid(SEG logit_q) * mask score_q, the mask
    score taken at the raw image size.

    Args:
        seg_logits (`torch.Tensor` of shape `(num_queries,)`): SEG logits of one sample.
        mask_logits (`torch.Tensor` of shape `(num_queries, h, w)`): mask logits, brought to the raw size by `resize`
            (raw-size logits when `resize` is `None`).
        resize (`Callable`, *optional*): see [`raw_size_mask_scores`].

    Returns:
        `torch.Tensor` of shape `(num_queries,)`: the scores in query order.
    """
    return seg_logits.sigmoid() * raw_size_mask_scores(mask_logits, resize)


def region_inference(
    region_logits: torch.Tensor, mask_logits: torch.Tensor, resize: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """
    PSALM's region rule (`region_inference`): score_{k,q} = sigmoid(region logit_{k,q}) * mask score_q, the mask
    score taken at the raw image size.

    Args:
        region_logits (`torch.Tensor` of shape `(num_prompts, num_queries)`): region logits of one sample.
        mask_logits (`torch.Tensor` of shape `(num_queries, h, w)`): mask logits, brought to the raw size by
            `resize` (raw-size logits when `resize` is `None`).
        resize (`Callable`, *optional*): see [`raw_size_mask_scores`].

    Returns:
        `torch.Tensor` of shape `(num_prompts, num_queries)`.
    """
    return region_logits.sigmoid() * raw_size_mask_scores(mask_logits, resize)[None, :]


def semantic_inference(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """
    PSALM's semantic rule (`class_name_semantic_inference`): semseg_c = sum_q softmax(class)_{q,c} * sigmoid(mask_q)
    over the classes without the trailing "background".

    Args:
        class_logits (`torch.Tensor` of shape `(num_queries, num_classes + 1)`): class-name logits of one sample.
        mask_logits (`torch.Tensor` of shape `(num_queries, height, width)`): raw-size mask logits.

    Returns:
        `torch.Tensor` of shape `(num_classes, height, width)`: the per-class scores.
    """
    class_probs = class_logits.softmax(-1)[:, :-1]
    return torch.einsum("qc,qhw->chw", class_probs, mask_logits.sigmoid())


def instance_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    mask_threshold: float = 0.5,
    stuff_label_ids: Iterable[int] | None = None,
    resize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    PSALM's instance rule (`class_name_instance_inference`): the `num_queries` best (query, class) pairs of
    softmax(class) without "background"; label = index % num_classes; score = class probability * mask score.
    PSALM draws them with `topk(sorted=False)` (an implementation-defined order); here the predictions are returned
    sorted by decreasing final score.

    Args:
        class_logits (`torch.Tensor` of shape `(num_queries, num_classes + 1)`): class-name logits of one sample.
        mask_logits (`torch.Tensor` of shape `(num_queries, height, width)`): raw-size mask logits, or decoder-size
            ones with `resize`.
        mask_threshold (`float`, *optional*, defaults to 0.5): probability above which a pixel is foreground.
        stuff_label_ids (`Iterable[int]`, *optional*): classes whose predictions are dropped (PSALM keeps only
            thing classes when it evaluates a panoptic model's instances).
        resize (`Callable`, *optional*): brings `(n, h, w)` rows of `mask_logits` to the raw size (e.g.
            [`resize_mask_logits`] with the sizes bound); only the queries of the selected pairs are resized.

    Returns:
        `tuple(torch.Tensor, ...)`: `scores` `(num_predictions,)`, `labels` `(num_predictions,)`, `query_indices`
        `(num_predictions,)` and binary `masks` `(num_predictions, height, width)` (bool).
    """
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    class_probs = class_logits.softmax(-1)[:, :-1]
    class_scores, top_indices = class_probs.flatten().topk(num_queries)
    labels = top_indices % num_classes
    query_indices = top_indices // num_classes
    if stuff_label_ids is not None:
        is_thing = ~torch.isin(labels, torch.tensor(sorted(stuff_label_ids), dtype=labels.dtype, device=labels.device))
        class_scores, labels, query_indices = class_scores[is_thing], labels[is_thing], query_indices[is_thing]

    # a query can be selected with several classes: its mask is resized and scored once
    selected_queries, pair_to_query = query_indices.unique(return_inverse=True)
    mask_logits = mask_logits[selected_queries]
    if resize is not None:
        mask_logits = resize(mask_logits)
    binary_masks = mask_logits > probability_to_logit(mask_threshold)
    scores = class_scores * mask_scores(mask_logits, binary_masks)[pair_to_query]
    order = scores.argsort(descending=True, stable=True)
    return scores[order], labels[order], query_indices[order], binary_masks[pair_to_query[order]]


def panoptic_inference(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    threshold: float = 0.8,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    label_ids_to_fuse: Iterable[int] | None = None,
    resize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[dict]]:
    """
    PSALM's panoptic rule (`class_name_panoptic_inference`). Queries whose best class is not "background" and whose
    class probability exceeds `threshold` are kept; every pixel goes to the kept query with the largest
    `class probability * mask probability`; a query becomes a segment when it owns pixels, its mask has pixels with
    probability >= `mask_threshold`, and (owned area / mask area) >= `overlap_mask_area_threshold`. Its segment is
    the owned pixels inside its mask. Stuff classes (`label_ids_to_fuse`) get one segment per class (the first query
    of a class allocates the id, later ones paint into it); thing classes get one segment per query.

    Args:
        class_logits (`torch.Tensor` of shape `(num_queries, num_classes + 1)`): class-name logits of one sample.
        mask_logits (`torch.Tensor` of shape `(num_queries, height, width)`): raw-size mask logits, or decoder-size
            ones with `resize`.
        threshold (`float`, *optional*, defaults to 0.8): PSALM's `object_mask_threshold`.
        mask_threshold (`float`, *optional*, defaults to 0.5): probability from which a pixel is in a mask.
        overlap_mask_area_threshold (`float`, *optional*, defaults to 0.8): PSALM's `overlap_threshold`.
        label_ids_to_fuse (`Iterable[int]`, *optional*): the stuff classes; `None` treats every class as a thing.
        resize (`Callable`, *optional*): brings `(n, h, w)` rows of `mask_logits` to the raw size (e.g.
            [`resize_mask_logits`] with the sizes bound); only the kept queries are resized.

    Returns:
        `tuple(torch.Tensor, list[dict])`: the segment-id map `(height, width)` (int64, 0 = void, ids from 1) and one
        dict per segment: `id`, `label_id`, `score` (class probability of the query that created it), `isthing`.
    """
    stuff_label_ids = set() if label_ids_to_fuse is None else set(label_ids_to_fuse)
    num_classes = class_logits.shape[-1] - 1
    class_scores, labels = class_logits.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (class_scores > threshold)
    class_scores, labels, mask_logits = class_scores[keep], labels[keep], mask_logits[keep]
    if resize is not None:
        mask_logits = resize(mask_logits)
    mask_probs = mask_logits.sigmoid()

    segmentation = torch.zeros(mask_logits.shape[-2:], dtype=torch.long, device=mask_logits.device)
    segments_info = []
    if labels.numel() == 0:
        return segmentation, segments_info

    owner = (class_scores[:, None, None] * mask_probs).argmax(0)  # (height, width)
    stuff_segment_ids = {}
    for k, label in enumerate(labels.tolist()):
        owned = owner == k
        in_mask = mask_probs[k] >= mask_threshold
        segment = owned & in_mask
        owned_area, mask_area = owned.sum().item(), in_mask.sum().item()
        if owned_area == 0 or mask_area == 0 or not segment.any():
            continue
        if owned_area / mask_area < overlap_mask_area_threshold:
            continue
        isthing = label not in stuff_label_ids
        if not isthing and label in stuff_segment_ids:
            segmentation[segment] = stuff_segment_ids[label]
            continue
        segment_id = len(segments_info) + 1
        if not isthing:
            stuff_segment_ids[label] = segment_id
        segmentation[segment] = segment_id
        segments_info.append(
            {"id": segment_id, "label_id": label, "score": class_scores[k].item(), "isthing": isthing}
        )
    return segmentation, segments_info
