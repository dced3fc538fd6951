"""Training-time augmentation that varies what scanners and protocols vary (MONAI dict transforms):
noise, reconstruction kernel (softer or sharper), slice thickness, field of view, patient size, and
flips. The paper's five hospitals had 11 scanner models and 0.625-10 mm slices; a model that saw only
some of them should not depend on their look.

Samples are channel-first patches of windowed CT (air 0, values in [0, 1]) on a known grid; widths
are in mm and converted to voxels of that grid. Intensity changes act after the window, so noise also
lands on air the window had flattened: harmless, and clipping back to [0, 1] keeps the window's range.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from monai.transforms import (
    Compose,
    Identityd,
    OneOf,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSharpend,
    RandGaussianSmoothd,
    RandScaleCropd,
    RandZoomd,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
)

FWHM_PER_SIGMA = 2.3548


@dataclass(frozen=True)
class ScannerAugmentationParameters:
    noise_prob: float = 0.5
    noise_std: float = 0.08  # largest noise SD in window units: 40 HU in the 500 HU lung-region window, a low-dose scan
    smooth_prob: float = 0.25  # a softer kernel: in-plane blur
    smooth_fwhm_mm: float = 6.0  # largest in-plane blur
    sharpen_prob: float = 0.25  # a sharper (lung, bone) kernel: overshoot at edges, by unsharp masking
    sharpen_fwhm_mm: float = 6.0  # scale of the blur the unsharp mask subtracts
    sharpen_gain: float = 1.0  # largest gain of the subtracted detail
    thickness_prob: float = 0.5
    thickness_mm: float = 10.0  # thickest slice simulated: a Gaussian slice profile of up to this FWHM along z
    fov_prob: float = 0.3
    fov_min_scale: float = 0.8  # narrowest field of view, as a share of the in-plane extent (the rest becomes air)
    zoom_prob: float = 0.5
    zoom_fraction: float = 0.15  # patient size: one zoom factor in [1 - f, 1 + f] for all axes
    flip_prob: float = 0.5  # per in-plane axis: prone scans flip y, mirror images x; LPS reorientation fixes z

    def to_dict(self) -> dict:
        return asdict(self)


def scanner_augmentation(
    patch_shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    params: ScannerAugmentationParameters = ScannerAugmentationParameters(),
    image_keys: tuple[str, ...] = ("image",),
    label_keys: tuple[str, ...] = ("label",),
) -> Compose:
    """Scanner variation on channel-first dict samples of ``patch_shape_zyx`` voxels of ``spacing_zyx``
    mm; every spatial change moves images (linearly) and labels (nearest) together."""
    keys = image_keys + label_keys
    # Gaussian sigma in voxels per mm of FWHM, per array axis. MONAI names the spatial axes x, y, z
    # in array order, so its "sigma_x" is along z here and its "sigma_z" along x.
    z, y, x = (1.0 / (FWHM_PER_SIGMA * s) for s in spacing_zyx)
    smooth, sharpen, fov = params.smooth_fwhm_mm, params.sharpen_fwhm_mm, params.fov_min_scale
    return Compose(
        [
            OneOf(
                [
                    Compose([RandScaleCropd(keys, roi_scale=(1.0, fov, fov), max_roi_scale=1.0, random_size=True),
                             ResizeWithPadOrCropd(keys, spatial_size=patch_shape_zyx)]),
                    Identityd(keys),
                ],
                weights=(params.fov_prob, 1.0 - params.fov_prob),
            ),
            # torch's "nearest" resizing floors: labels would shift half a voxel against the image
            RandZoomd(keys, prob=params.zoom_prob, min_zoom=1.0 - params.zoom_fraction, max_zoom=1.0 + params.zoom_fraction,
                      mode=("trilinear",) * len(image_keys) + ("nearest-exact",) * len(label_keys), padding_mode="constant"),
            *(RandFlipd(keys, prob=params.flip_prob, spatial_axis=axis) for axis in (1, 2)),
            RandGaussianSmoothd(image_keys, prob=params.thickness_prob, sigma_x=(0.0, params.thickness_mm * z),
                                sigma_y=(0.0, 0.0), sigma_z=(0.0, 0.0)),
            RandGaussianSmoothd(image_keys, prob=params.smooth_prob, sigma_x=(0.0, 0.0), sigma_y=(0.0, smooth * y),
                                sigma_z=(0.0, smooth * x)),
            # sigma1 0: the image itself plus alpha times its detail above the sigma2 blur
            RandGaussianSharpend(image_keys, prob=params.sharpen_prob, sigma1_x=(0.0, 0.0), sigma1_y=(0.0, 0.0), sigma1_z=(0.0, 0.0),
                                 sigma2_x=(0.0, 0.0), sigma2_y=(0.5 * sharpen * y, sharpen * y), sigma2_z=(0.5 * sharpen * x, sharpen * x),
                                 alpha=(0.0, params.sharpen_gain)),
            RandGaussianNoised(image_keys, prob=params.noise_prob, std=params.noise_std),
            ScaleIntensityRanged(image_keys, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
        ]
    )
