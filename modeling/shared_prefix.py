"""Several prompts on one image: the beginning they share runs through the language model once."""

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicLayer


class SharedPrefixLayer(DynamicLayer):
    """
    One layer's keys and values of a prefix computed for a single sequence, read by a batch of continuations. Each
    `update` returns the prefix (broadcast over the batch) followed by the new states and stores nothing, so the prefix
    is held once whatever the batch size.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch_size = key_states.shape[0]
        keys = torch.cat([self.keys.expand(batch_size, -1, -1, -1), key_states], dim=-2)
        values = torch.cat([self.values.expand(batch_size, -1, -1, -1), value_states], dim=-2)
        return keys, values


def common_prefix_length(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """Number of leading positions where every sequence has the same input embedding and is attended."""
    shared = (inputs_embeds == inputs_embeds[:1]).all(-1).all(0)  # (length,)
    if attention_mask is not None:
        shared &= attention_mask.bool().all(0)
    return int(shared.int().cumprod(0).sum())  # the cumulative product is 1 up to the first difference


def language_model_with_shared_prefix(
    language_model: nn.Module, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """
    The last hidden state `(batch_size, length, hidden_size)` of a causal `language_model` over a batch of sequences
    whose beginnings coincide (several prompts on one image). The longest common prefix (identical input embeddings,
    all attended) runs once, as one sequence; the rest of every sequence then runs as a batch that attends to the
    prefix's keys and values. Causal attention makes a prefix's states independent of what follows, so this equals
    one batched call up to float rounding.
    """
    batch_size, length, _ = inputs_embeds.shape
    prefix_length = min(common_prefix_length(inputs_embeds, attention_mask), length - 1)
    if batch_size == 1 or prefix_length == 0:
        outputs = language_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return outputs.last_hidden_state
    prefix = language_model(inputs_embeds=inputs_embeds[:1, :prefix_length], use_cache=True)
    cache = Cache(layers=[SharedPrefixLayer(layer.keys, layer.values) for layer in prefix.past_key_values.layers])
    rest = language_model(
        inputs_embeds=inputs_embeds[:, prefix_length:],
        attention_mask=attention_mask,
        past_key_values=cache,
        use_cache=False,
    )
    return torch.cat([prefix.last_hidden_state.expand(batch_size, -1, -1), rest.last_hidden_state], dim=1)
