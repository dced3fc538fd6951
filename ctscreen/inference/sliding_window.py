"""Whole-volume lesion segmentation by sliding window with Gaussian blending (MONAI)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ctscreen.inference.onnx_runtime import onnx_session

Predictor = Callable[[torch.Tensor], torch.Tensor]


def onnx_predictor(path, threads: int | None = None) -> Predictor:
    """An ONNX Runtime session (the Triton model's exact graph) as a predictor over CPU tensors."""
    session = onnx_session(path, threads)
    return lambda x: torch.from_numpy(session.run(["output"], {"input": x.float().numpy()})[0])


def lesion_probability(predictor: nn.Module | Predictor, image: np.ndarray, patch_zyx: tuple[int, int, int],
                       overlap: float = 0.25, batch_size: int = 2) -> np.ndarray:
    """Per-voxel lesion probability (float32, the image's shape) from a (background, lesion) model."""
    device = next(predictor.parameters()).device if isinstance(predictor, nn.Module) else torch.device("cpu")
    if isinstance(predictor, nn.Module):
        predictor.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        logits = sliding_window_inference(inputs, tuple(patch_zyx), batch_size, predictor, overlap=overlap, mode="gaussian")
    return torch.softmax(logits.float(), dim=1)[0, 1].cpu().numpy()
