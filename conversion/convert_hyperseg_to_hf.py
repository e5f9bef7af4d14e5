"""Convert an original HyperSeg release folder into a `HyperSegForUniversalSegmentation` folder.

    python -m hyperseg.conversion.convert_hyperseg_to_hf --original_dir DIR --output_dir OUT

DIR holds a HyperSeg or InstructSeg release as published (the kind is read from `architectures`, or given with
`--model_kind`): `config.json` (model_type `mipha_phi`), the weights as safetensors (one file, or shards with
`model.safetensors.index.json`), the tokenizer files and optionally `mask_config.json` (the Mask2Former YAML values,
plus a `HYPERSEG_TINY` / `INSTRUCTSEG_TINY` section for the sizes the original code hard-codes). Without it the
Swin-B / Mask2Former values of the released models are used. Tensors are read with safetensors only: nothing is
unpickled.
"""

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from ..modeling import HyperSegConfig, HyperSegForUniversalSegmentation

# the 133 COCO-panoptic categories (names as in panoptic_val2017.json, which PSALM's class-name prompts use)
COCO_PANOPTIC_CATEGORIES_FILE = Path(__file__).with_name("coco_panoptic_categories.json")

# sizes HyperSeg-3B uses where a release folder has no mask_config.json (Swin-B, Mask2Former panoptic YAML, and the
# constants of the original modeling code)
HYPERSEG_3B_MASK_CONFIG = {
    "MODEL": {
        "SWIN": {"EMBED_DIM": 128, "DEPTHS": [2, 2, 18, 2], "NUM_HEADS": [4, 8, 16, 32], "WINDOW_SIZE": 12,
                 "DROP_PATH_RATE": 0.3},
        "MASK_FORMER": {"NUM_OBJECT_QUERIES": 100, "HIDDEN_DIM": 256, "DEC_LAYERS": 10, "NHEADS": 8,
                        "DIM_FEEDFORWARD": 2048},
        "SEM_SEG_HEAD": {"CONVS_DIM": 256, "MASK_DIM": 256, "TRANSFORMER_ENC_LAYERS": 6},
    },
    "INPUT": {"IMAGE_SIZE": 1024},
}
HYPERSEG_3B_HARDCODED = {
    "PERCEIVER_DIM_HEAD": 64,
    "PERCEIVER_HEADS": 8,
    "PIXEL_DECODER_DIM_FEEDFORWARD": 1024,
    "LM_HEAD_OUT": 51200,
}
# InstructSeg's hard-coded sizes (released values; a `INSTRUCTSEG_TINY` section of mask_config.json overrides them)
INSTRUCTSEG_3B_HARDCODED = {
    "OVP_DIM_HEAD": 128,
    "OVP_HEADS": 8,
    "OVP_DEPTH": 3,
    "OVP_FF_MULT": 2,
    "VMTF_DIM": 1024,
    "VMTF_DIM_HEAD": 128,
    "VMTF_HEADS": 8,
    "VMTF_DEPTH": 3,
    "VMTF_FF_MULT": 2,
    "PIXEL_DECODER_DIM_FEEDFORWARD": 1024,
    "LM_HEAD_OUT": 51200,
}
MODEL_KINDS = ("hyperseg", "instructseg")

# Phi-2's `gelu_new` is the tanh-approximate GELU written as six elementwise passes; `gelu_pytorch_tanh` is the same
# function in one fused kernel (float32 outputs agree to 2.4e-7; in bfloat16 it rounds once instead of six times)
FUSED_ACTIVATIONS = {"gelu_new": "gelu_pytorch_tanh"}

PLACEHOLDER_TOKENS = {
    "image_token_id": "<image>",
    "temporal_token_id": "<temporal>",
    "query_token_id": "<seg>",
    "region_token_id": "<region>",
}

def _perceiver(suffix: str):
    """Target for a perceiver tensor: `mgvp`/`ovp` layers are the model's perceiver, `vmtf` layers its text fusion."""

    def target(match: re.Match) -> str:
        owner = "text_fusion.resampler." if match.group(1) == "vmtf" else "perceiver.resampler."
        return owner + match.expand(suffix)

    return target


