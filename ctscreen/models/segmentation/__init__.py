"""3D lesion segmentation: the four architectures of Jin et al. 2020's model library, each registered by name.

Every model takes the lung-cropped CT, (B, 1, D, H, W) in the [-1024, 350] HU window scaled to [0, 1],
axes (z, y, x), and returns (background, lesion) logits (B, 2, D, H, W) at the input's size. U-Net++
returns its deep-supervision heads as a list in training mode (final output first) and one tensor in eval.
"""

from ctscreen.models.segmentation import fcn8s, unet, unetpp, vnet  # noqa: F401  (each registers itself)
from ctscreen.models.segmentation.fcn8s import FCN8s
from ctscreen.models.segmentation.unetpp import UNetPlusPlus
from ctscreen.models.segmentation.vnet import VNet

# Each spatial size must be a multiple of this: U-Net, U-Net++ and V-Net halve the volume four times.
# (FCN-8s pools five times but rounds up and crops, as the original did, so it takes any size.)
SIZE_DIVISOR = 16

# Recommended training patch (z, y, x) per profile. The paper used 256 x 256 x 128 (x, y, z) at
# 1 x 1 x 2.5 mm; "small" fits minutes of training on a 2-core CPU, "tiny" is for unit tests.
PATCH_ZYX = {"paper": (128, 256, 256), "small": (32, 96, 96), "tiny": (16, 32, 32)}

__all__ = ["FCN8s", "PATCH_ZYX", "SIZE_DIVISOR", "UNetPlusPlus", "VNet", "check_window"]


def check_window(window) -> tuple[int, int, int]:
    """A sliding window (z, y, x) the networks accept: three positive multiples of ``SIZE_DIVISOR``."""
    window = tuple(int(w) for w in window)
    if len(window) != 3 or any(w <= 0 or w % SIZE_DIVISOR for w in window):
        raise ValueError(f"window {list(window)}: give three positive sizes (z y x), each a multiple of {SIZE_DIVISOR} "
                         "(U-Net, U-Net++ and V-Net halve them four times)")
    return window
