"""The optional 8-bit path: int8 weights in the language model only (torchao through `TorchAoConfig`)."""

import pytest
import torch
from conftest import REPO_ROOT
from hub_helpers import single_torch_thread  # noqa: F401 (fixture)

from hyperseg.modeling import HyperSegConfig, HyperSegForUniversalSegmentation, int8_language_model_config
from hyperseg.processing import HyperSegProcessor
from hyperseg.training.evaluate_shapes import evaluate_referring

pytest.importorskip("torchao", reason="the 8-bit path needs torchao (pip install -e '.[int8]')")

SHIPPED = REPO_ROOT / "checkpoints" / "hyperseg-tiny-shapes"


@pytest.fixture(scope="module")
def models():
    plain = HyperSegForUniversalSegmentation.from_pretrained(SHIPPED).eval()
    config = HyperSegConfig.from_pretrained(SHIPPED)
    quantized = HyperSegForUniversalSegmentation.from_pretrained(
        SHIPPED, quantization_config=int8_language_model_config(config)
    ).eval()
    return plain, quantized


def test_only_the_language_model_linear_weights_are_int8(models):
    plain, quantized = models
    plain_state = plain.state_dict()
    int8_names = []
    for name, tensor in quantized.state_dict().items():
        if type(tensor).__name__ == "Int8Tensor":
            int8_names.append(name)
            continue
        assert torch.equal(tensor, plain_state[name]), f"{name} changed outside the language model"
    linear_weights = [
        f"language_model.{name}.weight"
        for name, module in plain.language_model.named_modules()
        if isinstance(module, torch.nn.Linear)
    ]
    assert linear_weights and sorted(int8_names) == sorted(linear_weights)


def test_int8_language_model_keeps_the_referring_quality(models):
    plain, quantized = models
    processor = HyperSegProcessor.from_pretrained(SHIPPED)
    full_precision = evaluate_referring(plain, processor, num_samples=24)
    eight_bit = evaluate_referring(quantized, processor, num_samples=24)
    assert eight_bit["cIoU"] >= full_precision["cIoU"] - 0.02, (eight_bit, full_precision)
