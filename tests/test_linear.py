"""semlat.nn.Linear: the prepacked oneDNN inference path equals nn.Linear and tracks weight updates."""

import pytest
import torch
import torch.nn.functional as F

from semlat.nn.linear import Linear, onednn_linear_enabled


@pytest.mark.skipif(not onednn_linear_enabled(), reason="this PyTorch build has no oneDNN linear")
@pytest.mark.parametrize("activation", ["none", "gelu_tanh"])
def test_fast_path_matches_dense_linear_and_follows_weight_updates(activation):
    torch.manual_seed(0)
    layer = Linear(64, 96, activation=activation)
    x = torch.randn(2, 7, 64)

    def dense():
        y = F.linear(x, layer.weight, layer.bias)
        return F.gelu(y, approximate="tanh") if activation == "gelu_tanh" else y

    with torch.no_grad():
        fast = layer(x)
        assert layer._packed is not None  # the fast path ran
        torch.testing.assert_close(fast, dense(), atol=1e-5, rtol=1e-5)
        layer.load_state_dict({"weight": 2 * layer.weight, "bias": layer.bias})  # in place: the cache is stale
        torch.testing.assert_close(layer(x), dense(), atol=1e-5, rtol=1e-5)
    y = layer(x)  # with gradients: the dense path, differentiable
    assert y.requires_grad
    assert set(layer.state_dict()) == {"weight", "bias"}  # the packed weight is never saved


def test_a_layer_built_in_inference_mode_runs():
    with torch.inference_mode():
        layer = Linear(8, 4)
        x = torch.randn(3, 8)
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)


def test_switch_off_and_bad_activation(monkeypatch):
    monkeypatch.setenv("SEMLAT_ONEDNN_LINEAR", "0")
    layer = Linear(8, 4)
    with torch.no_grad():
        layer(torch.randn(3, 8))
    assert layer._packed is None and not onednn_linear_enabled()
    with pytest.raises(ValueError, match="activation"):
        Linear(8, 4, activation="relu")


def test_pointwise_conv_matches_conv1d_and_keeps_its_keys():
    from semlat.nn.linear import PointwiseConv1d

    torch.manual_seed(0)
    conv = PointwiseConv1d(48, 96)
    plain = torch.nn.Conv1d(48, 96, 1)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 48, 300)
    with torch.inference_mode():
        fast = conv(x)
        chained = PointwiseConv1d(96, 8)(fast)  # reads the time-major view without a copy
    assert fast.shape == (2, 96, 300) and chained.shape == (2, 8, 300)
    torch.testing.assert_close(fast, plain(x).detach(), atol=2e-5, rtol=1e-5)
    assert fast.transpose(1, 2).is_contiguous()  # the oneDNN product ran (time-major memory)
    y = conv(x)  # gradients enabled: PyTorch's convolution, differentiable
    assert y.requires_grad and y.is_contiguous()
    y.sum().backward()
    assert conv.weight.grad is not None
