"""Export for serving: ONNX (Triton's onnxruntime backend, ONNX Runtime in-process) and TorchScript."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def _primary(output):
    """Deep-supervision models return several heads in training; serving uses the first."""
    return output[0] if isinstance(output, (list, tuple)) else output


class _ServingWrapper(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _primary(self.model(x))


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int = 17) -> Path:
    """ONNX with a dynamic batch and spatial size, input ``input`` and output ``output``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _ServingWrapper(model).eval()
    spatial = {i: f"d{i}" for i in range(2, example.dim())}
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch", **spatial}, "output": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path


def export_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(_ServingWrapper(model).eval(), example)
    traced.save(str(path))
    return path


def onnx_output(path: str | Path, example: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": example.astype(np.float32)})[0]


def torch_output(model: nn.Module, example: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return _primary(model.eval()(example)).numpy()
