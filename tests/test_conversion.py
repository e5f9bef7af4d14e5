"""The converter on the full HyperSeg-3B key inventory (real size, meta device) and on the tiny release folder."""

import json

import pytest
import torch
from conftest import fixtures_root, require_fixture

from hyperseg.conversion.convert_hyperseg_to_hf import convert, convert_state_dict
from hyperseg.modeling import HyperSegConfig, HyperSegForUniversalSegmentation

# original tensors no inference or training path reads (spec §2 / hyperseg_unused_keys.txt), by name fragment
NEVER_USED = (
    "relative_position_index",
    "vision_model.encoder.layers.26.",
    "vision_model.post_layernorm.",
    "vision_model.head.",
    "predictor.query_feat.",
    "predictor.SEG_query_embed.",
    "predictor.box_embed.",
    "predictor.iou_head.",
    "predictor.reid_embed_head.",
)


def read_inventory():
    path = fixtures_root().parent / "reference" / "hyperseg_state_dict_keys.tsv"
    if not path.exists():
        require_fixture("..", "reference", "hyperseg_state_dict_keys.tsv")
    inventory = {}
    for line in path.read_text().splitlines()[1:]:
        name, shape, dtype, _ = line.split("\t")
        inventory[name] = json.loads(shape)
    return inventory


def test_real_size_inventory_converts_on_meta_device():
    inventory = read_inventory()
    assert len(inventory) == 1636
    config = HyperSegConfig.hyperseg_3b()
    original = {name: torch.empty(shape, device="meta") for name, shape in inventory.items()}
    state_dict, unused = convert_state_dict(original, config)

    with torch.device("meta"):
        model = HyperSegForUniversalSegmentation(config)
    expected = model.state_dict()
    assert set(state_dict) == set(expected), (
        f"missing {sorted(set(expected) - set(state_dict))[:5]}, unexpected {sorted(set(state_dict) - set(expected))[:5]}"
    )
    for name, tensor in state_dict.items():
        assert tensor.shape == expected[name].shape, f"{name}: {tuple(tensor.shape)} != {tuple(expected[name].shape)}"
    # every original tensor is used except the listed never-used groups, and every one of those is dropped
    assert all(any(fragment in name for fragment in NEVER_USED) for name in unused)
    assert {name for name in inventory if any(fragment in name for fragment in NEVER_USED)} == set(unused)
    # 24 Swin blocks, SigLIP layer 26 (16), post-LN (2), head (11), query_feat, SEG_query_embed, box (6), IoU (2), re-ID (6)
    assert len(unused) == 24 + 16 + 2 + 11 + 1 + 1 + 6 + 2 + 6


def test_unknown_original_tensor_is_an_error():
    config = HyperSegConfig.hyperseg_3b()
    with pytest.raises(KeyError, match="model.something_new"):
        convert_state_dict({"model.something_new.weight": torch.empty(1, device="meta")}, config)


def test_converter_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        convert(tmp_path, tmp_path / "out")


def test_save_and_reload_give_identical_outputs(tmp_path):
    checkpoint = require_fixture("original_tiny", "checkpoint")
    convert(checkpoint, tmp_path / "converted")
    from PIL import Image

    from hyperseg.processing import HyperSegProcessor

    processor = HyperSegProcessor.from_pretrained(tmp_path / "converted")
    model = HyperSegForUniversalSegmentation.from_pretrained(tmp_path / "converted").eval()
    model.save_pretrained(tmp_path / "resaved")
    processor.save_pretrained(tmp_path / "resaved")
    reloaded = HyperSegForUniversalSegmentation.from_pretrained(tmp_path / "resaved").eval()
    reloaded_processor = HyperSegProcessor.from_pretrained(tmp_path / "resaved")

    image = Image.open(require_fixture("original_tiny", "a_referring", "image.png"))
    inputs = processor(images=image, text="the red square on the left", task="referring")
    reloaded_inputs = reloaded_processor(images=image, text="the red square on the left", task="referring")
    for key in inputs:
        assert torch.equal(inputs[key], reloaded_inputs[key]), key
    with torch.no_grad():
        first, second = model(**inputs), reloaded(**inputs)
    for name in ("masks_queries_logits", "seg_queries_logits", "temporal_latents", "llm_last_hidden_state"):
        assert torch.equal(first[name], second[name]), name


