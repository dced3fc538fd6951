"""The four lesion-segmentation architectures: the contract every one of them keeps, and their paper sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.networks.nets import VNet as MonaiVNet
from torch import nn

from ctscreen.models.export import export_onnx, export_torchscript, onnx_output, torch_output
from ctscreen.models.registry import build_model, list_models, model_spec
from ctscreen.models.segmentation import PATCH_ZYX, SIZE_DIVISOR

MODELS = ["fcn8s", "unet", "unetpp", "vnet"]
SIZES = [(16, 32, 48), (32, 16, 32)]

# Published architectures made 3D (3x3 -> 3x3x3 roughly triples a 2D count): U-Net 31M in 2D, UNet++ 9.0M
# in 2D (Zhou et al., Table 1), V-Net 45.6M as MONAI builds it, FCN-8s 134M in 2D of which 103M in fc6/fc7
# (here fc6 is 3x3x3: 57M + 17M, plus 44M of 3D VGG convolutions).
PAPER_PARAMETERS = {"fcn8s": (100e6, 135e6), "unet": (80e6, 100e6), "unetpp": (22e6, 32e6), "vnet": (44e6, 47e6)}


def _tiny(name: str, **overrides) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, "tiny", **overrides)


def _n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _blob_sample(shape=(16, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """A noisy volume with one brighter ellipsoid 'lesion', and its label."""
    z, y, x = torch.meshgrid(*(torch.arange(s, dtype=torch.float32) for s in shape), indexing="ij")
    blob = ((z - 8) / 4) ** 2 + ((y - 14) / 7) ** 2 + ((x - 18) / 6) ** 2 <= 1
    noise = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    return (0.3 * noise + 0.5 * blob)[None, None], blob[None, None].float()


def _with_statistics(model: nn.Module) -> nn.Module:
    """Eval mode after one training-mode pass, so batch norm exports learned-looking running statistics."""
    with torch.no_grad():
        model.train()(torch.rand(2, 1, 16, 32, 32, generator=torch.Generator().manual_seed(1)))
    return model.eval()


def test_registry_lists_the_four_segmentation_models():
    assert list_models("segmentation") == MODELS
    for name in MODELS:
        spec = model_spec(name)
        assert spec.task == "segmentation" and spec.description
        assert set(spec.profiles) == set(PATCH_ZYX) == {"paper", "small", "tiny"}
    assert PATCH_ZYX["paper"] == (128, 256, 256)  # the paper's 256 x 256 x 128 (x, y, z) patch
    assert all(s % SIZE_DIVISOR == 0 for patch in PATCH_ZYX.values() for s in patch)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", SIZES)
def test_tiny_forward_keeps_the_input_size(name, size):
    model = _tiny(name).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 2, *size) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_unetpp_returns_every_head_in_training_and_the_final_one_in_eval():
    model = _tiny("unetpp")
    x = torch.rand(1, 1, 16, 32, 48)
    with torch.no_grad():
        heads = model.train()(x)
        final = model.eval()(x)
    assert isinstance(heads, (list, tuple)) and len(heads) == 4
    assert all(h.shape == (1, 2, 16, 32, 48) for h in heads)
    assert isinstance(final, torch.Tensor)
    # Instance norm and no dropout: train and eval compute the same, so the first head is the final output.
    torch.testing.assert_close(heads[0], final)
    assert not torch.allclose(heads[1], final)
    without = _tiny("unetpp", deep_supervision=False).train()
    assert isinstance(without(x), torch.Tensor)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_the_first_convolution(name):
    model = _tiny(name).train()
    first = next(p for p in model.parameters() if p.dim() == 5)
    image, label = _blob_sample()
    DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))(model(image), label).backward()
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", MODELS)
def test_a_few_adam_steps_fit_a_planted_lesion(name):
    model = _tiny(name, dropout=0.0).train()
    image, label = _blob_sample()
    loss_fn = DeepSupervisionLoss(DiceCELoss(to_onehot_y=True, softmax=True))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = loss_fn(model(image), label)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = loss_fn(model(image), label).item()
    assert final < 0.95 * losses[0], losses + [final]


@pytest.mark.parametrize("name", MODELS)
def test_onnx_export_matches_pytorch_at_two_sizes(name, tmp_path):
    model = _with_statistics(_tiny(name))
    example = torch.rand(1, 1, 16, 32, 48)
    path = export_onnx(model, example, tmp_path / f"{name}.onnx")
    for x in (example, torch.rand(2, 1, 32, 32, 16)):
        expected = torch_output(model, x)
        got = onnx_output(path, x.numpy())
        assert got.shape == expected.shape == (x.shape[0], 2, *x.shape[2:])
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_torchscript_export_matches_pytorch(name, tmp_path):
    model = _with_statistics(_tiny(name))
    example = torch.rand(1, 1, 16, 32, 48)
    loaded = torch.jit.load(str(export_torchscript(model, example, tmp_path / f"{name}.pt")))
    with torch.no_grad():
        got = loaded(example).numpy()
    np.testing.assert_allclose(got, torch_output(model, example), atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_paper_profile_has_the_published_size(name):
    n = _n_parameters(build_model(name, "paper"))
    low, high = PAPER_PARAMETERS[name]
    assert low < n < high, f"{name}: {n / 1e6:.1f}M parameters"
    assert _n_parameters(build_model(name, "tiny")) < _n_parameters(build_model(name, "small")) < n


def test_vnet_paper_profile_is_monai_vnet_layer_for_layer():
    ours = build_model("vnet", "paper").eval()
    reference = MonaiVNet(spatial_dims=3, in_channels=1, out_channels=2, act="prelu").eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.rand(1, 1, 16, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x))


def test_fcn8s_is_vgg16_with_three_scale_skip_fusion():
    model = build_model("fcn8s", "tiny")
    convs = [m for m in model.stages.modules() if isinstance(m, nn.Conv3d)]
    pools = [m for m in model.stages.modules() if isinstance(m, nn.MaxPool3d)]
    assert len(convs) == 13 and len(pools) == 5  # VGG-16's conv layers, five poolings
    assert [m.stride for m in (model.upscore2, model.upscore_pool4, model.upscore8)] == [(2, 2, 2), (2, 2, 2), (8, 8, 8)]
    assert [m.in_channels for m in (model.score_pool3, model.score_pool4)] == [8, 8]
    # The upsamplers start as trilinear interpolation: a constant score map stays constant inside.
    up = model.upscore8(torch.ones(1, 2, 4, 4, 4))
    assert up.shape == (1, 2, 32, 32, 32)
    torch.testing.assert_close(up[..., 8:24, 8:24, 8:24], torch.ones(1, 2, 16, 16, 16))


@pytest.mark.parametrize("name", MODELS)
def test_unknown_profile_names_the_choices(name):
    with pytest.raises(ValueError, match="paper, small, tiny"):
        build_model(name, "huge")
