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
"""8-bit weights for HyperSeg's language model, through torchao and transformers' `TorchAoConfig`."""

import torch
from transformers import TorchAoConfig

from .configuration_hyperseg import HyperSegConfig
from .modeling_hyperseg import HyperSegForUniversalSegmentation


def int8_language_model_config(config: HyperSegConfig) -> TorchAoConfig:
    """
    A `quantization_config` for `from_pretrained` that stores the linear weights of the language model (Phi: 82% of
    HyperSeg-3B's parameters) in int8 with one scale per output channel (torchao's `Int8WeightOnlyConfig`), and loads
    every other module (SigLIP, Swin, the perceiver, the pixel and mask decoders, the projections, `lm_head`) as
    usual. Weights are quantized module by module while loading, so the full-precision language model never exists.

    ```python
    config = HyperSegConfig.from_pretrained(path)
    model = HyperSegForUniversalSegmentation.from_pretrained(
        path, dtype=torch.bfloat16, quantization_config=int8_language_model_config(config)
    )
    ```

    Requires the `torchao` package. Its quality cost is measured in the README (Performance).
    """
    from torchao.quantization import Int8WeightOnlyConfig

    with torch.device("meta"):  # only the module names are needed
        model = HyperSegForUniversalSegmentation(config)
    outside = [name for name, _ in model.named_children() if name != "language_model"]
    return TorchAoConfig(Int8WeightOnlyConfig(), modules_to_not_convert=outside)
