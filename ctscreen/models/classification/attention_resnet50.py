"""3D Residual Attention Network (Wang et al., "Residual attention network for image classification",
CVPR 2017), the paper's "Attention ResNet-50" (Jin et al. 2020): one of the four classifiers compared.

Attention-56 in 3D: a ResNet-50-style trunk of pre-activation bottleneck units (stem, stages of
256-512-1024-2048 channels) with one attention module after the first unit of each of the first three
stages. An attention module splits into a trunk branch (t = 2 units) and a soft-mask branch, a
bottom-up top-down hourglass (max pooling and r = 1 unit per level down, skip units across, trilinear
upsampling and r = 1 unit per level up; 3, 2 and 1 levels in stages 1-3, so every mask reaches the
same coarsest grid), two 1^3 convolutions and a sigmoid. Attention residual learning, (1 + M) * T,
lets the mask enhance lesion-like features without degrading the trunk's when stacked; p = 1 unit
before and after the split. Total stride 32, all padded: any size of at least one voxel per axis runs;
32 per axis or more gives the last stage distinct voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctscreen.models.classification._blocks import bn_act_conv, bn_relu, conv3d, init_weights, logit_head, stem
from ctscreen.models.registry import register_model

PROFILES = {
    # stage output widths (bottlenecks are a quarter, the stem a quarter of the first): Attention-56's
    "paper": {"widths": (256, 512, 1024, 2048)},
    "small": {"widths": (64, 128, 256, 512)},
    "tiny": {"widths": (16, 32, 64, 128)},
}

# Wang et al.'s hyperparameters: p units before and after the split, t in the trunk, r per mask level
P, T, R = 1, 2, 1
MASK_LEVELS = (3, 2, 1)  # hourglass depth in the attention module of stages 1, 2 and 3 (Attention-56)
LAST_STAGE_UNITS = 3


class PreActBottleneck(nn.Module):
    """The basic unit of Wang et al.: a pre-activation bottleneck (He et al. 2016, identity mappings)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        mid = out_channels // 4
        self.pre = bn_relu(in_channels)
        self.body = nn.Sequential(
            conv3d(in_channels, mid, 1),
            bn_act_conv(mid, mid, 3, stride),
            bn_act_conv(mid, out_channels, 1),
        )
        self.shortcut = conv3d(in_channels, out_channels, 1, stride) if stride != 1 or in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre(x)
        return (x if self.shortcut is None else self.shortcut(pre)) + self.body(pre)


def _units(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*(PreActBottleneck(channels, channels) for _ in range(count)))


def _upsample(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # to the exact size of the finer grid: odd sizes round up under padded pooling, so x2 would not fit
    return F.interpolate(x, size=like.shape[2:], mode="trilinear", align_corners=False)


class SoftMaskBranch(nn.Module):
    """Bottom-up top-down hourglass with skip connections; outputs M in (0, 1), one per voxel and channel."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.pool = nn.MaxPool3d(3, stride=2, padding=1)
        self.down = nn.ModuleList(_units(channels, R) for _ in range(levels))
        self.bottom = _units(channels, R)
        self.skips = nn.ModuleList(_units(channels, 1) for _ in range(levels - 1))
        self.up = nn.ModuleList(_units(channels, R) for _ in range(levels - 1))
        self.mask = nn.Sequential(bn_act_conv(channels, channels), bn_act_conv(channels, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        y = x
        for down in self.down:
            y = down(self.pool(y))
            features.append(y)
        y = self.bottom(y)
        for level in reversed(range(len(self.up))):
            finer = features[level]
            y = self.up[level](_upsample(y, finer) + self.skips[level](finer))
        return self.mask(_upsample(y, x))


class AttentionModule(nn.Module):
    """Trunk T and soft mask M from the same features, combined as (1 + M) * T."""

    def __init__(self, channels: int, levels: int):
        super().__init__()
        self.pre = _units(channels, P)
        self.trunk = _units(channels, T)
        self.mask = SoftMaskBranch(channels, levels)
        self.post = _units(channels, P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pre(x)
        return self.post((1 + self.mask(x)) * self.trunk(x))


@register_model("attention_resnet50", "classification", profiles=PROFILES)
def attention_resnet50(widths: Sequence[int] = (256, 512, 1024, 2048)) -> nn.Module:
    """3D Residual Attention Network, Attention-56 (Wang et al. 2017), on (lesion region, lesion mask)
    -> COVID-19 logit."""
    layers: list[nn.Module] = [stem(widths[0] // 4)]
    channels = widths[0] // 4
    for stage, width in enumerate(widths):
        layers.append(PreActBottleneck(channels, width, stride=1 if stage == 0 else 2))
        if stage < len(MASK_LEVELS):
            layers.append(AttentionModule(width, MASK_LEVELS[stage]))
        else:
            layers.append(_units(width, LAST_STAGE_UNITS - 1))
        channels = width
    layers += [bn_relu(channels), logit_head(channels)]
    return init_weights(nn.Sequential(*layers))