def instructseg_3b_inventory() -> dict[str, list[int]]:
    """
    The released InstructSeg's tensor names and shapes: HyperSeg-3B's inventory without HyperSeg's own modules, plus
    InstructSeg's (names from the tiny InstructSeg release, shapes from the spec's released sizes: OVP at the LLM
    width 2560 with 8 heads x 128 and FF x2, VMTF at 1024 with 8 heads x 128 and FF x2, `SEG_token_projector`
    2048 -> 256).
    """
    hyperseg_only = (
        "mgvp_layers.", "local_project.", "level_embed.", "expanded_seg_query_project.", "temporal_query",
        "class_name_projector.", "region_projector.", "predictor.CLASS_proj.", "predictor.REGION_proj.",
        "SEG_token_projector.",
    )
    inventory = {name: shape for name, shape in read_inventory().items() if not name.startswith(hyperseg_only)}
    from safetensors import safe_open

    tiny = require_fixture("instructseg_forward_tiny", "checkpoint", "model.safetensors")
    with safe_open(tiny, framework="pt") as handle:
        own = [name for name in handle.keys() if not name.startswith(("model.", "pixel_decoder.", "predictor.", "lm_head"))]
    widths = {"ovp": (2560, 8 * 128, 2 * 2560), "vmtf": (1024, 8 * 128, 2 * 1024)}
    for name in own:
        parts = name.split(".")
        if parts[0] in ("ovp_layers", "vmtf_layers"):
            dim, inner, ff = widths[parts[0][:-7]]
            if parts[1] == "norm" or parts[-2].startswith("norm") or parts[-2] == "0" and parts[-3] == "1":
                shape = [dim]
            else:
                shape = {"to_q": [inner, dim], "to_kv": [2 * inner, dim], "to_out": [dim, inner], "1": [ff, dim],
                         "3": [dim, ff]}[parts[-2]]
        else:
            shape = {
                "temporal_query": [128, 2560], "seg_query": [100, 2560],
                "seg_query_projector.weight": [256, 2560], "seg_query_projector.bias": [256],
                "local_project.weight": [1024, 1024, 1, 1], "local_project.bias": [1024],
                "text_vmtf_projector.weight": [1024, 2560], "text_vmtf_projector.bias": [1024],
                "origin_SEG_token_projector.weight": [1024, 2560], "origin_SEG_token_projector.bias": [1024],
                "SEG_token_projector.weight": [256, 2048], "SEG_token_projector.bias": [256],
            }[name]
        inventory[name] = shape
    return inventory


def test_real_size_instructseg_inventory_converts_on_meta_device():
    inventory = instructseg_3b_inventory()
    config = HyperSegConfig.instructseg_3b()
    original = {name: torch.empty(shape, device="meta") for name, shape in inventory.items()}
    state_dict, unused = convert_state_dict(original, config)
    with torch.device("meta"):
        model = HyperSegForUniversalSegmentation(config)
    expected = model.state_dict()
    assert set(state_dict) == set(expected), (
        f"missing {sorted(set(expected) - set(state_dict))[:5]}, unexpected {sorted(set(state_dict) - set(expected))[:5]}"
    )
    for name, tensor in state_dict.items():
        assert tensor.shape == expected[name].shape, f"{name}: {tuple(tensor.shape)} != {tuple(expected[name].shape)}"
    # the same never-used groups as HyperSeg's
    assert {name for name in inventory if any(fragment in name for fragment in NEVER_USED)} == set(unused)
