"""The one backend switch: the same trained network as a PyTorch module and as its ONNX graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctscreen.errors import InputError
from ctscreen.inference.backends import load_network
from ctscreen.models import build_model
from ctscreen.models.export import export_onnx


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("unet", "tiny").eval()
    torch.save(model.state_dict(), tmp_path / "net.pt")
    export_onnx(model, torch.zeros(1, 1, 16, 32, 32), tmp_path / "net.onnx")
    return tmp_path


def test_both_backends_give_the_trained_network(saved):
    patch = torch.rand(1, 1, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    module = load_network("unet", "tiny", saved / "net.pt", saved / "net.onnx", "torch")
    assert not module.training
    with torch.no_grad():
        expected = module(patch).numpy()
    session = load_network("unet", "tiny", saved / "net.pt", saved / "net.onnx", "onnx")
    np.testing.assert_allclose(session(patch).numpy(), expected, atol=1e-4)


def test_a_missing_file_or_an_unknown_backend_is_refused(saved):
    with pytest.raises(InputError, match=r"absent.onnx.*no ONNX graph"):
        load_network("unet", "tiny", saved / "net.pt", saved / "absent.onnx", "onnx")
    with pytest.raises(InputError, match=r"absent.pt.*no weights"):
        load_network("unet", "tiny", saved / "absent.pt", saved / "net.onnx", "torch")
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        load_network("unet", "tiny", saved / "net.pt", saved / "net.onnx", "tensorrt")
