"""Multi-scale deformable-attention pixel decoder (Mask2Former's, with HyperSeg's biased FPN convolutions)."""

from torch import nn
from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

from .configuration_hyperseg import HyperSegConfig


class HyperSegPixelDecoder(Mask2FormerPixelDecoder):
    """
    Mask2Former's pixel decoder over the Swin features at strides 4-32. Returns the 1/4-resolution mask features and
    the 1/32, 1/16, 1/8 maps the mask decoder cross-attends to.

    HyperSeg's extra FPN level differs from transformers' in two ways, both held here: its lateral and output
    convolutions have biases, and the lateral branch ends with a ReLU.
    """

    def __init__(self, config: HyperSegConfig):
        super().__init__(config.mask2former_config(), feature_channels=config.backbone_channels)
        hidden_size = config.pixel_decoder_hidden_size
        # lateral_convolutions / output_convolutions alias these Sequentials, so in-place edits reach both
        for level, in_channels in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lateral = getattr(self, f"adapter_{level + 1}")
            lateral[0] = nn.Conv2d(in_channels, hidden_size, kernel_size=1)
            lateral.append(nn.ReLU())
            output = getattr(self, f"layer_{level + 1}")
            output[0] = nn.Conv2d(hidden_size, hidden_size, kernel_size=3, padding=1)
