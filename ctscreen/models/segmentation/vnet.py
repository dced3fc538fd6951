"""V-Net: Milletari, Navab & Ahmadi, "V-Net: fully convolutional neural networks for volumetric medical image
segmentation", 3DV 2016.

Residual 5x5x5 convolution stages, strided 2x2x2 convolutions instead of pooling, PReLU throughout.
MONAI's ``VNet`` fixes the first stage at 16 channels; the CPU profiles need it narrower, so the same
MONAI transition blocks are assembled here with the first width as a parameter. At 16 the module is
MONAI's ``VNet(act="prelu")`` layer for layer, with the same parameter names (so checkpoints interchange).
"""

from __future__ import annotations

import torch
from monai.networks.nets.vnet import DownTransition, InputTransition, OutputTransition, UpTransition
from torch import nn

from ctscreen.models.registry import register_model

ACT = "prelu"  # Milletari et al. use PReLU; MONAI's default is ELU.


class VNet(nn.Module):
    """V-Net with first-stage width ``base`` (16 in the paper); widths double at each of the four downs.

    The input stage adds the input, repeated ``base`` times, to its convolution (V-Net's residual on
    a one-channel CT), which is why MONAI requires the width to be a multiple of the input channels.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, base: int = 16, dropout: float = 0.5):
        super().__init__()
        b = base
        self.in_tr = InputTransition(3, in_channels, b, ACT)
        self.down_tr32 = DownTransition(3, b, 1, ACT)
        self.down_tr64 = DownTransition(3, 2 * b, 2, ACT)
        self.down_tr128 = DownTransition(3, 4 * b, 3, ACT, dropout_prob=dropout)
        self.down_tr256 = DownTransition(3, 8 * b, 2, ACT, dropout_prob=dropout)
        self.up_tr256 = UpTransition(3, 16 * b, 16 * b, 2, ACT, dropout_prob=(dropout, dropout))
        self.up_tr128 = UpTransition(3, 16 * b, 8 * b, 2, ACT, dropout_prob=(dropout, dropout))
        self.up_tr64 = UpTransition(3, 8 * b, 4 * b, 1, ACT, dropout_prob=(None, dropout))
        self.up_tr32 = UpTransition(3, 4 * b, 2 * b, 1, ACT, dropout_prob=(None, dropout))
        self.out_tr = OutputTransition(3, 2 * b, out_channels, ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        x = self.up_tr256(out256, out128)
        x = self.up_tr128(x, out64)
        x = self.up_tr64(x, out32)
        x = self.up_tr32(x, out16)
        return self.out_tr(x)


@register_model(
    "vnet",
    "segmentation",
    profiles={"paper": {"base": 16}, "small": {"base": 4}, "tiny": {"base": 2}},
)
def vnet(base: int = 16, dropout: float = 0.5) -> nn.Module:
    """V-Net (Milletari et al., 3DV 2016): widths base..16*base, 16..256 as published.

    ``dropout`` is MONAI's (and the reference PyTorch port's) 0.5 on the two deepest down stages and on
    every decoder stage's skip; the 2016 paper itself does not use dropout.
    """
    return VNet(1, 2, base, dropout)
