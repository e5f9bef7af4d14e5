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
"""HyperSeg: universal image and video segmentation driven by a vision-language LLM (arXiv 2411.17606)."""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoBackbone, AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.loss.loss_utils import ForCausalLMLoss
from transformers.utils import ModelOutput, can_return_tuple

from .configuration_hyperseg import HyperSegConfig
from .fine_grained_perceiver import FineGrainedVisualPerceiver
from .hub_hyperseg import HyperSegHubMixin
from .loss_hyperseg import HyperSegLoss
from .mask_decoder import HyperSegMaskDecoder, MaskDecoderPrediction
from .object_aware_perceiver import ObjectAwareVideoPerceiver
from .pixel_decoder import HyperSegPixelDecoder
from .region_sampler import RegionSampler
from .shared_prefix import language_model_with_shared_prefix
from .text_fusion import VisionGuidedTextFusion
from .vision_encoder import HyperSegMultiModalProjector, build_vision_tower


# trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
@dataclass
class HyperSegOutput(ModelOutput):
    r"""
    Output of [`HyperSegForUniversalSegmentation`]. Which fields are set depends on the prompt: segmentation prompts
    (with mask-query placeholders) give mask logits and the scores of their prompt kind; a chat prompt gives `logits`.

    Args:
        loss (`torch.FloatTensor`, *optional*):
            Total training loss, when targets are given.
        loss_dict (`dict[str, torch.FloatTensor]`, *optional*):
            Every weighted loss term by name.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, vocab_size)`, *optional*):
            Language-model logits; computed for chat prompts (no mask queries) or when `labels` are given.
        masks_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, height/4, width/4)`, *optional*):
            Mask logits of the final decoder prediction, at a quarter of the padded backbone input size.
        seg_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries)`, *optional*):
            Per-query similarity to the `[SEG]` embedding of a referring / reasoning prompt (sigmoid -> probability).
        class_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_queries, num_classes)`, *optional*):
            Per-query similarity to each class-name prompt; the last class is "background" (softmax over classes).
        region_queries_logits (`torch.FloatTensor` of shape `(batch_size, num_regions, num_queries)`, *optional*):
            Similarity of each visual-prompt region to each query (sigmoid -> probability).
        temporal_latents (`torch.FloatTensor` of shape `(batch_size, num_latents, perceiver_hidden_size)`, *optional*):
            The perceiver latents for the next video frame; pass them back as `temporal_latents`.
        auxiliary_predictions (`list[MaskDecoderPrediction]`, *optional*):
            The earlier decoder predictions (from the LLM queries before the first layer, then after each layer but
            the last), for deep supervision; returned in training, with targets, or with
            `output_auxiliary_predictions=True`.
        llm_last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`, *optional*):
            The LLM's last hidden state (after its final LayerNorm).
        past_key_values (`Cache`, *optional*):
            The LLM's key/value cache, for generation.
    """

    loss: torch.FloatTensor | None = None
    loss_dict: dict[str, torch.FloatTensor] | None = None
    logits: torch.FloatTensor | None = None
    masks_queries_logits: torch.FloatTensor | None = None
    seg_queries_logits: torch.FloatTensor | None = None
    class_queries_logits: torch.FloatTensor | None = None
    region_queries_logits: torch.FloatTensor | None = None
    temporal_latents: torch.FloatTensor | None = None
    auxiliary_predictions: list[MaskDecoderPrediction] | None = None
    llm_last_hidden_state: torch.FloatTensor | None = None
    past_key_values: Cache | None = None


# trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
class HyperSegPreTrainedModel(HyperSegHubMixin, PreTrainedModel):
    config_class = HyperSegConfig
    base_model_prefix = ""  # trf-ignore: TRF002 (one model class, no separate base model)
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    # trf-ignore: TRF022 (the layers of the reused transformers sub-models, which a device map must not split)
    _no_split_modules = ["PhiDecoderLayer", "SiglipEncoderLayer", "SwinStage"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    @torch.no_grad()
    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, HyperSegForUniversalSegmentation):
            init.normal_(module.mask_queries, std=std)
        elif isinstance(module, (FineGrainedVisualPerceiver, ObjectAwareVideoPerceiver)):
            init.normal_(module.latents, std=std)
        elif isinstance(module, HyperSegPixelDecoder):
            init.normal_(module.level_embed, std=std)


