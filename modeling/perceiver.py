"""Perceiver resampler: a fixed set of latent tokens that cross-attends to a sequence of media tokens.

Shared by HyperSeg's fine-grained visual perceiver (latents read one Swin scale per layer) and InstructSeg's
object-aware video perceiver and text fusion (latents read visual or textual tokens).
"""

import torch
from torch import nn


class PerceiverAttention(nn.Module):
    """
    Latents attend to the concatenation of the (normalised) media tokens and the first `num_latent_keys` latents
    (all of them when `None`). Bias-free projections; the inner width `num_heads * head_dim` need not equal
    `hidden_size`.
    """

    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, num_latent_keys: int | None = None):
        super().__init__()
        self.num_latent_keys = num_latent_keys
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        inner_dim = num_heads * head_dim
        self.media_norm = nn.LayerNorm(hidden_size)
        self.latents_norm = nn.LayerNorm(hidden_size)
        self.q_proj = nn.Linear(hidden_size, inner_dim, bias=False)
        self.kv_proj = nn.Linear(hidden_size, 2 * inner_dim, bias=False)
        self.o_proj = nn.Linear(inner_dim, hidden_size, bias=False)

    def _split_heads(self, states: torch.Tensor) -> torch.Tensor:
        batch_size, length, _ = states.shape
        return states.view(batch_size, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        media = self.media_norm(media)  # (batch, num_media, hidden)
        latents = self.latents_norm(latents)  # (batch, num_latents, hidden)
        query = self._split_heads(self.q_proj(latents)) * self.scale  # (batch, heads, num_latents, head_dim)
        key, value = self.kv_proj(torch.cat([media, latents[:, : self.num_latent_keys]], dim=1)).chunk(2, dim=-1)
        key, value = self._split_heads(key), self._split_heads(value)  # (batch, heads, num_media + num_keys, head_dim)
        attention = torch.matmul(query, key.transpose(-1, -2)).softmax(dim=-1)
        output = torch.matmul(attention, value).transpose(1, 2).flatten(2)  # (batch, num_latents, inner_dim)
        return self.o_proj(output)


class PerceiverFeedForward(nn.Module):
    """Pre-norm, bias-free two-layer MLP with exact GELU."""

    def __init__(self, hidden_size: int, ff_mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size)
        self.fc1 = nn.Linear(hidden_size, hidden_size * ff_mult, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_size * ff_mult, hidden_size, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(hidden_states))))


class PerceiverLayer(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, head_dim: int, ff_mult: int, num_latent_keys: int | None):
        super().__init__()
        self.attention = PerceiverAttention(hidden_size, num_heads, head_dim, num_latent_keys)
        self.feed_forward = PerceiverFeedForward(hidden_size, ff_mult)

    def forward(self, media: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        latents = self.attention(media, latents) + latents
        return self.feed_forward(latents) + latents


class PerceiverResampler(nn.Module):
    """
    `num_layers` perceiver layers followed by a LayerNorm. `media` is one sequence read by every layer, or a list
    with one sequence per layer.
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        head_dim: int,
        ff_mult: int,
        num_latent_keys: int | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            [PerceiverLayer(hidden_size, num_heads, head_dim, ff_mult, num_latent_keys) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, latents: torch.Tensor, media: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(media, torch.Tensor):
            media = [media] * len(self.layers)
        if len(media) != len(self.layers):
            raise ValueError(f"expected one media sequence per layer ({len(self.layers)}), got {len(media)}")
        for layer, layer_media in zip(self.layers, media):
            latents = layer(layer_media, latents)
        return self.norm(latents)
