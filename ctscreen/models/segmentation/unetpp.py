"""3D U-Net++: Zhou, Siddiquee, Tajbakhsh & Liang, "UNet++: a nested U-Net architecture for medical image
segmentation", DLMIA 2018 -- the paper's best lesion segmenter (Dice 0.754).

Nested, dense skip pathways narrow the semantic gap between encoder and decoder features, and a 1x1 head
on each of the four full-resolution nested nodes gives deep supervision.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import BasicUNetPlusPlus
from torch import nn

from ctscreen.models.registry import register_model


class UNetPlusPlus(nn.Module):
    """MONAI's ``BasicUNetPlusPlus`` with the deepest head first, and only that head outside training.

    MONAI lists the heads shallow to deep (X0,1 .. X0,4); training code and ``DeepSupervisionLoss``
    weight the first output most, and serving takes the first, so they must see X0,4 -- the full network,
    which UNet++ reports as the most accurate -- there. Eval returns one tensor so that export,
    sliding-window inference and the training loop's validation need no special case.
    """

    def __init__(self, features: Sequence[int], deep_supervision: bool = True, dropout: float = 0.0):
        super().__init__()
        self.net = BasicUNetPlusPlus(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            features=tuple(features),
            deep_supervision=deep_supervision,
            dropout=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        heads = self.net(x)
        if self.training and len(heads) > 1:
            return heads[::-1]
        return heads[-1]


@register_model(
    "unetpp",
    "segmentation",
    profiles={
        "paper": {"features": (32, 64, 128, 256, 512, 32)},
        "small": {"features": (4, 8, 16, 32, 64, 4)},
        "tiny": {"features": (4, 4, 8, 8, 16, 4)},
    },
)
def unetpp(
    features: Sequence[int] = (32, 64, 128, 256, 512, 32), deep_supervision: bool = True, dropout: float = 0.0
) -> nn.Module:
    """3D U-Net++ (Zhou et al., DLMIA 2018) at the published widths 32..512, deeply supervised.

    ``features``: the five backbone widths, then the width of the final nested node X0,4. In training
    the model returns the four heads [X0,4, X0,3, X0,2, X0,1]; in eval only X0,4's logits.
    """
    return UNetPlusPlus(features, deep_supervision, dropout)