def _gather_slots(hidden_states: torch.Tensor, slot_mask: torch.Tensor, name: str) -> torch.Tensor:
    """Hidden states at the positions of `slot_mask`, as (batch, slots_per_sample, hidden)."""
    counts = slot_mask.sum(-1)
    if (counts != counts[0]).any():
        raise ValueError(f"every sample must have the same number of {name} tokens, got {counts.tolist()}")
    return hidden_states[slot_mask].view(hidden_states.shape[0], int(counts[0]), hidden_states.shape[-1])


def _scatter_slots(inputs_embeds: torch.Tensor, slot_mask: torch.Tensor, values: torch.Tensor, name: str):
    """Writes `values` (batch or 1, slots, hidden) at the positions of `slot_mask` (batch, length)."""
    values = values.expand(slot_mask.shape[0], -1, -1)  # one image's tokens for each of its prompts
    expected = slot_mask.sum(-1)
    if (expected != values.shape[1]).any():
        raise ValueError(
            f"each sample needs exactly {values.shape[1]} {name} tokens, got {expected.tolist()}: "
            "build the inputs with HyperSegProcessor"
        )
    return inputs_embeds.masked_scatter(slot_mask.unsqueeze(-1), values.to(inputs_embeds.dtype))


# trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
class HyperSegForUniversalSegmentation(HyperSegPreTrainedModel, GenerationMixin):
    r"""
    HyperSeg: a SigLIP + Phi vision-language model whose hidden states drive a Mask2Former-style decoder over a Swin
    backbone. One forward pass segments for every task the prompt describes: referring / reasoning expressions, class
    names (panoptic, instance, semantic), visual prompts (points, boxes, scribbles, masks), video frames (with the
    perceiver latents carried from frame to frame); a prompt without mask queries is plain chat and can `generate`.

    The token sequence is built by [`HyperSegProcessor`]: placeholder tokens mark where the projected image tokens,
    the perceiver latents, the mask queries and the pooled region features go; referring and class-name prompts are
    ordinary text whose positions are given by `referring_prompt_mask` / `class_prompt_index`.
    """

    # the loss is a mean over target masks, not a sum over tokens: let Trainer divide by gradient accumulation
    accepts_loss_kwargs = False

    def __init__(self, config: HyperSegConfig):
        super().__init__(config)
        text_hidden = config.text_config.hidden_size
        decoder_hidden = config.mask_decoder_hidden_size
        self.vision_tower = build_vision_tower(config)
        self.multi_modal_projector = HyperSegMultiModalProjector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.lm_head = nn.Linear(text_hidden, config.lm_head_vocab_size or config.text_config.vocab_size, bias=False)
        self.backbone = AutoBackbone.from_config(config.backbone_config)
        # the backbone returns the per-stage normed maps; SwinModel's final LayerNorm output would be thrown away
        self.backbone.swin.layernorm = nn.Identity()
        perceivers = {"fine_grained": FineGrainedVisualPerceiver, "object_aware": ObjectAwareVideoPerceiver}
        # CODEPATH: HyperSeg checkpoints build the fine-grained perceiver, InstructSeg ones the object-aware one
        self.perceiver = perceivers[config.perceiver_type](config) if config.perceiver_type else None
        # CODEPATH: InstructSeg checkpoints fuse the referring prompt with VMTF, HyperSeg ones take its mean state
        self.text_fusion = VisionGuidedTextFusion(config) if config.text_fusion == "vmtf" else None
        self.pixel_decoder = HyperSegPixelDecoder(config)
        self.mask_decoder = HyperSegMaskDecoder(config)
        self.mask_queries = nn.Parameter(torch.zeros(config.num_queries, text_hidden))
        self.query_projector = nn.Linear(text_hidden, decoder_hidden)
        heads = config.prompt_heads
        self.seg_prompt_projector = nn.Linear(config.seg_embedding_size, decoder_hidden) if "seg" in heads else None
        self.class_prompt_projector = nn.Linear(text_hidden, decoder_hidden) if "class" in heads else None
        self.region_prompt_projector = nn.Linear(text_hidden, decoder_hidden) if "region" in heads else None
        self.region_sampler = (
            RegionSampler(config.region_sample_points, config.region_sampler_seed) if "region" in heads else None
        )
        self.criterion = HyperSegLoss(
            class_weight=config.class_weight,
            mask_weight=config.mask_weight,
            dice_weight=config.dice_weight,
            num_points=config.train_num_points,
            oversample_ratio=config.oversample_ratio,
            importance_sample_ratio=config.importance_sample_ratio,
            background_class_weight=config.background_class_weight,
        )
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def enable_input_require_grads(self):
        """
        Makes the LLM's input embeddings require grad, so that activation checkpointing and adapters train through a
        frozen LLM. Only the LLM embeddings are hooked: the default hooks every sub-model's input embeddings, and the
        Swin backbone's return a tuple, which cannot require grad.
        """

        def make_inputs_require_grads(module, input, output):
            output.requires_grad_(True)

        self._require_grads_hooks = [self.get_input_embeddings().register_forward_hook(make_inputs_require_grads)]
        self._require_grads_hook = self._require_grads_hooks[0]

    # trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(batch, 3, size, size) -> (batch, num_image_tokens, llm_hidden) projected vision-tower features."""
        return self.multi_modal_projector(self.vision_tower(pixel_values).last_hidden_state)

    def _placeholder_masks(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        config = self.config
        return {
            "image": input_ids == config.image_token_id,
            "temporal": input_ids == config.temporal_token_id,
            "query": input_ids == config.query_token_id,
            "region": input_ids == config.region_token_id,
        }

    def _default_prompt_inputs(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        """`config.default_prompt_inputs` with its placeholders expanded, as `(batch_size, length)` tensors."""
        config = self.config
        prompt = config.default_prompt_inputs
        if prompt is None:
            raise ValueError(
                "no input_ids were given and this checkpoint has no default prompt (config.default_prompt_inputs): "
                "build the inputs with HyperSegProcessor, or set a default vocabulary with "
                "HyperSegProcessor.set_default_vocabulary(model.config, class_names)"
            )
        num_classes = max(prompt["class_prompt_index"]) - 1  # without the trailing "background"
        if num_classes != len(config.id2label):
            raise ValueError(
                f"config.default_prompt_inputs names {num_classes} classes but config.id2label has "
                f"{len(config.id2label)}: update both with HyperSegProcessor.set_default_vocabulary"
            )
        input_ids = torch.tensor(prompt["input_ids"], device=device)
        repeats = torch.ones_like(input_ids)
        repeats[input_ids == config.image_token_id] = config.num_image_tokens
        repeats[input_ids == config.temporal_token_id] = config.perceiver_num_latents
        repeats[input_ids == config.query_token_id] = config.num_queries
        return {
            name: torch.tensor(values, device=device).repeat_interleave(repeats).repeat(batch_size, 1)
            for name, values in prompt.items()
        }

    # trf-ignore: TRF057 (remote-code model: the docstrings are written out; @auto_docstring only knows transformers' own arguments)
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        backbone_pixel_values: torch.FloatTensor | None = None,
        pixel_mask: torch.LongTensor | None = None,
        referring_prompt_mask: torch.Tensor | None = None,
        class_prompt_index: torch.LongTensor | None = None,
        region_masks: list[torch.Tensor] | None = None,
        region_points: list[torch.Tensor] | None = None,
        reference_pixel_values: torch.FloatTensor | None = None,
        temporal_latents: torch.FloatTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        mask_labels: list[torch.Tensor] | None = None,
        class_labels: list[torch.LongTensor] | None = None,
        labels: torch.LongTensor | None = None,
        output_auxiliary_predictions: bool | None = None,
        **kwargs,
    ) -> HyperSegOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Token ids from [`HyperSegProcessor`], with placeholders already expanded to their lengths. Without them
            the model runs its default prompt, `config.default_prompt_inputs` (panoptic over `config.id2label`), on
            the pixels alone, as transformers' `image-segmentation` pipeline calls it.
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, size, size)`):
            The vision-tower input (filling the `<image>` tokens). The image inputs may also hold a single image for
            a batch of several prompts on it (the processor's output for one image with several texts or class-name
            lists): the image is then encoded once, and the beginning the prompts share runs through the LLM once.
        backbone_pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, backbone_size, backbone_size)`, *optional*):
            The padded Swin input; needed by every segmentation prompt, not by chat.
        pixel_mask (`torch.LongTensor` of shape `(batch_size, backbone_size, backbone_size)`, *optional*):
            1 on real pixels, 0 on padding. Accepted for compatibility with the image processor's output; like the
            original, the networks see the padded image whole, and post-processing recovers the valid area from the
            target size.
        referring_prompt_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
            1 on the tokens of the referring / reasoning instruction and its `[SEG]`; their mean LLM state is the
            `[SEG]` embedding the queries are scored against.
        class_prompt_index (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            k >= 1 on the tokens (name + `[SEG]`) of the k-th class-name prompt, 0 elsewhere.
        region_masks (`list[torch.Tensor]`, *optional*):
            Per sample, `(num_regions, size, size)` binary visual-prompt masks at the vision-tower input size.
        region_points (`list[torch.Tensor]`, *optional*):
            Per sample, `(num_regions, region_sample_points, 2)` pre-drawn (row, col) points, replacing the sampler's
            own draws.
        reference_pixel_values (`torch.FloatTensor` of shape `(batch_size, num_frames, 3, size, size)`, *optional*):
            Vision-tower inputs of the reference frames read by InstructSeg's object-aware perceiver; without them
            the image itself is the one reference frame.
        temporal_latents (`torch.FloatTensor` of shape `(batch_size, num_latents, perceiver_hidden_size)`, *optional*):
            The previous video frame's `temporal_latents` (HyperSeg's fine-grained perceiver); `None` for an image
            or the first frame.
        mask_labels (`list[torch.Tensor]`, *optional*):
            Per sample, `(num_targets, backbone_size, backbone_size)` binary target masks, padded like the backbone
            input. For interactive prompts, target k is the object of visual prompt k.
        class_labels (`list[torch.LongTensor]`, *optional*):
            Per sample, `(num_targets,)` class-prompt indices of the targets (class-name tasks).
        labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Next-token targets (-100 = ignored), aligned with `input_ids`; adds the language-modelling loss.
        output_auxiliary_predictions (`bool`, *optional*):
            Also return the earlier decoder predictions at inference (they are always returned in training and with
            targets).
        """
        use_cache = use_cache if use_cache is not None else False
        if input_ids is None:
            images = backbone_pixel_values if backbone_pixel_values is not None else pixel_values
            if images is None:
                raise ValueError("forward needs input_ids, or pixel inputs to run the default prompt on")
            default_prompt = self._default_prompt_inputs(images.shape[0], images.device)
            input_ids, attention_mask = default_prompt["input_ids"], default_prompt["attention_mask"]
            class_prompt_index = default_prompt["class_prompt_index"]
        slots = self._placeholder_masks(input_ids)
        self._check_prompt_heads(referring_prompt_mask, class_prompt_index, slots["region"].any())
        is_placeholder = slots["image"] | slots["temporal"] | slots["query"] | slots["region"]
        inputs_embeds = self.get_input_embeddings()(input_ids.masked_fill(is_placeholder, 0))
        batch_size = input_ids.shape[0]

        image_features = None
        if slots["image"].any():
            if pixel_values is None:
                raise ValueError("the prompt has <image> tokens but no pixel_values were given")
            image_features = self.get_image_features(pixel_values)  # (batch, num_image_tokens, llm_hidden)
            inputs_embeds = _scatter_slots(inputs_embeds, slots["image"], image_features, "<image>")

        backbone_features = None
        if slots["temporal"].any() or slots["query"].any():
            if backbone_pixel_values is None:
                raise ValueError("segmentation prompts need backbone_pixel_values (the padded Swin input)")
            backbone_features = self.backbone(backbone_pixel_values.to(self.dtype)).feature_maps  # strides 4-32

        if slots["temporal"].any():
            perceiver_tokens = self._perceive(
                backbone_features, image_features, inputs_embeds, referring_prompt_mask, reference_pixel_values,
                temporal_latents,
            )  # (batch, num_temporal_tokens, llm_hidden)
            inputs_embeds = _scatter_slots(inputs_embeds, slots["temporal"], perceiver_tokens, "<temporal>")

        if slots["query"].any():
            queries = self.mask_queries.unsqueeze(0).expand(batch_size, -1, -1)
            inputs_embeds = _scatter_slots(inputs_embeds, slots["query"], queries, "mask-query")

        if slots["region"].any():
            if region_masks is None and region_points is None:
                raise ValueError("the prompt has <region> tokens but neither region_masks nor region_points were given")
            if image_features is None:
                raise ValueError("region prompts need the image tokens of the same image (<image> and pixel_values)")
            regions = self.region_sampler(image_features.expand(batch_size, -1, -1), region_masks, region_points)
            inputs_embeds = _scatter_slots(inputs_embeds, slots["region"], torch.stack(regions), "<region>")

        images = pixel_values if pixel_values is not None else backbone_pixel_values
        prompts_share_image = images is not None and images.shape[0] == 1 < batch_size
        if prompts_share_image and past_key_values is None and position_ids is None and not use_cache:
            # several prompts on one image: the beginning they share (image, latents, ...) runs once
            hidden_states = language_model_with_shared_prefix(self.language_model, inputs_embeds, attention_mask)
            llm_cache = None
        else:
            llm_outputs = self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
            hidden_states, llm_cache = llm_outputs.last_hidden_state, llm_outputs.past_key_values
        # hidden_states: (batch, length, llm_hidden)

        output = HyperSegOutput(llm_last_hidden_state=hidden_states, past_key_values=llm_cache)
        losses = {}
        if labels is not None or not slots["query"].any():
            output.logits = self.lm_head(hidden_states)
        if labels is not None:
            losses["loss_lm"] = ForCausalLMLoss(output.logits, labels, vocab_size=self.config.text_config.vocab_size)
        if not slots["query"].any():
            return self._with_loss(output, losses)

        # dispatch on the config, not on the module class: PEFT wraps trained modules (modules_to_save)
        # CODEPATH: HyperSeg checkpoints carry temporal latents to the next frame; InstructSeg ones read reference frames
        if self.config.perceiver_type == "fine_grained":
            latent_states = _gather_slots(hidden_states, slots["temporal"], "<temporal>")
            output.temporal_latents = self.perceiver.next_latents(latent_states)

        deep_supervision = self.training or mask_labels is not None
        predictions = self._decode_masks(
            hidden_states,
            slots,
            backbone_features,
            referring_prompt_mask,
            class_prompt_index,
            score_all_predictions=deep_supervision,
        )
        final = predictions[-1]
        output.masks_queries_logits = final.masks_queries_logits
        output.seg_queries_logits = final.seg_queries_logits
        output.class_queries_logits = final.class_queries_logits
        output.region_queries_logits = final.region_queries_logits
        if deep_supervision or output_auxiliary_predictions:
            output.auxiliary_predictions = predictions[:-1]
        if mask_labels is not None:
            self._check_targets(mask_labels, class_labels, backbone_pixel_values, final)
            losses.update(self.criterion.get_weighted_loss_dict(self.criterion(predictions, mask_labels, class_labels)))
        return self._with_loss(output, losses)

    def _check_prompt_heads(self, referring_prompt_mask, class_prompt_index, has_regions: bool):
        """A prompt kind the model has no head for is an error, not a silently unscored prompt."""
        for name, present, projector in (
            ("referring", referring_prompt_mask is not None, self.seg_prompt_projector),
            ("class-name", class_prompt_index is not None, self.class_prompt_projector),
            ("region", has_regions, self.region_prompt_projector),
        ):
            if present and projector is None:
                raise ValueError(f"this model has no {name} head (prompt_heads={self.config.prompt_heads})")

    def _perceive(
        self,
        backbone_features: tuple[torch.Tensor, ...],
        image_features: torch.Tensor | None,
        inputs_embeds: torch.Tensor,
        referring_prompt_mask: torch.Tensor | None,
        reference_pixel_values: torch.FloatTensor | None,
        temporal_latents: torch.FloatTensor | None,
    ) -> torch.Tensor:
        """The tokens filling the `<temporal>` placeholders, from the model's perceiver."""
        if self.perceiver is None:
            raise ValueError("the prompt has <temporal> tokens but this model has no perceiver (perceiver_type=None)")
        # CODEPATH: HyperSeg checkpoints perceive the Swin scales, InstructSeg ones the reference frames and prompt
        if self.config.perceiver_type == "fine_grained":
            features = list(backbone_features[1:])
            if temporal_latents is None:  # depends on the image only: once per image
                return self.perceiver(features, self.perceiver.initial_latents(features[0].shape[0]))
            features = [level.expand(len(temporal_latents), -1, -1, -1) for level in features]  # latents per prompt
            return self.perceiver(features, temporal_latents)
        if referring_prompt_mask is None:
            raise ValueError("the object-aware perceiver reads the referring prompt: referring_prompt_mask is required")
        if reference_pixel_values is not None:
            batch_size, num_frames = reference_pixel_values.shape[:2]
            frame_features = self.get_image_features(reference_pixel_values.flatten(0, 1))
            frame_features = frame_features.view(batch_size, num_frames, *frame_features.shape[1:])
        elif image_features is not None:
            frame_features = image_features.unsqueeze(1)  # a still image is its own reference frame
        else:
            raise ValueError("the object-aware perceiver needs pixel_values or reference_pixel_values")
        prompt_embeddings = [embeds[mask.bool()] for embeds, mask in zip(inputs_embeds, referring_prompt_mask)]
        return self.perceiver(frame_features.expand(len(prompt_embeddings), -1, -1, -1), prompt_embeddings)

    @staticmethod
    def _with_loss(output: HyperSegOutput, losses: dict[str, torch.Tensor]) -> HyperSegOutput:
        if losses:
            output.loss_dict = losses
            output.loss = sum(losses.values())
        return output

    @staticmethod
    def _check_targets(mask_labels, class_labels, backbone_pixel_values, prediction: MaskDecoderPrediction):
        """Clear errors for targets that would otherwise fail deep inside the criterion or silently mislead it."""
        padded_size = tuple(backbone_pixel_values.shape[-2:])
        if len(mask_labels) != backbone_pixel_values.shape[0]:
            raise ValueError(f"got mask_labels for {len(mask_labels)} samples but {backbone_pixel_values.shape[0]} images")
        for index, masks in enumerate(mask_labels):
            if masks.dim() != 3 or tuple(masks.shape[-2:]) != padded_size:
                raise ValueError(
                    f"mask_labels of sample {index} have shape {tuple(masks.shape)}; expected "
                    f"(num_targets, {padded_size[0]}, {padded_size[1]}), padded like backbone_pixel_values"
                )
            if prediction.class_queries_logits is not None:
                if class_labels is None:
                    raise ValueError("class-name prompts need class_labels with the mask_labels")
                num_classes = prediction.class_queries_logits.shape[-1]
                if len(class_labels[index]) != len(masks) or (class_labels[index] >= num_classes - 1).any():
                    raise ValueError(
                        f"class_labels of sample {index} must give one class in [0, {num_classes - 2}] per target mask"
                    )
            if prediction.region_queries_logits is not None and len(masks) != prediction.region_queries_logits.shape[1]:
                raise ValueError(f"sample {index} needs one target mask per visual prompt")

    def _decode_masks(
        self,
        hidden_states: torch.Tensor,
        slots: dict[str, torch.Tensor],
        backbone_features: tuple[torch.Tensor, ...],
        referring_prompt_mask: torch.Tensor | None,
        class_prompt_index: torch.LongTensor | None,
        score_all_predictions: bool,
    ) -> list[MaskDecoderPrediction]:
        queries = self.query_projector(_gather_slots(hidden_states, slots["query"], "mask-query"))

        seg_embeddings = None
        if referring_prompt_mask is not None:
            weights = referring_prompt_mask.to(hidden_states.dtype)
            counts = weights.sum(-1, keepdim=True)
            if (counts == 0).any():
                raise ValueError("referring_prompt_mask marks no token for some sample")
            if self.text_fusion is not None:
                prompt_states = [states[mask.bool()] for states, mask in zip(hidden_states, referring_prompt_mask)]
                coarse_features = backbone_features[-1].expand(len(prompt_states), -1, -1, -1)
                pooled = self.text_fusion(prompt_states, coarse_features)  # (batch, 2 * fusion_hidden)
            else:
                pooled = torch.einsum("bl,blh->bh", weights, hidden_states) / counts  # (batch, llm_hidden)
            seg_embeddings = self.seg_prompt_projector(pooled)

        class_embeddings = None
        if class_prompt_index is not None:
            num_classes = int(class_prompt_index.max())
            membership = nn.functional.one_hot(class_prompt_index, num_classes + 1)[..., 1:].to(hidden_states.dtype)
            counts = membership.sum(1).unsqueeze(-1)  # (batch, classes, 1)
            if (counts == 0).any():
                raise ValueError("every sample must have the same class-name prompts (some class has no token)")
            pooled = torch.einsum("blc,blh->bch", membership, hidden_states) / counts
            class_embeddings = self.class_prompt_projector(pooled)

        region_embeddings = None
        if slots["region"].any():
            region_embeddings = self.region_prompt_projector(_gather_slots(hidden_states, slots["region"], "<region>"))

        pixel_decoded = self.pixel_decoder(list(backbone_features), return_dict=True)  # once per image
        batch_size = queries.shape[0]
        return self.mask_decoder(
            queries,
            pixel_decoded.mask_features.expand(batch_size, -1, -1, -1),
            [features.expand(batch_size, -1, -1, -1) for features in pixel_decoded.multi_scale_features],
            seg_embeddings=seg_embeddings,
            class_embeddings=class_embeddings,
            region_embeddings=region_embeddings,
            score_all_predictions=score_all_predictions,
        )


__all__ = ["HyperSegPreTrainedModel", "HyperSegForUniversalSegmentation", "HyperSegOutput"]
