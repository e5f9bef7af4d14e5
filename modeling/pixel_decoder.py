"""Multi-scale deformable-attention pixel decoder (Mask2Former's, with HyperSeg's biased FPN convolutions)."""

import torch
from torch import nn
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerPixelDecoder,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
)

from .configuration_hyperseg import HyperSegConfig


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_pixels: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """
    Multi-scale deformable attention (Deformable DETR): every query takes the attention-weighted sum of bilinear
    samples of the value maps, as `grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)` samples
    them level by level.

    All levels, heads and batch items are gathered in one `embedding_bag` call: each (query, head) is a bag of the
    four bilinear corners of each of its sampling points, weighted by bilinear weight x attention weight. Each level
    gets a zero border (one pixel before, two after) and the sampling points are clamped to one pixel outside the
    map, so that taps which `grid_sample` would read as zero padding read the border instead, and no tap leaves its
    level. No `(batch * heads, head_dim, queries, levels * points)` sample tensor is ever built.

    The sampling runs in float32 whatever the dtype of `value` (a bfloat16 sampling grid is too coarse: its
    coordinates are off by up to half a pixel on a 128-wide map), and the result is returned in `value`'s dtype.

    Args:
        value (`torch.Tensor` of shape `(batch_size, sequence_length, num_heads, head_dim)`):
            The value maps of all levels, flattened row-major and concatenated.
        spatial_shapes (`list[tuple[int, int]]`):
            `(height, width)` of each level, in the order of `value`.
        sampling_pixels (`torch.Tensor` of shape `(batch_size, num_queries, num_heads, num_levels, num_points, 2)`):
            `(x, y)` of each sampling point in pixels of its level, pixel centres at integers (`grid_sample`'s
            location `u` in `[0, 1]` is the pixel `u * size - 0.5`), float32.
        attention_weights (`torch.Tensor` of shape `(batch_size, num_queries, num_heads, num_levels, num_points)`):
            The weight of each sampling point.

    Returns:
        `torch.Tensor` of shape `(batch_size, num_queries, num_heads * head_dim)`.
    """
    batch_size, _, num_heads, head_dim = value.shape
    num_queries = sampling_pixels.shape[1]
    device = value.device

    # the value maps in float32, each with a zero border: one row / column before, two after
    lengths = [height * width for height, width in spatial_shapes]
    padded_lengths = [(height + 3) * (width + 3) for height, width in spatial_shapes]
    table = torch.cat(
        [
            # (batch, height, width, heads, head_dim) -> zero border -> (batch, (height + 3) * (width + 3), heads, head_dim)
            nn.functional.pad(level.unflatten(1, (height, width)).float(), (0, 0, 0, 0, 1, 2, 1, 2)).flatten(1, 2)
            for level, (height, width) in zip(value.split(lengths, dim=1), spatial_shapes)
        ],
        dim=1,
    )

    # past one pixel outside the map every tap is zero anyway
    maxima = torch.tensor([[width, height] for height, width in spatial_shapes], device=device).unsqueeze(1)
    pixels = sampling_pixels.clamp(min=torch.full_like(maxima, -1), max=maxima)
    corners = pixels.floor()
    fractions = pixels - corners  # (batch, queries, heads, levels, points, 2)
    corners = corners.int()

    # the row of table.view(-1, head_dim) read by each top-left corner: ((batch, padded position), head) row-major
    row_lengths = torch.tensor([width + 3 for _, width in spatial_shapes], device=device, dtype=torch.int32)
    level_starts = torch.tensor([0, *padded_lengths[:-1]], device=device, dtype=torch.int32).cumsum(0)
    batch_starts = torch.arange(batch_size, device=device, dtype=torch.int32) * sum(padded_lengths)
    origins = batch_starts.view(-1, 1, 1, 1) + level_starts + row_lengths + 1  # (batch, 1, 1, levels): pixel (0, 0)
    heads = torch.arange(num_heads, device=device, dtype=torch.int32).view(-1, 1)
    origins = (origins * num_heads + heads).unsqueeze(-1)  # (batch, 1, heads, levels, 1)
    top_left = corners[..., 1] * (row_lengths * num_heads).view(-1, 1) + corners[..., 0] * num_heads + origins
    ones = torch.ones_like(row_lengths)
    corner_steps = torch.stack([ones - 1, ones, row_lengths, row_lengths + 1], -1)  # (levels, 4)
    indices = top_left.unsqueeze(-1) + (corner_steps * num_heads).unsqueeze(1)  # the 4 corners, row-major

    x_weights = torch.stack([1 - fractions[..., 0], fractions[..., 0]], -1)
    y_weights = torch.stack([1 - fractions[..., 1], fractions[..., 1]], -1) * attention_weights.unsqueeze(-1)
    weights = y_weights.unsqueeze(-1) * x_weights.unsqueeze(-2)  # (..., 2, 2): the corners in the same order

    output = nn.functional.embedding_bag(
        indices.view(batch_size * num_queries * num_heads, -1),
        table.view(-1, head_dim),
        per_sample_weights=weights.view(batch_size * num_queries * num_heads, -1),
        mode="sum",
    )
    return output.view(batch_size, num_queries, num_heads * head_dim).to(value.dtype)


