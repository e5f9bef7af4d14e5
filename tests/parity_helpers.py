"""Helpers shared by the parity tests: tolerance checks, recording of intermediate tensors, raw-size logits."""

import json

import numpy as np
import torch
from conftest import require_fixture
from PIL import Image
from safetensors.torch import load_file

from hyperseg.processing.image_processing_hyperseg import get_resized_size
from hyperseg.processing.post_processing_hyperseg import resize_mask_logits


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str, rtol: float = 1e-4):
    actual, expected = actual.detach().float(), expected.float()
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual - expected).abs()
    bound = rtol * expected.abs().clamp(min=1)
    worst = (error / bound).max().item()
    assert worst <= 1, f"{name}: max error {error.max().item():.3g} exceeds {rtol} * max(1, |ref|)"


def assert_masks_match(mask: torch.Tensor, expected: torch.Tensor, logits: torch.Tensor, name: str):
    """Binary masks equal except where the raw-size logit is within 1e-4 of 0."""
    differ = mask.bool() != expected.bool()
    assert not (differ & (logits.abs() >= 1e-4)).any(), f"{name}: {int(differ.sum())} pixels differ"


class Recorder:
    """
    Records, per call, the outputs of sub-modules during a forward pass: `siglip` (vision tower), `swin` (backbone
    feature maps), `perceiver` (the perceiver's resampler), `pixel` (pixel decoder), `llm_inputs_embeds`, and for
    InstructSeg models `text_fusion` and `seg_embedding` (the projected `[SEG]` embedding).
    """

    def __init__(self, model):
        self.values = {}
        hooks = {
            "siglip": (model.vision_tower, lambda out: out.last_hidden_state),
            "swin": (model.backbone, lambda out: out.feature_maps),
            "perceiver": (model.perceiver.resampler, lambda out: out),
            "pixel": (model.pixel_decoder, lambda out: out),
            "text_fusion": (model.text_fusion, lambda out: out),
            "seg_embedding": (model.seg_prompt_projector, lambda out: out),
        }
        self.handles = [
            module.register_forward_hook(self._save(name, select))
            for name, (module, select) in hooks.items()
            if module is not None
        ]
        self.handles.append(
            model.language_model.register_forward_hook(self._save("llm_inputs_embeds", None), with_kwargs=True)
        )

    def _save(self, name, select):
        def hook(module, args, kwargs_or_output, output=None):
            if select is None:  # with_kwargs hook: (module, args, kwargs, output)
                self.values.setdefault(name, []).append(kwargs_or_output["inputs_embeds"])
            else:
                self.values.setdefault(name, []).append(select(kwargs_or_output))

        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def load_case(*parts):
    folder = require_fixture(*parts)
    return folder, json.loads((folder / "meta.json").read_text()), load_file(folder / "tensors.safetensors")


def run(model, inputs, **kwargs):
    """One forward pass returning every decoder prediction, and the recorded intermediate tensors."""
    recorder = Recorder(model)
    try:
        with torch.no_grad():
            outputs = model(**inputs, output_auxiliary_predictions=True, **kwargs)
    finally:
        recorder.remove()
    return outputs, recorder.values


def interactive_prompts(folder, meta) -> list[dict]:
    """The visual prompts of a golden interactive case, as the processor takes them."""
    mask = np.array(Image.open(folder / "prompt_mask.png")) > 0
    by_kind = {
        "box": lambda prompt: {"box": prompt["box_xyxy"]},
        "point": lambda prompt: {"point": prompt["point_xy"]},
        "scribble": lambda prompt: {"scribble": prompt["polyline_xy"]},
        "mask": lambda prompt: {"mask": mask},
    }
    return [by_kind[prompt["kind"]](prompt) for prompt in meta["prompts"]]


def raw_size_logits(processor, mask_logits, size):
    """(queries, h, w) final mask logits of one sample -> raw image size, as the post-processing computes them."""
    backbone_size = processor.image_processor.backbone_size
    valid_size = get_resized_size(*size, backbone_size)
    return resize_mask_logits(mask_logits.float(), (backbone_size, backbone_size), valid_size, tuple(size))


def check_decoder_layers(outputs, reference, prefix="", sample=None, heads=("SEG",)):
    predictions = list(outputs.auxiliary_predictions) + [outputs]
    for layer, prediction in enumerate(predictions):
        masks = prediction.masks_queries_logits
        if sample is not None:
            masks = masks[sample : sample + 1]
        expected = reference[f"{prefix}dec_layer{layer}_pred_masks"]
        assert_close(masks, expected if sample is None else expected[sample : sample + 1], f"layer {layer} masks")
    final_heads = {
        "SEG": (outputs.seg_queries_logits, lambda t: t[..., 0]),
        "class_name": (outputs.class_queries_logits, lambda t: t),
        "region": (outputs.region_queries_logits, lambda t: t.unsqueeze(0)),
    }
    last = len(predictions) - 1
    for head in heads:
        actual, reshape = final_heads[head]
        expected = reshape(reference[f"{prefix}dec_layer{last}_pred_{head}_logits"])
        assert_close(actual, expected, f"final {head} logits")
