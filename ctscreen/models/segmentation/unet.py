"""3D U-Net: Ronneberger, Fischer & Brox, "U-Net: convolutional networks for biomedical image segmentation",
MICCAI 2015, with every 3x3 convolution made 3x3x3 so inter-slice context is learned, not stitched.

MONAI's ``BasicUNet`` is the original layout: two convolutions per stage, four max-pool downs, four
transposed-convolution ups, and the encoder features concatenated into every decoder stage.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import BasicUNet
from torch import nn

from ctscreen.models.registry import register_model


@register_model(
    "unet",
    "segmentation",
    profiles={
        "paper": {"features": (64, 128, 256, 512, 1024, 64)},
        "small": {"features": (8, 16, 32, 64, 128, 8)},
        "tiny": {"features": (4, 4, 8, 8, 16, 4)},
    },
)
def unet(features: Sequence[int] = (64, 128, 256, 512, 1024, 64), dropout: float = 0.0) -> nn.Module:
    """3D U-Net (Ronneberger et al., MICCAI 2015) at the published widths 64..1024.

    ``features``: the five encoder widths, then the width of the last decoder stage. Instance norm and
    leaky ReLU (MONAI's defaults, absent from the 2015 paper) because the paper trains from scratch on
    one or two 3D patches per step, where batch statistics are too noisy.
    """
    return BasicUNet(spatial_dims=3, in_channels=1, out_channels=2, features=tuple(features), dropout=dropout)
