"""3D ResNet-50 (He et al., "Deep residual learning for image recognition", CVPR 2016): the
classifier of the paper's best pair, 3D U-Net++ + ResNet-50, AUC 0.991 (Jin et al. 2020).

MONAI's 3D ResNet with bottleneck blocks [3, 4, 6, 3], a 7^3 stride-2 stem and max pooling, as in the
2D original. Total stride 32; every convolution and pooling is padded, so any size of at least one
voxel per axis runs, and 32 per axis or more gives the last stage distinct voxels to pool.
"""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import ResNet
from torch import nn

from ctscreen.models.classification._blocks import IN_CHANNELS, SPATIAL_DIMS
from ctscreen.models.registry import register_model

PROFILES = {
    # bottleneck widths (each stage's output is 4x): the published 64-128-256-512, 46M parameters in 3D
    "paper": {"widths": (64, 128, 256, 512)},
    "small": {"widths": (16, 32, 64, 128)},
    "tiny": {"widths": (4, 8, 16, 32)},
}


@register_model("resnet50", "classification", profiles=PROFILES)
def resnet50(widths: Sequence[int] = (64, 128, 256, 512)) -> nn.Module:
    """3D ResNet-50 (He et al. 2016) on (lesion region, lesion mask) -> COVID-19 logit."""
    return ResNet(
        block="bottleneck",
        layers=[3, 4, 6, 3],
        block_inplanes=list(widths),
        spatial_dims=SPATIAL_DIMS,
        n_input_channels=IN_CHANNELS,
        conv1_t_size=7,
        conv1_t_stride=2,
        shortcut_type="B",
        num_classes=1,
    )
