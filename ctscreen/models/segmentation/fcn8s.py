"""3D FCN-8s: Long, Shelhamer & Darrell, "Fully convolutional networks for semantic segmentation", CVPR 2015.

The first model of the paper's segmentation library: a VGG-16 encoder whose fully connected layers became
convolutions, so any input size works, and whose coarse class scores are refined by fusing scores taken
at pool4 and pool3 (the "skip architecture" that gives FCN-8s its name: the finest skip has stride 8).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ctscreen.models.registry import register_model

VGG16_CONVS_PER_STAGE = (2, 2, 3, 3, 3)


def _trilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """Weights that make a transposed conv of kernel 2*factor and stride factor a trilinear upsampler.

    Long et al. initialise every upsampling layer to bilinear interpolation and let it learn from there, so
    the untrained decoder already interpolates smoothly instead of producing checkerboard scores.
    """
    size = 2 * factor
    centre = factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    kernel = ramp[:, None, None] * ramp[None, :, None] * ramp[None, None, :]
    weight = torch.zeros(channels, channels, size, size, size)
    for c in range(channels):
        weight[c, c] = kernel
    return weight


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose3d:
    # kernel 2f, stride f, padding f/2 maps n voxels to exactly f*n, so no offset crop is needed.
    up = nn.ConvTranspose3d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(_trilinear_kernel(channels, factor))
    return up


def _crop_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """FCN's Crop layer: ceil-mode pooling can leave an upsampled map one voxel larger than its skip."""
    return x[:, :, : ref.shape[2], : ref.shape[3], : ref.shape[4]]


class FCN8s(nn.Module):
    """VGG-16 stages -> fc6/fc7 as convolutions -> scores fused at 1/32, 1/16, 1/8 -> x8 up to the input.

    Pooling rounds up (as Caffe's did in the original), and upsampled scores are cropped to the skip they
    are added to, so the output always has the input's spatial size.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (64, 128, 256, 512, 512),
        fc_channels: int = 4096,
        fc_kernel: int = 3,
        norm: str | tuple | None = "batch",
        dropout: float = 0.5,
    ):
        super().__init__()
        if len(features) != len(VGG16_CONVS_PER_STAGE):
            raise ValueError(f"FCN-8s needs {len(VGG16_CONVS_PER_STAGE)} stage widths (VGG-16), got {len(features)}")
        stages = []
        channels = in_channels
        for width, n_convs in zip(features, VGG16_CONVS_PER_STAGE):
            layers = []
            for _ in range(n_convs):
                layers.append(Convolution(3, channels, width, kernel_size=3, act="relu", norm=norm))
                channels = width
            layers.append(nn.MaxPool3d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        # fc6/fc7 carry no normalisation: at stride 32 a small patch leaves a single voxel per channel.
        self.fc = nn.Sequential(
            Convolution(3, channels, fc_channels, kernel_size=fc_kernel, act="relu", dropout=dropout, adn_ordering="AD"),
            Convolution(3, fc_channels, fc_channels, kernel_size=1, act="relu", dropout=dropout, adn_ordering="AD"),
        )
        self.score_fr = nn.Conv3d(fc_channels, out_channels, 1)
        self.score_pool4 = nn.Conv3d(features[3], out_channels, 1)
        self.score_pool3 = nn.Conv3d(features[2], out_channels, 1)
        self.upscore2 = _upsampler(out_channels, 2)
        self.upscore_pool4 = _upsampler(out_channels, 2)
        self.upscore8 = _upsampler(out_channels, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool1 = self.stages[0](x)
        pool2 = self.stages[1](pool1)
        pool3 = self.stages[2](pool2)
        pool4 = self.stages[3](pool3)
        pool5 = self.stages[4](pool4)
        score_pool4 = self.score_pool4(pool4)
        fuse_pool4 = _crop_to(self.upscore2(self.score_fr(self.fc(pool5))), score_pool4) + score_pool4
        score_pool3 = self.score_pool3(pool3)
        fuse_pool3 = _crop_to(self.upscore_pool4(fuse_pool4), score_pool3) + score_pool3
        return _crop_to(self.upscore8(fuse_pool3), x)


@register_model(
    "fcn8s",
    "segmentation",
    profiles={
        "paper": {"features": (64, 128, 256, 512, 512), "fc_channels": 4096},
        "small": {"features": (8, 16, 32, 64, 64), "fc_channels": 512},
        "tiny": {"features": (4, 4, 8, 8, 8), "fc_channels": 16},
    },
)
def fcn8s(features: Sequence[int] = (64, 128, 256, 512, 512), fc_channels: int = 4096, dropout: float = 0.5) -> nn.Module:
    """3D FCN-8s (Long et al., CVPR 2015), VGG-16 widths; fc6 is a 3x3x3 convolution.

    VGG's fc6 is a 7x7 convolution in 2D; as a 7x7x7 one it alone would hold 512*4096*343 = 720M weights,
    so fc6 keeps the 4096 channels but looks at 3x3x3 pool5 voxels. Batch norm after each VGG convolution
    (as in VGG-16-BN) because the paper trains from scratch, without the ImageNet weights FCN started from.
    """
    return FCN8s(1, 2, features, fc_channels, dropout=dropout)
