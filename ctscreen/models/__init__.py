"""The model library: 3D lesion-segmentation and COVID-19 classification networks, by name.

Segmentation models take the lung-cropped CT (1 channel, window [-1024, 350] scaled to [0, 1]) and
return per-voxel logits for (background, lesion). Classification models take two channels, the
same image and the predicted lesion mask, and return the COVID-19 logit.
"""

from ctscreen.models import classification, segmentation  # noqa: F401  (each module registers itself)
from ctscreen.models.registry import ModelSpec, build_model, list_models, model_spec, register_model

__all__ = ["ModelSpec", "build_model", "list_models", "model_spec", "register_model"]
