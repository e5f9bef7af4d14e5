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
"""HyperSeg model configuration."""

import copy

from transformers import AutoConfig, Mask2FormerConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


# No @strict: as remote code for several transformers 5.x releases the config keeps unknown keys as attributes.
# The docstring is written out: @auto_docstring only knows transformers' own arguments.
# trf-ignore: TRF010, trf-ignore: TRF057
class HyperSegConfig(PreTrainedConfig):
    r"""
    Configuration of [`HyperSegForUniversalSegmentation`]: a vision-language LLM (SigLIP + Phi) whose hidden states
    drive a Mask2Former-style mask decoder over a Swin backbone (arXiv 2411.17606).

    The defaults of the HyperSeg-specific fields are the released HyperSeg-3B values; the sub-models default to their
    own library defaults, so a real-size config is built with [`~HyperSegConfig.hyperseg_3b`].

    Args:
        text_config (`PhiConfig` or `dict`, *optional*):
            The language model (Phi-2 for HyperSeg-3B).
        vision_config (`SiglipVisionConfig` or `dict`, *optional*):
            The vision tower whose features fill the `<image>` tokens (SigLIP so400m-patch14-384).
        backbone_config (`SwinConfig` or `dict`, *optional*):
            The Swin backbone feeding the pixel decoder and the fine-grained visual perceiver. Its four stage outputs
            (strides 4, 8, 16, 32) are used.
        vision_feature_layer (`int`, *optional*, defaults to -2):
            Index into the vision tower's hidden states whose output is projected into the LLM. Layers after it are
            not built at all.
        projector_hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation between the two linear layers of the vision-to-LLM projector.
        num_queries (`int`, *optional*, defaults to 100):
            Number of mask queries (learned LLM input embeddings at the `<seg>` placeholders).
        mask_decoder_hidden_size (`int`, *optional*, defaults to 256):
            Width of the masked-attention decoder and of the prompt embeddings it scores its queries against.
        mask_decoder_layers (`int`, *optional*, defaults to 10):
            Number of mask predictions: one from the un-updated queries, then one per decoder layer
            (`mask_decoder_layers - 1` layers, as in Mask2Former's `decoder_layers`).
        mask_decoder_attention_heads (`int`, *optional*, defaults to 8):
            Attention heads of the mask decoder and of the deformable pixel-decoder encoder.
        mask_decoder_feedforward_dim (`int`, *optional*, defaults to 2048):
            Feed-forward width of the mask decoder layers.
        pixel_decoder_hidden_size (`int`, *optional*, defaults to 256):
            Channel width of the pixel decoder (`CONVS_DIM`).
        mask_feature_size (`int`, *optional*, defaults to 256):
            Channels of the 1/4-resolution mask features (`MASK_DIM`).
        pixel_decoder_layers (`int`, *optional*, defaults to 6):
            Deformable-attention encoder layers of the pixel decoder.
        pixel_decoder_feedforward_dim (`int`, *optional*, defaults to 1024):
            Feed-forward width of those layers (HyperSeg hard-codes 1024, not the mask decoder's 2048).
        perceiver_type (`str`, *optional*, defaults to `"fine_grained"`):
            What fills the `<temporal>` placeholders: `"fine_grained"` (HyperSeg's perceiver over the Swin scales,
            whose latents are carried from one video frame to the next), `"object_aware"` (InstructSeg's perceiver
            over reference frames and the prompt) or `None` (no such tokens; no video tasks).
        perceiver_num_latents (`int`, *optional*, defaults to 128):
            Latent tokens of the perceiver (per reference frame for `"object_aware"`).
        perceiver_hidden_size (`int`, *optional*, defaults to 512):
            Width of the fine-grained perceiver latents (the object-aware perceiver works at the LLM width).
        perceiver_num_layers (`int`, *optional*, defaults to 3):
            Perceiver depth; the fine-grained perceiver has one layer per Swin scale (strides 8, 16, 32).
        perceiver_num_heads (`int`, *optional*, defaults to 8):
            Attention heads of the perceiver.
        perceiver_head_dim (`int`, *optional*, defaults to 64):
            Width of one perceiver attention head (the inner width is `heads * head_dim`).
        perceiver_ff_mult (`int`, *optional*, defaults to 4):
            Feed-forward expansion of the perceiver.
        text_fusion (`str`, *optional*):
            `"vmtf"` for InstructSeg's vision-guided multi-granularity text fusion of the referring prompt, `None`
            for HyperSeg's mean prompt state.
        text_fusion_hidden_size, text_fusion_num_heads, text_fusion_head_dim, text_fusion_num_layers, text_fusion_ff_mult (`int`, *optional*):
            Sizes of that fusion (released InstructSeg: 1024, 8, 128, 3, 2).
        prompt_heads (`list[str]`, *optional*, defaults to `["seg", "class", "region"]`):
            Which prompt kinds the mask queries can be scored against: referring `[SEG]`, class names, regions.
        lm_head_vocab_size (`int`, *optional*):
            Rows of the language-model head when they differ from `text_config.vocab_size` (the released checkpoints
            keep 51200 rows while the embeddings follow the tokenizer).
        region_sample_points (`int`, *optional*, defaults to 512):
            Points sampled inside each visual-prompt region to pool its feature.
        region_sampler_seed (`int`, *optional*, defaults to 0):
            Seed of the generator used for region point sampling, so that inference is deterministic.
        image_token_id, temporal_token_id, query_token_id, region_token_id (`int`, *optional*):
            Ids of the placeholder tokens filled with projected image features, perceiver latents, mask queries and
            pooled region features.
        seg_token_id (`int`, *optional*):
            Id of the `[SEG]` token closing every pooled prompt.
        default_prompt_inputs (`dict[str, list[int]]`, *optional*):
            The prompt run when `forward` gets pixels but no `input_ids` (as transformers' `image-segmentation`
            pipeline calls it): the panoptic prompt over `id2label`, as `input_ids`, `attention_mask` and
            `class_prompt_index` with every placeholder run collapsed to one token. Written by
            [`HyperSegProcessor.set_default_vocabulary`].
        class_weight, mask_weight, dice_weight (`float`, *optional*, defaults to 2.0, 5.0, 5.0):
            Weights of the classification-type terms (SEG / class-name / region) and of the mask BCE and dice terms.
        background_class_weight (`float`, *optional*, defaults to 0.1):
            Cross-entropy weight of the trailing "background" class in the class-name loss.
        train_num_points (`int`, *optional*, defaults to 12544):
            Points sampled per mask for matching and for the mask losses.
        oversample_ratio (`float`, *optional*, defaults to 3.0), importance_sample_ratio (`float`, *optional*, defaults to 0.75):
            Importance sampling of the mask-loss points.
    """

    model_type = "hyperseg"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="phi"),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="siglip_vision_model"),
        "backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="swin"),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    backbone_config: dict | PreTrainedConfig | None = None
    vision_feature_layer: int = -2
    projector_hidden_act: str = "gelu"
    num_queries: int = 100
    mask_decoder_hidden_size: int = 256
    mask_decoder_layers: int = 10
    mask_decoder_attention_heads: int = 8
    mask_decoder_feedforward_dim: int = 2048
    pixel_decoder_hidden_size: int = 256
    mask_feature_size: int = 256
    pixel_decoder_layers: int = 6
    pixel_decoder_feedforward_dim: int = 1024
    perceiver_type: str | None = "fine_grained"
    perceiver_num_latents: int = 128
    perceiver_hidden_size: int = 512
    perceiver_num_layers: int = 3
    perceiver_num_heads: int = 8
    perceiver_head_dim: int = 64
    perceiver_ff_mult: int = 4
    text_fusion: str | None = None
    text_fusion_hidden_size: int = 1024
    text_fusion_num_heads: int = 8
    text_fusion_head_dim: int = 128
    text_fusion_num_layers: int = 3
    text_fusion_ff_mult: int = 2
    prompt_heads: list[str] | None = None
    lm_head_vocab_size: int | None = None
    region_sample_points: int = 512
    region_sampler_seed: int = 0
    image_token_id: int | None = None
    temporal_token_id: int | None = None
    query_token_id: int | None = None
    region_token_id: int | None = None
    seg_token_id: int | None = None
    default_prompt_inputs: dict[str, list[int]] | None = None
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    background_class_weight: float = 0.1
    train_num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    initializer_range: float = 0.02

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.backbone_config.out_features != ["stage1", "stage2", "stage3", "stage4"]:
            # the pixel decoder needs all four strides (4, 8, 16, 32)
            self.backbone_config.out_features = ["stage1", "stage2", "stage3", "stage4"]
            self.backbone_config.out_indices = [1, 2, 3, 4]
        if self.prompt_heads is None:
            self.prompt_heads = ["seg", "class", "region"]
        unknown_heads = set(self.prompt_heads) - {"seg", "class", "region"}
        if unknown_heads:
            raise ValueError(f"unknown prompt_heads {sorted(unknown_heads)}; allowed: seg, class, region")
        if self.perceiver_type not in ("fine_grained", "object_aware", None):
            raise ValueError(f"perceiver_type must be 'fine_grained', 'object_aware' or None, got {self.perceiver_type!r}")
        if self.perceiver_type == "fine_grained" and self.perceiver_num_layers != 3:
            raise ValueError("the fine-grained perceiver has one layer per Swin scale: perceiver_num_layers must be 3")
        if self.text_fusion not in ("vmtf", None):
            raise ValueError(f"text_fusion must be 'vmtf' or None, got {self.text_fusion!r}")
        if self.pixel_decoder_hidden_size % 32 or self.mask_feature_size % 32:
            raise ValueError(
                "pixel_decoder_hidden_size and mask_feature_size must be multiples of 32 (GroupNorm with 32 groups), "
                f"got {self.pixel_decoder_hidden_size} and {self.mask_feature_size}"
            )

    @property
    def num_image_tokens(self) -> int:
        """Number of `<image>` tokens: one per vision-tower patch."""
        return (self.vision_config.image_size // self.vision_config.patch_size) ** 2

    @property
    def seg_embedding_size(self) -> int:
        """Width of the pooled referring-prompt embedding before its projection to the decoder width."""
        return 2 * self.text_fusion_hidden_size if self.text_fusion == "vmtf" else self.text_config.hidden_size

    @property
    def backbone_channels(self) -> list[int]:
        """Channels of the Swin stage outputs at strides 4, 8, 16, 32."""
        embed_dim = self.backbone_config.embed_dim
        return [embed_dim * 2**stage for stage in range(len(self.backbone_config.depths))]

    def mask2former_config(self) -> Mask2FormerConfig:
        """The Mask2Former configuration whose pixel decoder and masked-attention decoder HyperSeg reuses."""
        return Mask2FormerConfig(
            # a copy: Mask2FormerConfig would reset the attention implementation of the backbone config it is given
            backbone_config=copy.deepcopy(self.backbone_config),
            feature_size=self.pixel_decoder_hidden_size,
            mask_feature_size=self.mask_feature_size,
            encoder_layers=self.pixel_decoder_layers,
            encoder_feedforward_dim=self.pixel_decoder_feedforward_dim,
            hidden_dim=self.mask_decoder_hidden_size,
            decoder_layers=self.mask_decoder_layers,
            num_attention_heads=self.mask_decoder_attention_heads,
            dim_feedforward=self.mask_decoder_feedforward_dim,
            num_queries=self.num_queries,
            feature_strides=[4, 8, 16, 32],
            common_stride=4,
            pre_norm=False,
            enforce_input_projection=False,
            dropout=0.0,
        )

    @classmethod
    def hyperseg_3b(cls, **kwargs) -> "HyperSegConfig":
        """The released HyperSeg-3B architecture: Phi-2, SigLIP so400m-patch14-384, Swin-B at 1024 px."""
        text_config = {
            "model_type": "phi",
            "vocab_size": 51200,
            "hidden_size": 2560,
            "intermediate_size": 10240,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "hidden_act": "gelu_pytorch_tanh",  # Phi-2's `gelu_new`, fused (see the conversion script)
            "layer_norm_eps": 1e-5,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.4},
            "qk_layernorm": False,
            "tie_word_embeddings": False,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attention_dropout": 0.0,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "pad_token_id": 50256,
        }
        vision_config = {
            "model_type": "siglip_vision_model",
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 14,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
            "vision_use_head": False,
        }
        backbone_config = {
            "model_type": "swin",
            "image_size": 1024,
            "patch_size": 4,
            "embed_dim": 128,
            "depths": [2, 2, 18, 2],
            "num_heads": [4, 8, 16, 32],
            "window_size": 12,
            "mlp_ratio": 4.0,
            "qkv_bias": True,
            "hidden_act": "gelu",
            "use_absolute_embeddings": False,
            "layer_norm_eps": 1e-5,
            "drop_path_rate": 0.3,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "out_features": ["stage1", "stage2", "stage3", "stage4"],
        }
        defaults = {
            "text_config": text_config,
            "vision_config": vision_config,
            "backbone_config": backbone_config,
            # the released tokenizer's [SEG]; placeholder ids follow the 50296 ids of the Phi-2 tokenizer
            "seg_token_id": 50295,
            "image_token_id": 50296,
            "temporal_token_id": 50297,
            "query_token_id": 50298,
            "region_token_id": 50299,
        }
        defaults.update(kwargs)
        return cls(**defaults)

    @classmethod
    def instructseg_3b(cls, **kwargs) -> "HyperSegConfig":
        """
        The released InstructSeg architecture: HyperSeg-3B's LLM, towers and mask decoder, with the object-aware video
        perceiver (128 latents per reference frame, 8 heads x 128, depth 3, FF x2) instead of the fine-grained one,
        VMTF text fusion (1024 wide, 8 heads x 128, depth 3, FF x2), and referring heads only.
        """
        defaults = {
            "perceiver_type": "object_aware",
            "perceiver_num_latents": 128,
            "perceiver_num_heads": 8,
            "perceiver_head_dim": 128,
            "perceiver_num_layers": 3,
            "perceiver_ff_mult": 2,
            "text_fusion": "vmtf",
            "text_fusion_hidden_size": 1024,
            "text_fusion_num_heads": 8,
            "text_fusion_head_dim": 128,
            "text_fusion_num_layers": 3,
            "text_fusion_ff_mult": 2,
            "prompt_heads": ["seg"],
        }
        defaults.update(kwargs)
        return cls.hyperseg_3b(**defaults)


__all__ = ["HyperSegConfig"]