# original name (regex) -> our name; applied in order, the first match wins. `None` drops a tensor that no inference
# or training path of the original reads (see ORIGINAL_UNUSED_KEYS_REASONS).
KEY_RULES: list[tuple[str, str | Callable[[re.Match], str] | None]] = [
    # LLM
    (r"^model\.(embed_tokens|layers|final_layernorm)\.", r"language_model.\1."),
    (r"^lm_head\.", "lm_head."),
    # vision tower + projector
    (r"^model\.vision_tower\.vision_model\.(post_layernorm|head)\.", None),
    (r"^model\.vision_tower\.vision_model\.", "vision_tower."),
    (r"^model\.mm_projector\.0\.", "multi_modal_projector.linear_1."),
    (r"^model\.mm_projector\.2\.", "multi_modal_projector.linear_2."),
    # Swin backbone
    (r"^model\.vision_tower_mask\..*relative_position_index$", None),
    (r"^model\.vision_tower_mask\.patch_embed\.proj\.", "backbone.swin.embeddings.patch_embeddings.projection."),
    (r"^model\.vision_tower_mask\.patch_embed\.norm\.", "backbone.swin.embeddings.norm."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.",
     r"backbone.swin.encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.",
     r"backbone.swin.encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.",
     r"backbone.swin.encoder.layers.\1.blocks.\2.attention.{q,k,v}_proj."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.",
     r"backbone.swin.encoder.layers.\1.blocks.\2.attention.o_proj."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table",
     r"backbone.swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", r"backbone.swin.encoder.layers.\1.blocks.\2.mlp."),
    (r"^model\.vision_tower_mask\.layers\.(\d+)\.downsample\.", r"backbone.swin.encoder.layers.\1.downsample."),
    (r"^model\.vision_tower_mask\.norm(\d)\.", lambda m: f"backbone.hidden_states_norms.stage{int(m.group(1)) + 1}."),
    # fine-grained visual perceiver and the temporal latents
    (r"^temporal_query$", "perceiver.latents"),
    (r"^local_project\.(\d+)\.", r"perceiver.input_projections.\1."),
    (r"^level_embed\.", "perceiver.level_embed."),
    (r"^expanded_seg_query_project\.", "perceiver.output_projection."),
    (r"^temporal_query_project\.", "perceiver.temporal_projection."),
    # the perceivers (HyperSeg's fine-grained `mgvp_layers`, InstructSeg's `ovp_layers` and `vmtf_layers`)
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.0\.norm_media\.", _perceiver(r"layers.\2.attention.media_norm.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.0\.norm_latents\.", _perceiver(r"layers.\2.attention.latents_norm.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.0\.to_q\.", _perceiver(r"layers.\2.attention.q_proj.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.0\.to_kv\.", _perceiver(r"layers.\2.attention.kv_proj.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.0\.to_out\.", _perceiver(r"layers.\2.attention.o_proj.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.1\.0\.", _perceiver(r"layers.\2.feed_forward.norm.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.1\.1\.", _perceiver(r"layers.\2.feed_forward.fc1.")),
    (r"^(mgvp|ovp|vmtf)_layers\.layers\.(\d+)\.1\.3\.", _perceiver(r"layers.\2.feed_forward.fc2.")),
    (r"^(mgvp|ovp|vmtf)_layers\.norm\.", _perceiver("norm.")),
    # InstructSeg's text fusion
    (r"^local_project\.(weight|bias)$", r"text_fusion.visual_projection.\1"),
    (r"^text_vmtf_projector\.", "text_fusion.text_projection."),
    (r"^origin_SEG_token_projector\.", "text_fusion.global_projection."),
    # LLM -> decoder projections
    (r"^seg_query$", "mask_queries"),
    (r"^seg_query_projector\.", "query_projector."),
    (r"^SEG_token_projector\.", "seg_prompt_projector."),
    (r"^class_name_projector\.", "class_prompt_projector."),
    (r"^region_projector\.", "region_prompt_projector."),
    # pixel decoder
    (r"^pixel_decoder\.input_proj\.", "pixel_decoder.input_projections."),
    (r"^pixel_decoder\.transformer\.level_embed$", "pixel_decoder.level_embed"),
    (r"^pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"pixel_decoder.encoder.layers.\1.self_attn."),
    (r"^pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.norm1\.", r"pixel_decoder.encoder.layers.\1.self_attn_layer_norm."),
    (r"^pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.linear1\.", r"pixel_decoder.encoder.layers.\1.fc1."),
    (r"^pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.linear2\.", r"pixel_decoder.encoder.layers.\1.fc2."),
    (r"^pixel_decoder\.transformer\.encoder\.layers\.(\d+)\.norm2\.", r"pixel_decoder.encoder.layers.\1.final_layer_norm."),
    (r"^pixel_decoder\.mask_features\.", "pixel_decoder.mask_projection."),
    (r"^pixel_decoder\.(adapter|layer)_(\d+)\.", r"pixel_decoder.\1_\2."),
    # mask decoder
    (r"^predictor\.(query_feat|SEG_query_embed|box_embed|iou_head|reid_embed_head)\.", None),
    (r"^predictor\.transformer_cross_attention_layers\.(\d+)\.multihead_attn\.", r"mask_decoder.decoder.layers.\1.cross_attn."),
    (r"^predictor\.transformer_cross_attention_layers\.(\d+)\.norm\.", r"mask_decoder.decoder.layers.\1.cross_attn_layer_norm."),
    (r"^predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$",
     r"mask_decoder.decoder.layers.\1.self_attn.{q,k,v}_proj.\2"),
    (r"^predictor\.transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\.", r"mask_decoder.decoder.layers.\1.self_attn.out_proj."),
    (r"^predictor\.transformer_self_attention_layers\.(\d+)\.norm\.", r"mask_decoder.decoder.layers.\1.self_attn_layer_norm."),
    (r"^predictor\.transformer_ffn_layers\.(\d+)\.linear1\.", r"mask_decoder.decoder.layers.\1.fc1."),
    (r"^predictor\.transformer_ffn_layers\.(\d+)\.linear2\.", r"mask_decoder.decoder.layers.\1.fc2."),
    (r"^predictor\.transformer_ffn_layers\.(\d+)\.norm\.", r"mask_decoder.decoder.layers.\1.final_layer_norm."),
    (r"^predictor\.decoder_norm\.", "mask_decoder.decoder.layernorm."),
    (r"^predictor\.mask_embed\.layers\.(\d+)\.", r"mask_decoder.decoder.mask_predictor.mask_embedder.\1.0."),
    (r"^predictor\.query_embed\.", "mask_decoder.queries_embedder."),
    (r"^predictor\.level_embed\.", "mask_decoder.level_embed."),
    (r"^predictor\.SEG_proj\.layers\.(\d+)\.", r"mask_decoder.seg_head.\1.0."),
    (r"^predictor\.CLASS_proj\.layers\.(\d+)\.", r"mask_decoder.class_head.\1.0."),
    (r"^predictor\.REGION_proj\.layers\.(\d+)\.", r"mask_decoder.region_head.\1.0."),
]

ORIGINAL_UNUSED_KEYS_REASONS = {
    "relative_position_index": "Swin index buffer, recomputed identically by transformers",
    "vision_model.post_layernorm": "SigLIP post-LayerNorm: HyperSeg reads hidden_states[-2], before it",
    "vision_model.head": "SigLIP attention-pooling head: never read",
    "vision_model.encoder.layers": "SigLIP layers after vision_feature_layer: computed and discarded by the original",
    "predictor.query_feat": "Mask2Former learned query features: the LLM provides the query content",
    "predictor.SEG_query_embed": "never read by the original decoder",
    "predictor.box_embed": "box head of an unreleased video-instance path",
    "predictor.iou_head": "box-IoU head of an unreleased path",
    "predictor.reid_embed_head": "re-ID head of the unreleased tracker",
}


def rename_key(name: str, kept_vision_layers: int) -> list[str] | None:
    """Our name(s) for an original tensor name; `None` when the tensor is unused; several for a fused qkv."""
    layer = re.match(r"^model\.vision_tower\.vision_model\.encoder\.layers\.(\d+)\.", name)
    if layer and int(layer.group(1)) >= kept_vision_layers:
        return None
    for pattern, target in KEY_RULES:
        match = re.match(pattern, name)
        if match is None:
            continue
        if target is None:
            return None
        new = target(match) + name[match.end():] if callable(target) else match.expand(target) + name[match.end():]
        if "{q,k,v}" in new:
            return [new.replace("{q,k,v}", part) for part in "qkv"]
        return [new]
    raise KeyError(f"no conversion rule for original tensor {name!r}")


def convert_state_dict(original: dict[str, torch.Tensor], config: HyperSegConfig) -> tuple[dict, list[str]]:
    """Returns our state dict and the sorted list of original tensors left out as unused."""
    kept_vision_layers = config.vision_config.num_hidden_layers + 1 + config.vision_feature_layer
    converted, unused = {}, []
    for name, tensor in original.items():
        targets = rename_key(name, kept_vision_layers)
        if targets is None:
            unused.append(name)
            continue
        pieces = tensor.chunk(len(targets), dim=0) if len(targets) > 1 else (tensor,)
        for target, piece in zip(targets, pieces):
            if target in converted:
                raise KeyError(f"two original tensors map to {target!r}")
            converted[target] = piece.contiguous()
    return converted, sorted(unused)


def load_original_tensors(original_dir: Path) -> dict[str, torch.Tensor]:
    index = original_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(path.name for path in original_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no safetensors weights in {original_dir} (pickled checkpoints are not read)")
    tensors = {}
    for file_name in files:
        with safe_open(original_dir / file_name, framework="pt") as handle:
            for name in handle.keys():
                tensors[name] = handle.get_tensor(name)
    return tensors


def _merge(defaults: dict, overrides: dict) -> dict:
    merged = dict(defaults)
    for key, value in overrides.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def _system_fields(model_kind: str, hardcoded: dict, latents_shape: tuple[int, int]) -> dict:
    """The config fields that differ between HyperSeg and InstructSeg."""
    num_latents, latent_width = latents_shape
    if model_kind == "hyperseg":
        return {
            "perceiver_type": "fine_grained",
            "perceiver_num_latents": num_latents,
            "perceiver_hidden_size": latent_width,
            "perceiver_num_heads": hardcoded["PERCEIVER_HEADS"],
            "perceiver_head_dim": hardcoded["PERCEIVER_DIM_HEAD"],
        }
    return {
        "perceiver_type": "object_aware",
        "perceiver_num_latents": num_latents,
        "perceiver_num_heads": hardcoded["OVP_HEADS"],
        "perceiver_head_dim": hardcoded["OVP_DIM_HEAD"],
        "perceiver_num_layers": hardcoded["OVP_DEPTH"],
        "perceiver_ff_mult": hardcoded["OVP_FF_MULT"],
        "text_fusion": "vmtf",
        "text_fusion_hidden_size": hardcoded["VMTF_DIM"],
        "text_fusion_num_heads": hardcoded["VMTF_HEADS"],
        "text_fusion_head_dim": hardcoded["VMTF_DIM_HEAD"],
        "text_fusion_num_layers": hardcoded["VMTF_DEPTH"],
        "text_fusion_ff_mult": hardcoded["VMTF_FF_MULT"],
        "prompt_heads": ["seg"],
    }


def build_config(
    original_config: dict,
    mask_config: dict | None,
    token_ids: dict[str, int],
    latents_shape: tuple[int, int],
    model_kind: str = "hyperseg",
) -> HyperSegConfig:
    """
    HyperSegConfig from the original `config.json`, the Mask2Former values, the tokenizer's special ids and the shape
    of the released perceiver latents (`temporal_query`, whose size the original code hard-codes).
    """
    mask_config = _merge(HYPERSEG_3B_MASK_CONFIG, mask_config or {})
    if model_kind == "hyperseg":
        hardcoded = _merge(HYPERSEG_3B_HARDCODED, mask_config.get("HYPERSEG_TINY", {}))
    else:
        hardcoded = _merge(INSTRUCTSEG_3B_HARDCODED, mask_config.get("INSTRUCTSEG_TINY", {}))
    swin, mask_former = mask_config["MODEL"]["SWIN"], mask_config["MODEL"]["MASK_FORMER"]
    sem_seg_head = mask_config["MODEL"]["SEM_SEG_HEAD"]
    vision = original_config["vision_config"]["vision_tower"]
    projector = original_config["vision_config"]["mm_projector"]
    if projector.get("mm_projector_type", "mlp2x_gelu") != "mlp2x_gelu":
        raise ValueError(f"unsupported projector type {projector['mm_projector_type']!r} (HyperSeg uses mlp2x_gelu)")
    lm_head_width = hardcoded["LM_HEAD_OUT"]
    text_config = {
        "model_type": "phi",
        "vocab_size": original_config["vocab_size"],
        "hidden_size": original_config["hidden_size"],
        "intermediate_size": original_config["intermediate_size"],
        "num_hidden_layers": original_config["num_hidden_layers"],
        "num_attention_heads": original_config["num_attention_heads"],
        "num_key_value_heads": original_config.get("num_key_value_heads") or original_config["num_attention_heads"],
        "hidden_act": FUSED_ACTIVATIONS.get(original_config["hidden_act"], original_config["hidden_act"]),
        "layer_norm_eps": original_config["layer_norm_eps"],
        "max_position_embeddings": original_config["max_position_embeddings"],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": original_config.get("rope_theta", 10000.0),
            "partial_rotary_factor": original_config.get("partial_rotary_factor", 0.4),
        },
        "qk_layernorm": original_config.get("qk_layernorm", False),
        "tie_word_embeddings": False,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attention_dropout": 0.0,
        "bos_token_id": token_ids["bos_token_id"],
        "eos_token_id": token_ids["eos_token_id"],
        "pad_token_id": token_ids["pad_token_id"],
    }
    vision_config = {
        "model_type": "siglip_vision_model",
        "hidden_size": vision["hidden_size"],
        "intermediate_size": vision["intermediate_size"],
        "num_hidden_layers": vision["num_hidden_layers"],
        "num_attention_heads": vision["num_attention_heads"],
        "image_size": vision["image_size"],
        "patch_size": vision["patch_size"],
        "hidden_act": vision["hidden_act"],
        "layer_norm_eps": vision["layer_norm_eps"],
        "attention_dropout": 0.0,
        "vision_use_head": False,
    }
    backbone_config = {
        "model_type": "swin",
        "image_size": mask_config["INPUT"]["IMAGE_SIZE"],
        "patch_size": 4,
        "embed_dim": swin["EMBED_DIM"],
        "depths": swin["DEPTHS"],
        "num_heads": swin["NUM_HEADS"],
        "window_size": swin["WINDOW_SIZE"],
        "mlp_ratio": 4.0,
        "qkv_bias": True,
        "use_absolute_embeddings": False,
        "drop_path_rate": swin.get("DROP_PATH_RATE", 0.3),
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "out_features": ["stage1", "stage2", "stage3", "stage4"],
    }
    return HyperSegConfig(
        text_config=text_config,
        vision_config=vision_config,
        backbone_config=backbone_config,
        vision_feature_layer=vision.get("mm_vision_select_layer", -2),
        projector_hidden_act="gelu",
        num_queries=mask_former["NUM_OBJECT_QUERIES"],
        mask_decoder_hidden_size=mask_former["HIDDEN_DIM"],
        mask_decoder_layers=mask_former["DEC_LAYERS"],
        mask_decoder_attention_heads=mask_former["NHEADS"],
        mask_decoder_feedforward_dim=mask_former["DIM_FEEDFORWARD"],
        pixel_decoder_hidden_size=sem_seg_head["CONVS_DIM"],
        mask_feature_size=sem_seg_head["MASK_DIM"],
        pixel_decoder_layers=sem_seg_head["TRANSFORMER_ENC_LAYERS"],
        pixel_decoder_feedforward_dim=hardcoded["PIXEL_DECODER_DIM_FEEDFORWARD"],
        lm_head_vocab_size=lm_head_width if lm_head_width != original_config["vocab_size"] else None,
        **_system_fields(model_kind, hardcoded, latents_shape),
        seg_token_id=token_ids["seg_token_id"],
        image_token_id=token_ids["image_token_id"],
        temporal_token_id=token_ids["temporal_token_id"],
        query_token_id=token_ids["query_token_id"],
        region_token_id=token_ids["region_token_id"],
        architectures=["HyperSegForUniversalSegmentation"],
    )


def convert_tokenizer(original_dir: Path):
    """The release tokenizer plus the placeholder tokens; returns it with the special ids the config needs."""
    tokenizer = AutoTokenizer.from_pretrained(original_dir)
    tokenizer.add_tokens(list(PLACEHOLDER_TOKENS.values()), special_tokens=True)
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer in {original_dir} has no pad token")
    token_ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in PLACEHOLDER_TOKENS.items()}
    # "[SEG]" is an added token in the HyperSeg-3B tokenizer; otherwise the original uses its first sub-token
    token_ids["seg_token_id"] = tokenizer.encode("[SEG]", add_special_tokens=False)[0]
    token_ids.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer, token_ids


