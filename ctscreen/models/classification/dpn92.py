"""3D Dual Path Network DPN-92 (Chen et al., "Dual path networks", NeurIPS 2017), one of the four
classifiers the paper compared (Jin et al. 2020).

A dual-path block is a ResNeXt-style bottleneck (1^3 -> grouped 3^3 -> 1^3, pre-activation) whose
output is split in two: the first part is added to the residual path (feature re-use), the rest is
concatenated onto the densely connected path (new features, DenseNet-style), which so grows by
``inc`` channels per block. The first block of each stage projects (and, from the second stage on,
strides) the concatenated input into both paths. Total stride 32, all padded: any size of at least one
voxel per axis runs; 32 per axis or more gives the last stage distinct voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ctscreen.models.classification._blocks import bn_act_conv, bn_relu, init_weights, logit_head, stem
from ctscreen.models.registry import register_model

PROFILES = {
    # DPN-92 as published: 64-channel stem, k_R = 96, G = 32, residual widths 256-512-1024-2048
    "paper": {"stem_width": 64, "k_r": 96, "groups": 32, "residual_width": 256, "inc_sec": (16, 32, 24, 128)},
    "small": {"stem_width": 16, "k_r": 24, "groups": 8, "residual_width": 64, "inc_sec": (4, 8, 6, 32)},
    "tiny": {"stem_width": 8, "k_r": 12, "groups": 4, "residual_width": 32, "inc_sec": (2, 4, 3, 16)},
}


class DualPathBlock(nn.Module):
    """One dual-path block: takes (residual path, dense path), or the stem's output alone for the very
    first (projecting) block, and returns the new (residual path, dense path)."""

    def __init__(self, in_channels: int, bottleneck: int, residual: int, inc: int, groups: int, stride: int, project: bool):
        super().__init__()
        self.residual = residual
        # the first block of a stage maps the concatenated input onto both paths (a 1^3 projection)
        self.projection = bn_act_conv(in_channels, residual + 2 * inc, 1, stride) if project else None
        self.body = nn.Sequential(
            bn_act_conv(in_channels, bottleneck, 1),
            bn_act_conv(bottleneck, bottleneck, 3, stride, groups),
            bn_act_conv(bottleneck, residual + inc, 1),
        )

    def forward(self, paths: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat(paths, dim=1)
        if self.projection is None:
            residual, dense = paths
        else:
            projected = self.projection(x)
            residual, dense = projected[:, : self.residual], projected[:, self.residual :]
        out = self.body(x)
        return residual + out[:, : self.residual], torch.cat([dense, out[:, self.residual :]], dim=1)


class DPN(nn.Module):
    """Stem, four stages of dual-path blocks, BN-ReLU on the concatenated paths, global pooling, logit."""

    def __init__(
        self,
        stem_width: int,
        k_r: int,
        groups: int,
        residual_width: int,
        k_sec: Sequence[int],
        inc_sec: Sequence[int],
    ):
        super().__init__()
        self.stem = stem(stem_width)
        blocks: list[DualPathBlock] = []
        channels, dense = stem_width, 0
        for stage, (count, inc) in enumerate(zip(k_sec, inc_sec)):
            bottleneck, residual = k_r * 2**stage, residual_width * 2**stage
            for index in range(count):
                project = index == 0
                stride = 2 if project and stage > 0 else 1
                blocks.append(DualPathBlock(channels, bottleneck, residual, inc, groups, stride, project))
                # a projecting block opens the dense path with 2 x inc channels; every block adds inc
                dense = 3 * inc if project else dense + inc
                channels = residual + dense
        self.blocks = nn.ModuleList(blocks)
        self.post = bn_relu(channels)
        self.head = logit_head(channels)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        paths: tuple[torch.Tensor, ...] = (self.stem(x),)
        for block in self.blocks:
            paths = block(paths)
        return self.head(self.post(torch.cat(paths, dim=1)))


@register_model("dpn92", "classification", profiles=PROFILES)
def dpn92(
    stem_width: int = 64,
    k_r: int = 96,
    groups: int = 32,
    residual_width: int = 256,
    k_sec: Sequence[int] = (3, 4, 20, 3),
    inc_sec: Sequence[int] = (16, 32, 24, 128),
) -> nn.Module:
    """3D DPN-92 (Chen et al. 2017) on (lesion region, lesion mask) -> COVID-19 logit."""
    return DPN(stem_width, k_r, groups, residual_width, k_sec, inc_sec)
