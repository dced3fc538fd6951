"""The four 3D classifiers of the paper: the (B, 2, D, H, W) -> (B, 1) contract at any size, gradients
and learning, exports that serve the same numbers, and paper profiles of the published size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ctscreen.models import build_model, list_models, model_spec
from ctscreen.models.classification import INPUT_ZYX
from ctscreen.models.export import export_onnx, export_torchscript, onnx_output, torch_output

NAMES = ["attention_resnet50", "dpn92", "inception_v3", "resnet50"]

# 3D counts of the paper profiles (2 input channels, one logit). The 2D originals with a 1000-class
# head: ResNet-50 25.6M, DPN-92 37.7M, Inception-v3 23.8M, Attention-56 31.9M; 3D kernels add the rest
# (DPN-92 little: its 3^3 convolutions are grouped, and it loses the 2.7M 1000-class head).
PAPER_PARAMETERS = {
    "resnet50": (45e6, 47.5e6),
    "dpn92": (36.5e6, 39e6),
    "inception_v3": (34e6, 39e6),
    "attention_resnet50": (53e6, 59e6),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: with shared cores, waking a second OpenMP thread per op costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, "tiny")


def _first_conv(model: nn.Module) -> nn.Conv3d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv3d))


def _batch(size=INPUT_ZYX["tiny"]) -> tuple[torch.Tensor, torch.Tensor]:
    """Two positives (a bright blob in the lesion-mask channel) and two negatives (none), all on the same
    CT, so that only the mask channel tells them apart."""
    generator = torch.Generator().manual_seed(1)
    x = torch.zeros(4, 2, *size)
    x[:, 0] = torch.rand(*size, generator=generator)
    z, y, w = (s // 2 for s in size)
    x[:2, 1, z - 3 : z + 3, y - 6 : y + 6, w - 6 : w + 6] = 1.0
    return x, torch.tensor([[1.0], [1.0], [0.0], [0.0]])


def test_registry_lists_exactly_the_four_classifiers():
    assert list_models("classification") == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_has_an_input_size(name):
    assert set(model_spec(name).profiles) == set(INPUT_ZYX) == {"paper", "small", "tiny"}


@pytest.mark.parametrize("name", NAMES)
def test_tiny_forward_gives_one_logit_per_case_at_any_size(name):
    model = _tiny(name)
    assert model(torch.rand(2, 2, *INPUT_ZYX["tiny"])).shape == (2, 1)
    with torch.no_grad():
        out = model.eval()(torch.rand(3, 2, 20, 24, 36))
    assert out.shape == (3, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_the_first_layer(name):
    model = _tiny(name)
    x, target = _batch()
    nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_a_few_adam_steps_reduce_the_loss(name):
    model = _tiny(name).train()
    # larger than INPUT_ZYX["tiny"]: there the last stage is one voxel, and batch norm over four cases
    # (two pairs alike) snaps its features to +-1, which makes the loss jump from step to step
    x, target = _batch((32, 64, 64))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), target)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_onnx_and_torchscript_serve_what_pytorch_computes(name, tmp_path):
    model = _tiny(name).eval()
    example = torch.rand(1, 2, *INPUT_ZYX["tiny"])
    other = torch.rand(2, 2, 20, 40, 24)  # another batch and a non-cubic size: dynamic axes

    onnx_path = export_onnx(model, example, tmp_path / "model.onnx")
    for x in (example, other):
        np.testing.assert_allclose(onnx_output(onnx_path, x.numpy()), torch_output(model, x), rtol=1e-3, atol=1e-4)

    scripted = torch.jit.load(str(export_torchscript(model, example, tmp_path / "model.pt")))
    with torch.no_grad():
        for x in (example, other):
            np.testing.assert_allclose(scripted(x).numpy(), torch_output(model, x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_paper_profile_has_the_published_size(name):
    count = sum(p.numel() for p in build_model(name, "paper").parameters())
    low, high = PAPER_PARAMETERS[name]
    assert low <= count <= high, f"{name}: {count / 1e6:.1f}M parameters"


@pytest.mark.parametrize("name", NAMES)
def test_unknown_profile_names_the_choices(name):
    with pytest.raises(ValueError, match="paper, small, tiny"):
        build_model(name, "huge")