def build_processor(config: HyperSegConfig, tokenizer, model_kind: str):
    from ..processing import HyperSegProcessor

    return HyperSegProcessor.from_model_config(config, tokenizer, prompt_style=model_kind)


def detect_model_kind(original_config: dict) -> str:
    """`instructseg` for a release whose architectures name InstructSeg, else `hyperseg`."""
    return "instructseg" if "InstructSeg" in (original_config.get("architectures") or []) else "hyperseg"


def convert(original_dir: Path, output_dir: Path, model_kind: str | None = None) -> list[str]:
    """
    Writes the converted model and processor to `output_dir`; returns the original tensors left out as unused.
    `model_kind` (`"hyperseg"` or `"instructseg"`) defaults to what the release's `architectures` say.
    """
    original_dir = Path(original_dir)
    config_file = original_dir / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} not found: --original_dir must be an original HyperSeg release folder")
    original_config = json.loads(config_file.read_text())
    model_kind = model_kind or detect_model_kind(original_config)
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {MODEL_KINDS}, got {model_kind!r}")
    mask_config_file = original_dir / "mask_config.json"
    mask_config = json.loads(mask_config_file.read_text()) if mask_config_file.exists() else None
    tensors = load_original_tensors(original_dir)
    tokenizer, token_ids = convert_tokenizer(original_dir)
    config = build_config(
        original_config, mask_config, token_ids, tuple(tensors["temporal_query"].shape), model_kind=model_kind
    )

    state_dict, unused = convert_state_dict(tensors, config)
    with torch.device("meta"):
        model = HyperSegForUniversalSegmentation(config)
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=True)
    if missing or unexpected:
        raise KeyError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    processor = build_processor(config, tokenizer, model_kind)
    if "class" in config.prompt_heads:
        # prompt-free calls (transformers' image-segmentation pipeline) segment the COCO-panoptic vocabulary
        categories = json.loads(COCO_PANOPTIC_CATEGORIES_FILE.read_text())
        processor.set_default_vocabulary(config, [category["name"] for category in categories])
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return unused


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--original_dir", required=True, type=Path, help="original HyperSeg release folder")
    parser.add_argument("--output_dir", required=True, type=Path, help="where to write the converted model")
    parser.add_argument(
        "--model_kind", choices=MODEL_KINDS, help="hyperseg or instructseg (default: from the release's architectures)"
    )
    args = parser.parse_args(argv)
    unused = convert(args.original_dir, args.output_dir, args.model_kind)
    print(f"converted {args.original_dir} -> {args.output_dir}; {len(unused)} original tensors left out as unused")


if __name__ == "__main__":
    main()