class HyperSegMultiscaleDeformableAttention(Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention):
    """
    Mask2Former's deformable self-attention of the pixel-decoder encoder (same weights), computed with
    [`multi_scale_deformable_attention`]: the sampling locations stay in float32 in a bfloat16 model.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | None = None,
        reference_points: torch.Tensor | None = None,
        spatial_shapes_list: list[tuple[int, int]] | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_queries, hidden_size)`): the queries.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): `True` on padded
                positions of `encoder_hidden_states`, whose values are zeroed.
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, sequence_length, hidden_size)`): the
                flattened multi-scale maps the values come from.
            position_embeddings (`torch.Tensor`, *optional*): added to the queries.
            reference_points (`torch.Tensor` of shape `(batch_size, num_queries, num_levels, 2)`): normalised `(x, y)`
                reference point of each query on each level.
            spatial_shapes_list (`list[tuple[int, int]]`): `(height, width)` of each level.

        Returns:
            `tuple(torch.Tensor, torch.Tensor)`: the attention output `(batch_size, num_queries, hidden_size)` and
            the attention weights `(batch_size, num_queries, num_heads, num_levels, num_points)`.
        """
        if position_embeddings is not None:
            hidden_states = hidden_states + position_embeddings
        batch_size, num_queries, _ = hidden_states.shape
        value = self.value_proj(encoder_hidden_states)
        if attention_mask is not None:
            value = value.masked_fill(attention_mask[..., None], 0.0)
        value = value.view(batch_size, -1, self.n_heads, self.d_model // self.n_heads)
        sampling_offsets = self.sampling_offsets(hidden_states).view(
            batch_size, num_queries, self.n_heads, self.n_levels, self.n_points, 2
        )
        attention_weights = self.attention_weights(hidden_states).view(
            batch_size, num_queries, self.n_heads, self.n_levels * self.n_points
        )
        attention_weights = attention_weights.softmax(-1).view(
            batch_size, num_queries, self.n_heads, self.n_levels, self.n_points
        )
        # the offsets are in pixels of each level, the reference points normalised; their sum is taken in float32
        sizes = torch.tensor([[width, height] for height, width in spatial_shapes_list], device=value.device)
        reference_pixels = reference_points.float() * sizes - 0.5  # (batch, queries, levels, 2)
        sampling_pixels = reference_pixels[:, :, None, :, None, :] + sampling_offsets
        output = multi_scale_deformable_attention(value, spatial_shapes_list, sampling_pixels, attention_weights)
        return self.output_proj(output), attention_weights


class HyperSegPixelDecoder(Mask2FormerPixelDecoder):
    """
    Mask2Former's pixel decoder over the Swin features at strides 4-32. Returns the 1/4-resolution mask features and
    the 1/32, 1/16, 1/8 maps the mask decoder cross-attends to.

    HyperSeg's extra FPN level differs from transformers' in two ways, both held here: its lateral and output
    convolutions have biases, and the lateral branch ends with a ReLU. The deformable attention is
    [`HyperSegMultiscaleDeformableAttention`] (same weights), which runs in bfloat16 too.
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__(config.mask2former_config(), feature_channels=config.backbone_channels)
        hidden_size = config.pixel_decoder_hidden_size
        # lateral_convolutions / output_convolutions alias these Sequentials, so in-place edits reach both
        for level, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral = getattr(self, f"adapter_{level + 1}")
            lateral[0] = nn.Conv2d(in_channels, hidden_size, kernel_size=1)
            lateral.append(nn.ReLU())
            output = getattr(self, f"layer_{level + 1}")
            output[0] = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1)
        for layer in self.encoder.layers:
            attention = layer.self_attn
            layer.self_attn = HyperSegMultiscaleDeformableAttention(
                attention.d_model, attention.n_heads, attention.n_levels, attention.n_points
            )

    def get_valid_ratio(self, mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The valid ratios, always in float32: the encoder derives its reference points from them."""
        return super().get_valid_ratio(mask, dtype=torch.float32)
