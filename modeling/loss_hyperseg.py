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
"""Training criterion of HyperSeg: Hungarian matching and the PSALM / InstructSeg loss terms.

HyperSeg's release ships no loss code; its configuration (class 2 / mask 5 / dice 5, 12544 points, oversample 3.0,
importance 0.75, deep supervision over 10 decoder layers) refers to the criterion of PSALM, of which InstructSeg's
criterion is the referring-only subset. This module implements the union of both:

- `loss_mask`, `loss_dice`: point-sampled sigmoid BCE and dice of the matched masks (importance sampling);
- `loss_SEG_class`: BCE of the per-query [SEG] logits, positive class weighted by `(B * Q - num_masks) / num_masks`;
- `loss_class_name_class`: cross-entropy of the class-name logits, unmatched queries labelled as the last class
  ("background") whose class weight is `background_class_weight` (0.1);
- `loss_region_class`: BCE of the per-region query logits with the same positive weighting rule as the [SEG] term.

The mask math reuses the Mask2Former helpers of Transformers (`sample_point`, `pair_wise_sigmoid_cross_entropy_loss`,
`pair_wise_dice_loss`, `sigmoid_cross_entropy_loss`, `dice_loss`), whose formulas are those of the original criterion
(BCE averaged over points, dice with +1 smoothing, both summed over masks and divided by `num_masks`).
"""

import re

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn
from transformers.models.mask2former.modeling_mask2former import (
    dice_loss,
    pair_wise_dice_loss,
    pair_wise_sigmoid_cross_entropy_loss,
    sample_point,
    sigmoid_cross_entropy_loss,
)

_LAYER_SUFFIX = re.compile(r"_\d+$")


