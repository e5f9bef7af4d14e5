"""The LLM's vision branch: a SigLIP tower cut after the selected layer, and the projector into the LLM width."""

import torch
from torch import nn
from transformers import SiglipVisionModel
from transformers.activations import ACT2FN

from .configuration_hyperseg import HyperSegConfig


def build_vision_tower(config: HyperSegConfig) -> SiglipVisionModel:
    """
    SigLIP patch embeddings and encoder layers up to `config.vision_feature_layer`, whose `last_hidden_state` is
    `hidden_states[vision_feature_layer]` of the full tower.

    HyperSeg reads that hidden state raw (no post-LayerNorm, no pooling head), so the layers after it, the
    post-LayerNorm and the head are not built: nothing is computed only to be thrown away.
    """
    vision_config = config.vision_config
    num_layers = vision_config.num_hidden_layers
    feature_layer = config.vision_feature_layer
    # hidden_states has num_layers + 1 entries (embeddings first)
    kept_layers = feature_layer if feature_layer >= 0 else num_layers + 1 + feature_layer
    if not 0 <= kept_layers <= num_layers:
        raise ValueError(f"vision_feature_layer={feature_layer} is outside the {num_layers + 1} hidden states of the vision tower")
    if vision_config.vision_use_head:
        raise ValueError("HyperSeg does not use the SigLIP pooling head: set vision_config.vision_use_head=False")
    tower = SiglipVisionModel(vision_config)
    tower.encoder.layers = tower.encoder.layers[:kept_layers]
    tower.post_layernorm = nn.Identity()
    return tower


class HyperSegMultiModalProjector(nn.Module):
    """Linear -> activation -> Linear from the vision-tower width to the LLM width (`mlp2x_gelu`)."""

    def __init__(self, config: HyperSegConfig):
        super().__init__()
        self.linear_1 = nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size)
        self.act = ACT2FN[config.projector_hidden_act]
        self.linear_2 = nn.Linear(config.text_config.hidden_size, config.text_config.hidden_size)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(image_features)))
