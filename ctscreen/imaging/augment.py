"""Training-time augmentation of the paper: random flip, pan (shift) and zoom, as MONAI transforms."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from monai.transforms import Compose, RandAffined, RandFlipd


@dataclass(frozen=True)
class AugmentationParameters:
    flip_prob: float = 0.5  # per spatial axis
    affine_prob: float = 0.5  # pan and zoom together, one resampling instead of two
    pan_fraction: float = 0.1  # largest shift, as a fraction of each side of the patch
    zoom_range: tuple[float, float] = (0.85, 1.15)

    def to_dict(self) -> dict:
        return asdict(self)


def training_augmentation(
    patch_shape_zyx: tuple[int, int, int],
    params: AugmentationParameters = AugmentationParameters(),
    image_keys: tuple[str, ...] = ("image",),
    label_keys: tuple[str, ...] = ("label",),
) -> Compose:
    """Flip, pan and zoom channel-first dict samples; images interpolate linearly, labels by nearest."""
    keys = image_keys + label_keys
    modes = ("bilinear",) * len(image_keys) + ("nearest",) * len(label_keys)
    low, high = params.zoom_range
    return Compose(
        [
            *(RandFlipd(keys=keys, prob=params.flip_prob, spatial_axis=axis) for axis in range(3)),
            # RandAffine's scale is added to 1: (0.85, 1.15) zooms by a factor drawn from that range.
            RandAffined(
                keys=keys,
                prob=params.affine_prob,
                translate_range=[params.pan_fraction * n for n in patch_shape_zyx],
                scale_range=[(low - 1.0, high - 1.0)] * 3,
                mode=modes,
                padding_mode="zeros",
                spatial_size=patch_shape_zyx,
                cache_grid=True,  # the sampling grid of a fixed patch is built once, not per sample
            ),
        ]
    )
