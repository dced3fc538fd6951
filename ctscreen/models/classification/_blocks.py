"""What the classifiers share: the two-channel input, the pre-activation unit and stem of DPN-92 and the
Residual Attention Network, the pooled logit head and He initialisation; built on MONAI's layers."""

from __future__ import annotations

from monai.networks.blocks import ADN
from monai.networks.layers.factories import Conv
from torch import nn

SPATIAL_DIMS = 3
IN_CHANNELS = 2  # the lesion region and its predicted lesion mask (Jin et al. 2020, Methods)


def conv3d(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> nn.Conv3d:
    """A bias-free 3D convolution padded to keep size at stride 1 (a normalisation follows or precedes it)."""
    return Conv[Conv.CONV, SPATIAL_DIMS](
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, groups=groups, bias=False
    )


def bn_relu(channels: int) -> ADN:
    return ADN(ordering="NA", in_channels=channels, act="relu", norm="batch", norm_dim=SPATIAL_DIMS)


def bn_act_conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Pre-activation (BN -> ReLU -> conv, He et al. 2016 "Identity mappings in deep residual networks"):
    the unit both DPN and the Residual Attention Network are built from."""
    return nn.Sequential(bn_relu(in_channels), conv3d(in_channels, out_channels, kernel_size, stride, groups))


def stem(out_channels: int) -> nn.Sequential:
    """7^3 stride-2 convolution and 3^3 stride-2 max pooling: the stem of ResNet, DPN and Attention-56
    in 3D, a quarter of the input resolution before the first stage."""
    return nn.Sequential(
        conv3d(IN_CHANNELS, out_channels, 7, stride=2),
        bn_relu(out_channels),
        nn.MaxPool3d(3, stride=2, padding=1),
    )


def logit_head(in_channels: int, dropout: float = 0.0) -> nn.Sequential:
    """Global average pooling makes the network size-agnostic; one logit for COVID-19 vs not."""
    layers: list[nn.Module] = [nn.AdaptiveAvgPool3d(1), nn.Flatten(1)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(in_channels, 1))


def init_weights(model: nn.Module) -> nn.Module:
    """He initialisation for training from scratch, as the paper did (no pretrained 3D weights)."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    return model
