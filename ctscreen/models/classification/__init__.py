"""The paper's four 3D COVID-19 classifiers (Jin et al. 2020, Methods: model library): ResNet-50,
DPN-92, Inception-v3 and Attention ResNet-50, each registered by name with ``paper``, ``small`` and
``tiny`` profiles.

Contract: input (B, 2, D, H, W) float32 on (z, y, x) axes, channel 0 the lung-cropped CT (window
[-1024, 350] scaled to [0, 1]), channel 1 the predicted lesion mask (probabilities or 0/1); output
(B, 1), the COVID-19 logit. Every network ends in global pooling and is padded throughout with a total
stride of 32, so any size runs; ``INPUT_ZYX`` is the size each profile is meant to train on.
"""

from ctscreen.models.classification import attention_resnet50, dpn92, inception_v3, resnet50  # noqa: F401  (registration)

# paper: 128 slices at 2.5 mm and 256 x 256 at 1 mm cover the lungs; small trains on a CPU in minutes;
# tiny is for unit tests (the last stage then sees one voxel along z)
INPUT_ZYX = {"paper": (128, 256, 256), "small": (32, 96, 96), "tiny": (16, 32, 32)}

__all__ = ["INPUT_ZYX"]