class HyperSegPointSampler:
    """Draws the random point coordinates used by [`HyperSegHungarianMatcher`] and [`HyperSegLoss`].

    Coordinates are `(x, y)` in `[0, 1)`, read with `grid_sample(2 * p - 1, align_corners=False)`. Every draw goes
    through [`~HyperSegPointSampler.uniform`], in the order of the original criterion, so with the default torch
    generator seeded as in the original training the same points are drawn. To inject pre-drawn points, subclass and
    override `uniform` (raw draws), `matching_points` or `importance_points`.

    Args:
        generator (`torch.Generator`, *optional*):
            Generator of the draws. Defaults to the global generator of the prediction's device.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def uniform(self, size: tuple[int, ...], device: torch.device) -> Tensor:
        """`torch.rand(size)` on `device`, drawn from `self.generator` (on its own device) when one is set."""
        if self.generator is None:
            return torch.rand(size, device=device)
        return torch.rand(size, generator=self.generator, device=self.generator.device).to(device)

    def matching_points(self, num_points: int, device: torch.device) -> Tensor:
        """Points shared by every query and every target of one image in the matcher. Returns `[1, num_points, 2]`."""
        return self.uniform((1, num_points, 2), device)

    def importance_points(
        self, logits: Tensor, num_points: int, oversample_ratio: float, importance_sample_ratio: float
    ) -> Tensor:
        """PointRend's uncertainty-based point sampling for the mask losses.

        Draws `int(num_points * oversample_ratio)` uniform points per mask, keeps the
        `int(importance_sample_ratio * num_points)` most uncertain ones (uncertainty = `-|logit|`), then appends
        uniform random points up to `num_points`. Same math as `Mask2FormerLoss.sample_points_using_uncertainty`,
        rewritten because that method draws from the global generator only (no `generator` argument) and is bound to
        a `Mask2FormerLoss` built from a `Mask2FormerConfig`.

        Args:
            logits (`torch.Tensor` of shape `(num_masks, 1, height, width)`):
                Mask logits (fp32).

        Returns:
            `torch.Tensor` of shape `(num_masks, num_points, 2)`.
        """
        num_masks = logits.shape[0]
        num_oversampled = int(num_points * oversample_ratio)
        num_uncertain = int(importance_sample_ratio * num_points)

        # [N, 3P, 2] -> uncertainty [N, 3P]
        candidates = self.uniform((num_masks, num_oversampled, 2), logits.device)
        uncertainty = -sample_point(logits, candidates, align_corners=False)[:, 0].abs()
        top = torch.topk(uncertainty, k=num_uncertain, dim=1)[1]
        points = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
        if num_points > num_uncertain:
            random_points = self.uniform((num_masks, num_points - num_uncertain, 2), logits.device)
            points = torch.cat([points, random_points], dim=1)
        return points


class HyperSegHungarianMatcher(nn.Module):
    """Assignment between the queries of one decoder layer and the target masks (PSALM's `hungarian_matcher_PSALM`).

    Per image, the cost of (query i, target j) is `cost_mask * BCE + cost_class * (-softmax(class logits)[i, label_j])
    + cost_dice * dice`, the mask terms evaluated on `num_points` uniform points shared by all queries and targets.
    The class term is used only when class-name logits are given (generic segmentation); [SEG] and region logits do not
    enter the cost. The assignment is `scipy.optimize.linear_sum_assignment`.

    Args:
        cost_class (`float`, *optional*, defaults to 2.0):
            Weight of the class-name cost.
        cost_mask (`float`, *optional*, defaults to 5.0):
            Weight of the point-sampled sigmoid cross-entropy cost.
        cost_dice (`float`, *optional*, defaults to 5.0):
            Weight of the point-sampled dice cost.
        num_points (`int`, *optional*, defaults to 12544):
            Number of points sampled per image.
    """

    def __init__(
        self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0, num_points: int = 12544
    ):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("All costs can't be 0")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        masks_queries_logits: Tensor,
        mask_labels: Tensor,
        point_coordinates: Tensor,
        class_queries_logits: Tensor | None = None,
        class_labels: Tensor | None = None,
    ) -> Tensor:
        """Matching cost of one image.

        Args:
            masks_queries_logits (`torch.Tensor` of shape `(num_queries, height, width)`):
                Mask logits of the image.
            mask_labels (`torch.Tensor` of shape `(num_targets, height_padded, width_padded)`):
                Target masks of the image.
            point_coordinates (`torch.Tensor` of shape `(1, num_points, 2)`):
                `(x, y)` points shared by all queries and targets.
            class_queries_logits (`torch.Tensor` of shape `(num_queries, num_classes)`, *optional*):
                Class-name logits of the image.
            class_labels (`torch.Tensor` of shape `(num_targets,)`, *optional*):
                Class index of each target (required with `class_queries_logits`).

        Returns:
            `torch.Tensor` of shape `(num_queries, num_targets)`, fp32.
        """
        # [Q, 1, h, w] / [n, 1, H, W] -> [Q, P] / [n, P]
        pred_masks = masks_queries_logits.float()[:, None]
        target_masks = mask_labels.to(device=pred_masks.device, dtype=torch.float32)[:, None]
        pred_points = sample_point(
            pred_masks, point_coordinates.repeat(pred_masks.shape[0], 1, 1), align_corners=False
        ).squeeze(1)
        target_points = sample_point(
            target_masks, point_coordinates.repeat(target_masks.shape[0], 1, 1), align_corners=False
        ).squeeze(1)

        # transformers divides by the point count before the matmul, Mask2Former after: same cost up to ~1e-7 relative
        cost = self.cost_mask * pair_wise_sigmoid_cross_entropy_loss(pred_points, target_points)
        if class_queries_logits is not None:
            # PSALM takes this softmax in the prediction dtype; here in fp32 like every other term
            cost = cost - self.cost_class * class_queries_logits.float().softmax(-1)[:, class_labels]
        return cost + self.cost_dice * pair_wise_dice_loss(pred_points, target_points)

    @torch.no_grad()
    def forward(
        self,
        masks_queries_logits: Tensor,
        mask_labels: list[Tensor],
        class_queries_logits: Tensor | None = None,
        class_labels: list[Tensor] | None = None,
        point_sampler: HyperSegPointSampler | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Performs the matching.

        Args:
            masks_queries_logits (`torch.Tensor` of shape `(batch_size, num_queries, height, width)`):
                Mask logits.
            mask_labels (`list[torch.Tensor]`):
                Per image, target masks of shape `(num_targets, height_padded, width_padded)`.
            class_queries_logits (`torch.Tensor` of shape `(batch_size, num_queries, num_classes)`, *optional*):
                Class-name logits; adds the class cost.
            class_labels (`list[torch.Tensor]`, *optional*):
                Per image, target class indices of shape `(num_targets,)`; required with `class_queries_logits`.
            point_sampler ([`HyperSegPointSampler`], *optional*):
                Source of the sampled points; one `matching_points` call per image, in batch order.

        Returns:
            `list[tuple[torch.Tensor, torch.Tensor]]`: per image, `(query_indices, target_indices)` (int64, query
            indices ascending) of length `min(num_queries, num_targets)`.
        """
        if class_queries_logits is not None and class_labels is None:
            raise ValueError("`class_labels` are required to match with `class_queries_logits`.")
        point_sampler = point_sampler if point_sampler is not None else HyperSegPointSampler()
        indices = []
        for b in range(masks_queries_logits.shape[0]):
            points = point_sampler.matching_points(self.num_points, masks_queries_logits.device)
            cost = self.cost_matrix(
                masks_queries_logits[b],
                mask_labels[b],
                points,
                class_queries_logits[b] if class_queries_logits is not None else None,
                class_labels[b] if class_queries_logits is not None else None,
            )
            # NaN / inf costs (a diverged prediction) would make scipy raise: give them the largest cost instead
            max_value = torch.finfo(cost.dtype).max
            cost = torch.nan_to_num(cost, nan=max_value, posinf=max_value, neginf=max_value)
            query_indices, target_indices = linear_sum_assignment(cost.cpu())
            indices.append(
                (torch.as_tensor(query_indices, dtype=torch.int64), torch.as_tensor(target_indices, dtype=torch.int64))
            )
        return indices


class HyperSegLoss(nn.Module):
    """HyperSeg criterion (PSALM's `PSALM_criterion`; InstructSeg's criterion is its [SEG]/mask/dice subset).

    Each decoder layer is matched afresh and supervised with the terms its logits allow: `loss_mask` and `loss_dice`
    always, `loss_SEG_class` with `seg_queries_logits` (referring / reasoning / video), `loss_class_name_class` with
    `class_queries_logits` (generic segmentation), `loss_region_class` with `region_queries_logits` (interactive).
    Terms whose logits are absent are skipped. The returned terms are unweighted; [`get_weighted_loss_dict`] applies
    the weights (mask and dice weights for their terms, the class weight for the three classification terms).

    Args:
        class_weight (`float`, *optional*, defaults to 2.0):
            Weight of the classification terms and of the class cost in the matcher.
        mask_weight (`float`, *optional*, defaults to 5.0):
            Weight of `loss_mask` and of the mask cost in the matcher.
        dice_weight (`float`, *optional*, defaults to 5.0):
            Weight of `loss_dice` and of the dice cost in the matcher.
        num_points (`int`, *optional*, defaults to 12544):
            Points sampled per mask, in the matcher and in the mask losses.
        oversample_ratio (`float`, *optional*, defaults to 3.0):
            Oversampling factor of the importance sampling.
        importance_sample_ratio (`float`, *optional*, defaults to 0.75):
            Fraction of the loss points chosen by uncertainty.
        background_class_weight (`float`, *optional*, defaults to 0.1):
            Cross-entropy class weight of the last ("background") class-name column.
        point_sampler ([`HyperSegPointSampler`], *optional*):
            Source of all random points; defaults to one drawing from the global torch generator.
    """

    def __init__(
        self,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        background_class_weight: float = 0.1,
        point_sampler: HyperSegPointSampler | None = None,
    ):
        super().__init__()
        self.matcher = HyperSegHungarianMatcher(
            cost_class=class_weight, cost_mask=mask_weight, cost_dice=dice_weight, num_points=num_points
        )
        self.weight_dict = {
            "loss_mask": mask_weight,
            "loss_dice": dice_weight,
            "loss_SEG_class": class_weight,
            "loss_class_name_class": class_weight,
            "loss_region_class": class_weight,
        }
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.background_class_weight = background_class_weight
        self.point_sampler = point_sampler if point_sampler is not None else HyperSegPointSampler()

    def loss_masks(
        self,
        masks_queries_logits: Tensor,
        mask_labels: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
        num_masks: float,
    ) -> dict[str, Tensor]:
        """Point-sampled sigmoid BCE (`loss_mask`) and dice (`loss_dice`) of the matched (query, target) pairs.

        Args:
            masks_queries_logits (`torch.Tensor` of shape `(batch_size, num_queries, height, width)`):
                Mask logits.
            mask_labels (`list[torch.Tensor]`):
                Per image, target masks `(num_targets, height_padded, width_padded)`, all of the same padded size.
            indices (`list[tuple[torch.Tensor, torch.Tensor]]`):
                The matcher's output.
            num_masks (`float`):
                Normalizer, see [`get_num_masks`].
        """
        # matched pairs, image-major: [N, 1, h, w] / [N, 1, H, W]
        pred_masks = torch.cat([masks_queries_logits[b, query] for b, (query, _) in enumerate(indices)])[:, None]
        target_masks = torch.cat([mask_labels[b][target] for b, (_, target) in enumerate(indices)])[:, None]
        pred_masks = pred_masks.float()

        with torch.no_grad():
            point_coordinates = self.point_sampler.importance_points(
                pred_masks, self.num_points, self.oversample_ratio, self.importance_sample_ratio
            )
            point_labels = sample_point(
                target_masks.to(device=pred_masks.device, dtype=torch.float32), point_coordinates, align_corners=False
            ).squeeze(1)
        point_logits = sample_point(pred_masks, point_coordinates, align_corners=False).squeeze(1)

        return {
            "loss_mask": sigmoid_cross_entropy_loss(point_logits, point_labels, num_masks),
            "loss_dice": dice_loss(point_logits, point_labels, num_masks),
        }

    def loss_seg_labels(
        self, seg_queries_logits: Tensor, indices: list[tuple[Tensor, Tensor]], num_masks: float
    ) -> dict[str, Tensor]:
        """BCE of the [SEG] logits `(batch_size, num_queries)`: 1 at the matched queries, 0 elsewhere."""
        logits = seg_queries_logits.float()
        target = torch.zeros_like(logits)
        for b, (query, _) in enumerate(indices):
            target[b, query] = 1.0
        return {"loss_SEG_class": self._positive_weighted_bce(logits, target, num_masks)}

    def loss_region_labels(
        self,
        region_queries_logits: list[Tensor],
        mask_labels: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
        num_masks: float,
    ) -> dict[str, Tensor]:
        """BCE of the region logits, per image `(num_regions, num_queries)`: 1 at (region j, query i) for every matched
        pair (query i, target j). Region prompt j is the prompt of target mask j."""
        logits, targets = [], []
        for sample_logits, masks, (query, target) in zip(region_queries_logits, mask_labels, indices):
            if sample_logits.shape[0] != masks.shape[0]:
                raise ValueError(
                    f"Got region logits for {sample_logits.shape[0]} regions and {masks.shape[0]} target masks; "
                    "target j must be the mask of region prompt j."
                )
            sample_logits = sample_logits.float()
            sample_target = torch.zeros_like(sample_logits)
            sample_target[target, query] = 1.0
            logits.append(sample_logits.flatten())
            targets.append(sample_target.flatten())
        return {"loss_region_class": self._positive_weighted_bce(torch.cat(logits), torch.cat(targets), num_masks)}

    def loss_class_name_labels(
        self,
        class_queries_logits: Tensor,
        class_labels: list[Tensor],
        indices: list[tuple[Tensor, Tensor]],
    ) -> dict[str, Tensor]:
        """Cross-entropy of the class-name logits `(batch_size, num_queries, num_classes)`.

        Matched queries take their target's class, unmatched ones the last class (background). Written here rather than
        reusing `Mask2FormerLoss.loss_labels` (same math) because that method is bound to a `Mask2FormerConfig`
        (`num_labels`, `eos_coef` buffer) while the number of class names here changes from batch to batch.
        """
        logits = class_queries_logits.float()
        num_classes = logits.shape[-1]
        # [B, Q], background everywhere but at the matched queries
        target_classes = torch.full(logits.shape[:2], num_classes - 1, dtype=torch.int64, device=logits.device)
        for b, (query, target) in enumerate(indices):
            target_classes[b, query] = class_labels[b][target].to(logits.device)
        class_weights = torch.ones(num_classes, device=logits.device)
        class_weights[-1] = self.background_class_weight
        loss = F.cross_entropy(logits.reshape(-1, num_classes), target_classes.reshape(-1), weight=class_weights)
        return {"loss_class_name_class": loss}

    @staticmethod
    def _positive_weighted_bce(logits: Tensor, targets: Tensor, num_masks: float) -> Tensor:
        """Mean BCE-with-logits over all entries, positives weighted by `(num_entries - num_masks) / num_masks`.
        Without any entry (e.g. no region prompt in the batch) the loss is 0 instead of the NaN mean of nothing."""
        if logits.numel() == 0:
            return logits.sum()
        pos_weight = torch.tensor((logits.numel() - num_masks) / num_masks, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)

    def get_num_masks(self, mask_labels: list[Tensor], device: torch.device) -> float:
        """Number of target masks of the batch, averaged over processes when torch.distributed is initialised, at
        least 1."""
        num_masks = torch.as_tensor([float(sum(len(masks) for masks in mask_labels))], device=device)
        world_size = 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(num_masks)
            world_size = torch.distributed.get_world_size()
        return torch.clamp(num_masks / world_size, min=1).item()

    def layer_losses(
        self,
        prediction: dict[str, Tensor],
        mask_labels: list[Tensor],
        class_labels: list[Tensor] | None,
        num_masks: float,
    ) -> tuple[dict[str, Tensor], list[tuple[Tensor, Tensor]]]:
        """Matches one decoder layer's prediction and computes its loss terms.

        Returns:
            The unweighted loss terms of the layer (no suffix) and the matcher's indices.
        """
        masks_queries_logits = prediction["masks_queries_logits"]
        seg_queries_logits = prediction.get("seg_queries_logits")
        class_queries_logits = prediction.get("class_queries_logits")
        region_queries_logits = prediction.get("region_queries_logits")

        indices = self.matcher(
            masks_queries_logits, mask_labels, class_queries_logits, class_labels, point_sampler=self.point_sampler
        )
        losses = {}
        if seg_queries_logits is not None:
            losses.update(self.loss_seg_labels(seg_queries_logits, indices, num_masks))
        if class_queries_logits is not None:
            losses.update(self.loss_class_name_labels(class_queries_logits, class_labels, indices))
        losses.update(self.loss_masks(masks_queries_logits, mask_labels, indices, num_masks))
        if region_queries_logits is not None:
            losses.update(self.loss_region_labels(region_queries_logits, mask_labels, indices, num_masks))
        return losses, indices

    def forward(
        self,
        predictions: list[dict[str, Tensor]],
        mask_labels: list[Tensor],
        class_labels: list[Tensor] | None = None,
        return_indices: bool = False,
    ) -> dict[str, Tensor] | tuple[dict[str, Tensor], list[list[tuple[Tensor, Tensor]]]]:
        """Computes the losses of every decoder layer.

        Args:
            predictions (`list[dict[str, torch.Tensor]]`):
                One entry per decoder layer, in decoder order: the first entry is the prediction made before the first
                decoder layer, the **last entry is the final output**. Each is a mapping (a dict or a `ModelOutput`)
                with `masks_queries_logits` `(batch_size, num_queries, height, width)` and optionally
                `seg_queries_logits` `(batch_size, num_queries)`, `class_queries_logits`
                `(batch_size, num_queries, num_classes)` (last class = background) and `region_queries_logits` (a list
                with one `(num_regions, num_queries)` tensor per image). Any float dtype; upcast to fp32.
            mask_labels (`list[torch.Tensor]`):
                Per image, binary target masks `(num_targets, height_padded, width_padded)` (float or uint8),
                zero-padded bottom/right to the padded model input; may have `num_targets = 0`.
            class_labels (`list[torch.Tensor]`, *optional*):
                Per image, target class indices `(num_targets,)`; required with `class_queries_logits`.
            return_indices (`bool`, *optional*, defaults to `False`):
                Also return the matcher's indices, per layer (in the order of `predictions`) and per image.

        Returns:
            `dict[str, torch.Tensor]`: the unweighted loss terms; the final layer's keys have no suffix, the key of
            `predictions[i]` (i < len - 1) has suffix `_i` (PSALM's `aux_outputs[i]`). Layers are processed final
            first, then 0, 1, ..., as in the original criterion, which fixes the order of the random draws.
        """
        num_layers = len(predictions)
        num_masks = self.get_num_masks(mask_labels, predictions[-1]["masks_queries_logits"].device)

        losses = {}
        indices_per_layer = [None] * num_layers
        for layer in [num_layers - 1, *range(num_layers - 1)]:
            layer_losses, indices_per_layer[layer] = self.layer_losses(
                predictions[layer], mask_labels, class_labels, num_masks
            )
            suffix = "" if layer == num_layers - 1 else f"_{layer}"
            losses.update({f"{key}{suffix}": value for key, value in layer_losses.items()})

        if return_indices:
            return losses, indices_per_layer
        return losses

    def get_weighted_loss_dict(self, loss_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Multiplies every term of `loss_dict` (output of `forward`) by its weight; the total loss is the sum."""
        return {key: value * self.weight_dict[_LAYER_SUFFIX.sub("", key)] for key, value in loss_dict.items()}
