"""A tiny, self-contained training setup: a small tokenizer, a processor for 64-pixel images, a tiny model."""

import functools

import torch
from tiny_config import tiny_hyperseg_config

from hyperseg.modeling import HyperSegForUniversalSegmentation
from hyperseg.processing import HyperSegImageProcessor, HyperSegProcessor
from hyperseg.processing.processing_hyperseg import PLACEHOLDER_TOKENS
from hyperseg.training.shapes_model import SEG_TOKEN, build_shapes_tokenizer

IMAGE_SIZE = 64  # synthetic scenes of the tests: 64 x 64, the backbone input size


@functools.cache
def tiny_tokenizer():
    return build_shapes_tokenizer(num_texts=60)


def tiny_processor() -> HyperSegProcessor:
    config = tiny_config()
    image_processor = HyperSegImageProcessor(
        size={"height": config.vision_config.image_size, "width": config.vision_config.image_size},
        backbone_size=IMAGE_SIZE,
    )
    return HyperSegProcessor(
        image_processor=image_processor,
        tokenizer=tiny_tokenizer(),
        num_image_tokens=config.num_image_tokens,
        num_temporal_tokens=config.perceiver_num_latents,
        num_queries=config.num_queries,
        seg_token=SEG_TOKEN,
    )


def tiny_config(**overrides):
    """The tiny test architecture with this tokenizer's ids; no stochastic layers (drop path 0), 1024 loss points."""
    tokenizer = tiny_tokenizer()
    token_ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in PLACEHOLDER_TOKENS.items()}
    end_of_text = tokenizer.eos_token_id
    base = tiny_hyperseg_config()
    text_config = base.text_config.to_dict()
    text_config.update(
        vocab_size=len(tokenizer), pad_token_id=end_of_text, bos_token_id=end_of_text, eos_token_id=end_of_text
    )
    backbone_config = base.backbone_config.to_dict()
    backbone_config.update(drop_path_rate=0.0)
    values = dict(
        text_config=text_config,
        backbone_config=backbone_config,
        train_num_points=1024,
        seg_token_id=tokenizer.convert_tokens_to_ids(SEG_TOKEN),
        image_token_id=token_ids["image"],
        temporal_token_id=token_ids["temporal"],
        query_token_id=token_ids["queries"],
        region_token_id=token_ids["region"],
    )
    values.update(overrides)
    return tiny_hyperseg_config(**values)


def tiny_model(seed: int = 0, **overrides) -> HyperSegForUniversalSegmentation:
    torch.manual_seed(seed)
    return HyperSegForUniversalSegmentation(tiny_config(**overrides))
