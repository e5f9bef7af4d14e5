"""Masked-attention mask decoder whose queries come from the LLM and whose scores are prompt dot products."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerMaskedAttentionDecoder,
    Mask2FormerMaskPredictor,
    Mask2FormerMLPPredictionHead,
    Mask2FormerSinePositionEmbedding,
)

from .configuration_hyperseg import HyperSegConfig


@dataclass
class MaskDecoderPrediction(ModelOutput):
    """
    One prediction of the mask decoder (from the un-updated queries, or after a decoder layer).

    Attributes:
        masks_queries_logits: (batch, num_queries, height/4, width/4) mask logits.
        seg_queries_logits: (batch, num_queries) similarity of each query to the `[SEG]` embedding of the
            referring / reasoning prompt, or `None` without such a prompt.
        class_queries_logits: (batch, num_queries, num_classes) similarity to each class-name prompt (the last one
            is "background"), or `None`.
        region_queries_logits: (batch, num_regions, num_queries) similarity to each visual-prompt region, or `None`.
    """

    masks_queries_logits: torch.Tensor | None = None
    seg_queries_logits: torch.Tensor | None = None
    class_queries_logits: torch.Tensor | None = None
    region_queries_logits: torch.Tensor | None = None


class SharedPixelMaskPredictor(Mask2FormerMaskPredictor):
    """
    Mask2Former's mask predictor (same parameters, same masks) that is cheap when several prompts read one image:
    the per-pixel embeddings of a batch-expanded (stride-0) image are multiplied once as a matrix instead of being
    copied per prompt, and the attention mask is returned once per prompt, `(batch, 1, queries, h*w)`, for
    [`MaskedCrossAttention`] to broadcast over heads (transformers repeats it per head, in float, before comparing).
    """

    def forward(self, outputs: torch.Tensor, pixel_embeddings: torch.Tensor, attention_mask_target_size: int):
        mask_embeddings = self.mask_embedder(outputs.transpose(0, 1))  # (batch, queries, channels)
        if pixel_embeddings.shape[0] > 1 and pixel_embeddings.stride(0) == 0:
            masks = torch.einsum("bqc,chw->bqhw", mask_embeddings, pixel_embeddings[0])
        else:
            masks = torch.einsum("bqc,bchw->bqhw", mask_embeddings, pixel_embeddings)
        attention_mask = nn.functional.interpolate(
            masks, size=attention_mask_target_size, mode="bilinear", align_corners=False
        )
        attention_mask = (attention_mask.sigmoid() < 0.5).flatten(2).unsqueeze(1)  # (batch, 1, queries, h*w)
        return masks, attention_mask.detach()


class MaskedCrossAttention(nn.MultiheadAttention):
    """
    The masked cross-attention of a decoder layer: `nn.MultiheadAttention`'s parameters and sequence-first interface,
    computed by `scaled_dot_product_attention` with the boolean mask of [`SharedPixelMaskPredictor`] broadcast over
    heads. (`nn.MultiheadAttention` turns the per-head mask into a float tensor of `(batch * heads, queries, h*w)`
    and, asked for the attention weights as the decoder layer does, computes them in full; nothing reads them.)
    """

    def forward(self, query, key, value, attn_mask=None, key_padding_mask=None):
        """query: (queries, batch, hidden); key, value: (h*w, batch, hidden); attn_mask: (batch, 1, queries, h*w),
        True where a query may not look. Returns `(output, None)` like `nn.MultiheadAttention` without weights."""
        if key_padding_mask is not None:
            raise ValueError("the mask decoder's cross-attention takes no key_padding_mask")
        query_weight, key_weight, value_weight = self.in_proj_weight.chunk(3)
        query_bias, key_bias, value_bias = self.in_proj_bias.chunk(3)
        batch_size, head_dim = query.shape[1], self.embed_dim // self.num_heads

        def heads(states, weight, bias):  # (length, batch, hidden) -> (batch, heads, length, head_dim)
            projected = nn.functional.linear(states, weight, bias)
            return projected.view(-1, batch_size, self.num_heads, head_dim).permute(1, 2, 0, 3)

        attended = nn.functional.scaled_dot_product_attention(
            heads(query, query_weight, query_bias),
            heads(key, key_weight, key_bias),
            heads(value, value_weight, value_bias),
            attn_mask=None if attn_mask is None else ~attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (batch, heads, queries, head_dim)
        attended = attended.permute(2, 0, 1, 3).reshape(-1, batch_size, self.embed_dim)
        return self.out_proj(attended), None


class HyperSegMaskDecoder(nn.Module):
    """
    Mask2Former's masked-attention decoder run on queries computed by the LLM (there are no learned query features).
    Each prediction's queries are scored against prompt embeddings through small MLP heads: `seg_head` for the
    pooled referring prompt, `class_head` for class names, `region_head` for visual-prompt regions (each built only
    when `config.prompt_heads` lists its kind).
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__()
        hidden_size = config.mask_decoder_hidden_size
        self.num_feature_levels = 3
        self.position_embedder = Mask2FormerSinePositionEmbedding(num_position_features=hidden_size // 2, normalize=True)
        self.queries_embedder = nn.Embedding(config.num_queries, hidden_size)
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_size)
        if config.pixel_decoder_hidden_size != hidden_size:
            self.input_projections = nn.ModuleList(
                [
                    nn.Conv2d(config.pixel_decoder_hidden_size, hidden_size, kernel_size=1)
                    for _ in range(self.num_feature_levels)
                ]
            )
        else:
            self.input_projections = nn.ModuleList([nn.Identity() for _ in range(self.num_feature_levels)])
        self.decoder = Mask2FormerMaskedAttentionDecoder(config.mask2former_config())
        # the same parameters, computed without per-head float masks and per-prompt copies of the pixel embeddings
        self.decoder.mask_predictor = SharedPixelMaskPredictor(
            hidden_size, config.mask_decoder_attention_heads, config.mask_feature_size
        )
        for layer in self.decoder.layers:
            layer.cross_attn = MaskedCrossAttention(hidden_size, config.mask_decoder_attention_heads, layer.dropout)
        heads = config.prompt_heads
        self.seg_head = self._prompt_head(hidden_size) if "seg" in heads else None
        self.class_head = self._prompt_head(hidden_size) if "class" in heads else None
        self.region_head = self._prompt_head(hidden_size) if "region" in heads else None

    @staticmethod
    def _prompt_head(hidden_size: int) -> Mask2FormerMLPPredictionHead:
        return Mask2FormerMLPPredictionHead(hidden_size, hidden_size, hidden_size, num_layers=2)

    def forward(
        self,
        queries: torch.Tensor,
        mask_features: torch.Tensor,
        multi_scale_features: tuple[torch.Tensor, ...],
        seg_embeddings: torch.Tensor | None = None,
        class_embeddings: torch.Tensor | None = None,
        region_embeddings: torch.Tensor | None = None,
        score_all_predictions: bool = False,
    ) -> list[MaskDecoderPrediction]:
        """
        Args:
            queries: (batch, num_queries, hidden) content of the decoder queries.
            mask_features: (batch, mask_feature_size, height/4, width/4).
            multi_scale_features: the 1/32, 1/16, 1/8 pixel-decoder maps.
            seg_embeddings: (batch, hidden) pooled referring prompt.
            class_embeddings: (batch, num_classes, hidden) pooled class-name prompts.
            region_embeddings: (batch, num_regions, hidden) region-prompt embeddings.
            score_all_predictions: score every prediction against the prompts (needed for deep supervision);
                otherwise only the final one gets prompt logits.

        Returns:
            One [`MaskDecoderPrediction`] per prediction, the final one last.
        """
        positions, keys, sizes = [], [], []
        for level in range(self.num_feature_levels):
            features = multi_scale_features[level]
            sizes.append(features.shape[-2:])
            position = self.position_embedder(features.shape, features.device, features.dtype, None)
            positions.append(position.flatten(2).permute(2, 0, 1))  # (h*w, batch, hidden)
            key = self.input_projections[level](features).flatten(2) + self.level_embed.weight[level][None, :, None]
            keys.append(key.permute(2, 0, 1))  # (h*w, batch, hidden)

        batch_size = queries.shape[0]
        query_positions = self.queries_embedder.weight.unsqueeze(1).repeat(1, batch_size, 1)  # (queries, batch, hidden)
        decoded = self.decoder(
            inputs_embeds=queries.transpose(0, 1),
            multi_stage_positional_embeddings=positions,
            pixel_embeddings=mask_features,
            encoder_hidden_states=keys,
            query_position_embeddings=query_positions,
            feature_size_list=sizes,
            return_dict=True,
        )

        predictions = []
        num_predictions = len(decoded.masks_queries_logits)
        for index, (states, masks) in enumerate(zip(decoded.intermediate_hidden_states, decoded.masks_queries_logits)):
            prediction = MaskDecoderPrediction(masks_queries_logits=masks)
            if score_all_predictions or index == num_predictions - 1:
                states = states.transpose(0, 1)  # (batch, queries, hidden)
                if seg_embeddings is not None:
                    prediction.seg_queries_logits = torch.einsum("bqd,bd->bq", self.seg_head(states), seg_embeddings)
                if class_embeddings is not None:
                    prediction.class_queries_logits = torch.einsum(
                        "bqd,bcd->bqc", self.class_head(states), class_embeddings
                    )
                if region_embeddings is not None:
                    prediction.region_queries_logits = torch.einsum(
                        "bkd,bqd->bkq", region_embeddings, self.region_head(states)
                    )
            predictions.append(prediction)
        return predictions
