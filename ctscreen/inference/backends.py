"""The one backend switch: a trained network as a PyTorch module or as its ONNX graph under ONNX
Runtime, for the segmenter, the classifier and the lung-region network alike."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ctscreen.errors import InputError
from ctscreen.inference.sliding_window import Predictor, onnx_predictor
from ctscreen.models import build_model

BACKENDS = ("torch", "onnx")


def load_network(name: str, profile: str, weights: Path, graph: Path, backend: str = "torch",
                 device: torch.device | str = "cpu") -> nn.Module | Predictor:
    """Model ``name`` in ``profile`` from its ``weights`` (``torch``, in eval mode on ``device``) or its ONNX ``graph`` (``onnx``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    source = Path(weights if backend == "torch" else graph)
    if not source.is_file():
        raise InputError(source, f"missing: the {name} network has no {'weights' if backend == 'torch' else 'ONNX graph'} here")
    if backend == "onnx":
        return onnx_predictor(source)
    model = build_model(name, profile)
    model.load_state_dict(torch.load(source, map_location=device, weights_only=True))
    return model.to(device).eval()
