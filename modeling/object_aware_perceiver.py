"""Object-aware video perceiver (OVP, InstructSeg): latents that read reference frames together with the prompt."""

import torch
from torch import nn

from .configuration_hyperseg import HyperSegConfig
from .perceiver import PerceiverResampler


class ObjectAwareVideoPerceiver(nn.Module):
    """
    For each reference frame, a perceiver updates a learned set of latent tokens by reading the frame's projected
    image tokens concatenated with the embedded referring prompt (instruction + `[SEG]`). Every layer reads the same
    tokens; frames are processed independently. The latents of all frames, in frame order, fill the `<temporal>`
    placeholders. For a still image the image itself is the one reference frame.

    The perceiver works at the LLM width, so its output goes into the LLM as is.
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__()
        hidden_size = config.text_config.hidden_size
        self.latents = nn.Parameter(torch.zeros(config.perceiver_num_latents, hidden_size))
        self.resampler = PerceiverResampler(
            hidden_size,
            num_layers=config.perceiver_num_layers,
            num_heads=config.perceiver_num_heads,
            head_dim=config.perceiver_head_dim,
            ff_mult=config.perceiver_ff_mult,
        )

    def forward(self, frame_features: torch.Tensor, prompt_embeddings: list[torch.Tensor]) -> torch.Tensor:
        """
        Args:
            frame_features: (batch, num_frames, num_image_tokens, llm_hidden) projected reference-frame tokens.
            prompt_embeddings: per sample, (prompt_length, llm_hidden) input embeddings of the referring prompt.

        Returns:
            (batch, num_frames * num_latents, llm_hidden).
        """
        batch_size, num_frames = frame_features.shape[:2]
        outputs = []
        for features, prompt in zip(frame_features, prompt_embeddings):
            media = torch.cat([features, prompt.unsqueeze(0).expand(num_frames, -1, -1)], dim=1)  # (frames, n + prompt, hidden)
            latents = self.latents.unsqueeze(0).expand(num_frames, -1, -1)
            outputs.append(self.resampler(latents, media).flatten(0, 1))  # (frames * latents, hidden)
        return torch.stack(outputs)
