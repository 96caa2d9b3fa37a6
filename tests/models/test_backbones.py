"""Registry behaviour and the contract every backbone shares (shape, out_dim, gradients, Grad-CAM)."""

from __future__ import annotations

import pytest
import torch

from oaprobe.config import check_input_shape
from oaprobe.errors import ConfigError
from oaprobe.facts import DEFAULT_COST, backbone_cost, backbone_title
from oaprobe.models import build_backbone, list_backbones

# smallest cheap shape per backbone (DenseNet121 needs >= 29 voxels per side)
SHAPES = {name: (16, 16, 16) for name in list_backbones()}
SHAPES["densenet121"] = (32, 32, 32)


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone(name, SHAPES[name], width=0.25)


def test_registry_lists_paper_and_monai_backbones():
    names = list_backbones()
    for name in ("resnet3d", "m3t", "nnmamba", "densenet121", "efficientnet-b0", "monai-resnet18"):
        assert name in names


def test_unknown_name_lists_valid_names():
    with pytest.raises(ConfigError, match="unknown backbone 'resnet50'.*resnet3d.*m3t.*nnmamba"):
        build_backbone("resnet50", (16, 16, 16))


def test_too_small_shape_names_backbone_shape_and_minimum():
    with pytest.raises(ConfigError) as err:
        check_input_shape("densenet121", (16, 32, 32))
    msg = str(err.value)
    assert "densenet121" in msg and "(16, 32, 32)" in msg and ">= 29" in msg


def test_shape_needs_three_positive_ints():
    with pytest.raises(ConfigError, match="resnet3d.*three positive integers"):
        check_input_shape("resnet3d", (16, 16))
    with pytest.raises(ConfigError, match="three positive integers"):
        build_backbone("resnet3d", (16, 0, 16))


def test_bad_width_is_refused():
    with pytest.raises(ConfigError, match="width"):
        build_backbone("resnet3d", (16, 16, 16), width=0.0)


def test_titles_and_costs_live_in_the_registry():
    titles = {name: backbone_title(name) for name in list_backbones()}
    assert titles == {"resnet3d": "ResNet3D", "m3t": "M3T", "nnmamba": "nnMamba", "densenet121": "DenseNet121",
                      "efficientnet-b0": "EfficientNet-B0", "monai-resnet18": "MONAI ResNet-18"}
    costs = {name: backbone_cost(name) for name in list_backbones()}
    assert costs == {"resnet3d": 1.0, "m3t": 7.4, "nnmamba": 1.15, "densenet121": 1.5, "efficientnet-b0": 2.5,
                     "monai-resnet18": 0.7}


def test_unknown_backbone_title_is_its_name_and_cost_the_default():
    assert backbone_title("my-net") == "my-net"
    assert backbone_cost("my-net") == DEFAULT_COST == 2.0


@pytest.mark.parametrize("name", list_backbones())
def test_output_shape_matches_out_dim(name):
    net = _build(name)
    out = net(torch.randn(2, 1, *SHAPES[name]))
    assert isinstance(net.out_dim, int) and out.shape == (2, net.out_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_backbones())
def test_gradient_reaches_first_layer(name):
    net = _build(name)
    out = net(torch.randn(2, 1, *SHAPES[name]))
    # a random projection: sums of a LayerNorm output (M3T's) are nearly constant, their gradient only rounding
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    first = next(p for p in net.parameters() if p.ndim == 5)  # the first 3D conv weight
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("name", list_backbones())
def test_same_seed_same_outputs(name):
    x = torch.randn(2, 1, *SHAPES[name])
    a, b = _build(name, seed=3).eval(), _build(name, seed=3).eval()
    c = _build(name, seed=4).eval()
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
        assert not torch.equal(a(x), c(x))


@pytest.mark.parametrize("name", list_backbones())
def test_gradcam_layer_works_with_monai_gradcam(name):
    from monai.visualize import GradCAM

    net = _build(name).eval()
    assert net.gradcam_layer in dict(net.named_modules())

    class OneLogit(torch.nn.Module):
        def __init__(self, encoder: torch.nn.Module) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.out_dim, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.encoder(x))

    cam = GradCAM(OneLogit(net), target_layers=f"encoder.{net.gradcam_layer}")
    saliency = cam(torch.randn(1, 1, *SHAPES[name]))
    assert saliency.shape == (1, 1, *SHAPES[name])
    assert torch.isfinite(saliency).all()
