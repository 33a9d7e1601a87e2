"""Backbones: the paper's LeNet++ size, any feature width, both image sizes."""

import pytest
import torch

from dmlviz.losses import build_loss
from dmlviz.models import PReLU, build_model, resolve_model_name


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_lenetpp_matches_the_paper_network():
    # 797,633 parameters with per-channel PReLU and the 2 -> 10 classifier (counted by hand from the
    # layer table of the center-loss paper's LeNet++): the classifier lives in the loss here.
    model = build_model("lenetpp", 1, 28, 2)
    assert count(model) + count(build_loss("softmax", 10, 2)) == 797_633


def test_light_lenetpp_is_about_a_tenth():
    assert 70_000 < count(build_model("lenetpp-light", 1, 28, 2)) < 76_000


@pytest.mark.parametrize("name", ["lenetpp", "lenetpp-light", "resnet"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
@pytest.mark.parametrize("dim", [2, 3, 64])
def test_any_feature_width_and_image_size(name, channels, size, dim):
    model = build_model(name, channels, size, dim)
    features = model(torch.randn(4, channels, size, size))
    assert features.shape == (4, dim)
    features.sum().backward()


def test_cosine_heads_get_no_feature_activation():
    x = torch.randn(64, 1, 28, 28)
    torch.manual_seed(0)
    with_prelu = build_model("lenetpp-light", 1, 28, 2)
    torch.manual_seed(0)
    without = build_model("lenetpp-light", 1, 28, 2, feature_activation=False)
    raw = without(x)
    # PReLU starts at slope 0.25: negative coordinates shrink four-fold, positive ones stay.
    expected = torch.where(raw > 0, raw, 0.25 * raw)
    assert torch.allclose(with_prelu(x), expected, atol=1e-6)


def test_auto_model_is_light_on_cpu():
    assert resolve_model_name("auto", torch.device("cpu"), 1) == "lenetpp-light"
    assert resolve_model_name("auto", torch.device("cuda"), 3) == "resnet"
    assert resolve_model_name("lenetpp", torch.device("cpu"), 1) == "lenetpp"


def test_unknown_model_and_tiny_images_are_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        build_model("vgg", 1, 28, 2)
    with pytest.raises(ValueError, match="at least 8×8"):
        build_model("lenetpp", 1, 4, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels", [1, 16])
def test_prelu_matches_torch_values_and_gradients(dtype: torch.dtype, channels: int) -> None:
    torch.manual_seed(0)
    ours, theirs = PReLU(channels), torch.nn.PReLU(channels)
    with torch.no_grad():
        ours.weight.uniform_(-0.5, 0.5)
        theirs.weight.copy_(ours.weight)
    x = torch.randn(8, 16, 5, 5).contiguous(memory_format=torch.channels_last).to(dtype)
    x = x.masked_fill(x.abs() < 1e-3, 0.5)  # away from 0, where the two gradients differ by definition
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    # torch's kernel wants the weight in the input's dtype (as autocast gives it); ours casts it itself.
    out_ours, out_theirs = ours(a), torch.nn.functional.prelu(b, theirs.weight.to(dtype))
    assert out_ours.dtype == out_theirs.dtype == dtype
    torch.testing.assert_close(out_ours, out_theirs)
    grad = torch.randn_like(out_ours)
    out_ours.backward(grad)
    out_theirs.backward(grad)
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=2e-2, atol=2e-2)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():  # the probe passes' path
        torch.testing.assert_close(ours(x), torch.nn.functional.prelu(x, theirs.weight.to(dtype)))
