"""A tiny HyperSeg configuration for fast tests (sizes of the golden-data checkpoint)."""

from hyperseg.modeling import HyperSegConfig


def tiny_hyperseg_config(**overrides) -> HyperSegConfig:
    values = dict(
        text_config=dict(
            model_type="phi", vocab_size=711, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, pad_token_id=0, bos_token_id=0, eos_token_id=0,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.4},
        ),
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=2, image_size=56, patch_size=14, vision_use_head=False,
        ),
        backbone_config=dict(
            model_type="swin", image_size=128, embed_dim=16, depths=[2, 2, 1, 1], num_heads=[1, 2, 2, 4], window_size=4
        ),
        num_queries=8, mask_decoder_hidden_size=32, mask_decoder_layers=4, mask_decoder_attention_heads=2,
        mask_decoder_feedforward_dim=64, pixel_decoder_hidden_size=32, mask_feature_size=32, pixel_decoder_layers=2,
        pixel_decoder_feedforward_dim=64, perceiver_num_latents=8, perceiver_hidden_size=64, perceiver_num_heads=2,
        perceiver_head_dim=16, seg_token_id=59, image_token_id=711, temporal_token_id=712, query_token_id=713,
        region_token_id=714,
    )
    values.update(overrides)
    return HyperSegConfig(**values)
