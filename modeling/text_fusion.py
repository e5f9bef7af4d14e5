"""Vision-guided multi-granularity text fusion (VMTF, InstructSeg): the `[SEG]` embedding from global and detailed text."""

import torch
from torch import nn

from .configuration_hyperseg import HyperSegConfig
from .perceiver import PerceiverResampler


class VisionGuidedTextFusion(nn.Module):
    """
    Builds the embedding the mask queries are scored against from the LLM states of the referring prompt:

    - global: the mean prompt state, projected;
    - detailed: the mean state followed by every prompt state, projected and refined by a perceiver whose keys are
      the Swin stride-32 features (projected) plus the mean-state latent only; its first latent is kept.

    The two are concatenated (width `2 * text_fusion_hidden_size`).
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__()
        text_hidden = config.text_config.hidden_size
        hidden_size = config.text_fusion_hidden_size
        self.global_projection = nn.Linear(text_hidden, hidden_size)
        self.text_projection = nn.Linear(text_hidden, hidden_size)
        self.visual_projection = nn.Conv2d(config.backbone_channels[-1], hidden_size, kernel_size=1)
        self.resampler = PerceiverResampler(
            hidden_size,
            num_layers=config.text_fusion_num_layers,
            num_heads=config.text_fusion_num_heads,
            head_dim=config.text_fusion_head_dim,
            ff_mult=config.text_fusion_ff_mult,
            num_latent_keys=1,
        )

    def forward(self, prompt_states: list[torch.Tensor], coarse_features: torch.Tensor) -> torch.Tensor:
        """
        Args:
            prompt_states: per sample, (prompt_length, llm_hidden) LLM states of the referring prompt.
            coarse_features: (batch, channels, height/32, width/32) Swin features.

        Returns:
            (batch, 2 * text_fusion_hidden_size).
        """
        visual = self.visual_projection(coarse_features).flatten(2).transpose(1, 2)  # (batch, h*w, hidden)
        fused = []
        for states, sample_visual in zip(prompt_states, visual):
            pooled = states.mean(0, keepdim=True)  # (1, llm_hidden)
            latents = self.text_projection(torch.cat([pooled, states])).unsqueeze(0)  # (1, 1 + prompt, hidden)
            detail = self.resampler(latents, sample_visual.unsqueeze(0))[0, 0]
            fused.append(torch.cat([self.global_projection(pooled[0]), detail]))
        return torch.stack(fused)
