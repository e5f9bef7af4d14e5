"""Fine-grained visual perceiver (FVP) and the temporal latents it carries from one video frame to the next."""

import torch
from torch import nn

from .configuration_hyperseg import HyperSegConfig
from .perceiver import PerceiverResampler


class FineGrainedVisualPerceiver(nn.Module):
    """
    Compresses the Swin features at strides 8, 16 and 32 into `perceiver_num_latents` tokens for the LLM.

    Layer `i` of the perceiver reads scale `i` (projected to the perceiver width, plus a level embedding). The
    latents start from a learned set for an image or the first video frame; for later frames they are the
    `temporal_latents` returned for the previous frame, i.e. the LLM's output states at the latent slots projected
    back to the perceiver width ([`~FineGrainedVisualPerceiver.next_latents`]).
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__()
        hidden_size = config.perceiver_hidden_size
        scale_channels = config.backbone_channels[1:]  # strides 8, 16, 32
        self.latents = nn.Parameter(torch.zeros(config.perceiver_num_latents, hidden_size))
        self.input_projections = nn.ModuleList(
            [nn.Conv2d(channels, hidden_size, kernel_size=1) for channels in scale_channels]
        )
        self.level_embed = nn.Embedding(len(scale_channels), hidden_size)
        self.resampler = PerceiverResampler(
            hidden_size,
            num_layers=len(scale_channels),
            num_heads=config.perceiver_num_heads,
            head_dim=config.perceiver_head_dim,
            ff_mult=config.perceiver_ff_mult,
        )
        self.output_projection = nn.Linear(hidden_size, config.text_config.hidden_size)
        self.temporal_projection = nn.Linear(config.text_config.hidden_size, hidden_size)

    def initial_latents(self, batch_size: int) -> torch.Tensor:
        return self.latents.unsqueeze(0).expand(batch_size, -1, -1)

    def forward(self, backbone_features: list[torch.Tensor], latents: torch.Tensor) -> torch.Tensor:
        """
        Args:
            backbone_features: the Swin outputs at strides 8, 16, 32, each (batch, channels, height, width).
            latents: (batch, num_latents, perceiver_hidden_size).

        Returns:
            (batch, num_latents, llm_hidden_size): the tokens that fill the `<temporal>` placeholders.
        """
        media = [
            projection(features).flatten(2).transpose(1, 2) + self.level_embed.weight[level]  # (batch, h*w, hidden)
            for level, (projection, features) in enumerate(zip(self.input_projections, backbone_features))
        ]
        return self.output_projection(self.resampler(latents, media))

    def next_latents(self, latent_states: torch.Tensor) -> torch.Tensor:
        """LLM output states at the latent slots (batch, num_latents, llm_hidden) -> the next frame's latents."""
        return self.temporal_projection(latent_states)
