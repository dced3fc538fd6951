"""3D Inception-v3 (Szegedy et al., "Rethinking the Inception architecture for computer vision",
CVPR 2016), one of the four classifiers the paper compared (Jin et al. 2020).

The layout and widths of the reference implementation (TF-slim, torchvision): stem, 3 x Inception-A
(35^2 grid in 2D), grid reduction, 4 x Inception-B with factorised 7 x 7 convolutions, grid reduction,
2 x Inception-C with expanded filter banks, global pooling, dropout, logit. In 3D:

- an n x n factorisation (1 x n then n x 1) becomes 1x1xn -> 1xnx1 -> nx1x1, the same receptive field
  as n^3 at a fraction of the cost;
- Inception-C's expanded bank (parallel 1 x 3 and 3 x 1, 2 x 384 channels) becomes parallel
  1x1x3, 1x3x1 and 3x1x1 of 256 channels each, so every module keeps its published output width
  (Inception-C: 2048);
- every convolution and pooling is padded ("same") where the original used valid padding, because CT
  volumes are short along z (128 slices at 2.5 mm); the total stride is still 32, and any size of at
  least one voxel per axis runs (32 per axis or more gives the last modules distinct voxels).

The auxiliary classifier is left out: Szegedy et al. found it acts as a regulariser, not a help to
convergence, and the serving contract wants one output; dropout before the logit is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from ctscreen.models.classification._blocks import IN_CHANNELS, SPATIAL_DIMS, init_weights, logit_head
from ctscreen.models.registry import register_model

PROFILES = {
    # width multiplies every published channel count (stem 32-32-64-80-192, modules 288-768-1280-2048)
    "paper": {"width": 1.0},
    "small": {"width": 0.25},
    "tiny": {"width": 0.125},
}

Width = Callable[[int], int]  # a published channel count -> this profile's


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 1, stride: int = 1) -> Convolution:
    """Conv -> BN (eps 1e-3, as the reference) -> ReLU; the only unit Inception-v3 is made of."""
    return Convolution(
        SPATIAL_DIMS,
        in_channels,
        out_channels,
        strides=stride,
        kernel_size=kernel_size,
        act="relu",
        norm=("batch", {"eps": 1e-3}),
        bias=False,
    )


def factorised(n: int, axis: int) -> tuple[int, ...]:
    """An n-long kernel along one axis (0 = z, 1 = y, 2 = x)."""
    return tuple(n if a == axis else 1 for a in range(SPATIAL_DIMS))


def factorised_cube(in_channels: int, mid_channels: int, out_channels: int, n: int) -> nn.Sequential:
    """n^3 receptive field as 1x1xn -> 1xnx1 -> nx1x1 (Szegedy et al. 2016, section 3.2, in 3D)."""
    return nn.Sequential(
        conv_bn_relu(in_channels, mid_channels, factorised(n, 2)),
        conv_bn_relu(mid_channels, mid_channels, factorised(n, 1)),
        conv_bn_relu(mid_channels, out_channels, factorised(n, 0)),
    )


class _Branches(nn.Module):
    """Split-transform-merge: parallel branches concatenated along channels."""

    def __init__(self, *branches: nn.Module):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def _pool_branch(in_channels: int, out_channels: int) -> nn.Sequential:
    # explicit zero padding: equal to AvgPool3d(3, 1, padding=1), which PyTorch's CPU kernel refuses on
    # axes shorter than 3 voxels (z at the coarse grids)
    return nn.Sequential(nn.ConstantPad3d(1, 0.0), nn.AvgPool3d(3, stride=1), conv_bn_relu(in_channels, out_channels))


def inception_a(in_channels: int, pool_channels: int, c: Width) -> _Branches:
    """Mixed_5b-d: 1^3, 5^3 and double 3^3 branches at the finest Inception grid."""
    return _Branches(
        conv_bn_relu(in_channels, c(64)),
        nn.Sequential(conv_bn_relu(in_channels, c(48)), conv_bn_relu(c(48), c(64), 5)),
        nn.Sequential(conv_bn_relu(in_channels, c(64)), conv_bn_relu(c(64), c(96), 3), conv_bn_relu(c(96), c(96), 3)),
        _pool_branch(in_channels, pool_channels),
    )


def reduction_a(in_channels: int, c: Width) -> _Branches:
    """Mixed_6a: halve the grid with parallel stride-2 convolutions and pooling (section 5), no bottleneck."""
    return _Branches(
        conv_bn_relu(in_channels, c(384), 3, stride=2),
        nn.Sequential(conv_bn_relu(in_channels, c(64)), conv_bn_relu(c(64), c(96), 3), conv_bn_relu(c(96), c(96), 3, stride=2)),
        nn.MaxPool3d(3, stride=2, padding=1),
    )


def inception_b(in_channels: int, mid: int, c: Width) -> _Branches:
    """Mixed_6b-e: 7^3 receptive fields through factorised convolutions (one and two in sequence)."""
    return _Branches(
        conv_bn_relu(in_channels, c(192)),
        nn.Sequential(conv_bn_relu(in_channels, mid), factorised_cube(mid, mid, c(192), 7)),
        nn.Sequential(conv_bn_relu(in_channels, mid), factorised_cube(mid, mid, mid, 7), factorised_cube(mid, mid, c(192), 7)),
        _pool_branch(in_channels, c(192)),
    )


def reduction_b(in_channels: int, c: Width) -> _Branches:
    """Mixed_7a: the second grid reduction."""
    return _Branches(
        nn.Sequential(conv_bn_relu(in_channels, c(192)), conv_bn_relu(c(192), c(320), 3, stride=2)),
        nn.Sequential(
            conv_bn_relu(in_channels, c(192)),
            factorised_cube(c(192), c(192), c(192), 7),
            conv_bn_relu(c(192), c(192), 3, stride=2),
        ),
        nn.MaxPool3d(3, stride=2, padding=1),
    )


def _expanded_bank(in_channels: int, out_per_axis: int) -> _Branches:
    return _Branches(*(conv_bn_relu(in_channels, out_per_axis, factorised(3, axis)) for axis in range(SPATIAL_DIMS)))


def inception_c(in_channels: int, c: Width) -> _Branches:
    """Mixed_7b-c: expanded filter banks, wide rather than deep, for the coarsest grid (section 6)."""
    return _Branches(
        conv_bn_relu(in_channels, c(320)),
        nn.Sequential(conv_bn_relu(in_channels, c(384)), _expanded_bank(c(384), c(256))),
        nn.Sequential(conv_bn_relu(in_channels, c(448)), conv_bn_relu(c(448), c(384), 3), _expanded_bank(c(384), c(256))),
        _pool_branch(in_channels, c(192)),
    )


@register_model("inception_v3", "classification", profiles=PROFILES)
def inception_v3(width: float = 1.0, dropout: float = 0.5) -> nn.Module:
    """3D Inception-v3 (Szegedy et al. 2016) on (lesion region, lesion mask) -> COVID-19 logit."""

    def c(channels: int) -> int:
        return max(1, round(channels * width))

    a_out = [c(64) + c(64) + c(96) + pool for pool in (c(32), c(64), c(64))]
    b_in = a_out[-1] + c(384) + c(96)
    c_in = b_in + c(320) + c(192)
    c_out = c(320) + 6 * c(256) + c(192)
    model = nn.Sequential(
        conv_bn_relu(IN_CHANNELS, c(32), 3, stride=2),
        conv_bn_relu(c(32), c(32), 3),
        conv_bn_relu(c(32), c(64), 3),
        nn.MaxPool3d(3, stride=2, padding=1),
        conv_bn_relu(c(64), c(80)),
        conv_bn_relu(c(80), c(192), 3),
        nn.MaxPool3d(3, stride=2, padding=1),
        inception_a(c(192), c(32), c),
        inception_a(a_out[0], c(64), c),
        inception_a(a_out[1], c(64), c),
        reduction_a(a_out[2], c),
        *(inception_b(b_in, c(mid), c) for mid in (128, 160, 160, 192)),
        reduction_b(b_in, c),
        inception_c(c_in, c),
        inception_c(c_out, c),
        logit_head(c_out, dropout),
    )
    return init_weights(model)
