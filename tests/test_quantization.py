"""Uniform fake quantization: closed forms (levels, error bound, scale), idempotence, per-channel vs per-tensor,
model copies, argument validation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.measures.quantization import quantizable_layers, quantization_scale, quantize, quantize_model
from nnsens.models import MLP, SmallCNN


def weights(shape=(6, 50), seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype) * torch.linspace(0.1, 2.0, shape[0]).view(-1, *[1] * (
        len(shape) - 1)).to(dtype)


@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_symmetric_levels_and_error_bound(bits):
    # A channel spanning [-1, 1] densely hits every one of the 2^b - 1 levels {-n..n}·s, s = 1/n, n = 2^(b-1) - 1.
    w = torch.linspace(-1, 1, 1001).repeat(3, 1) * torch.tensor([[1.0], [0.5], [3.0]])
    q = quantize(w, bits)
    n = 2 ** (bits - 1) - 1
    for c in range(3):
        assert q[c].unique().numel() == 2**bits - 1
        scale = w[c].abs().max() / n
        torch.testing.assert_close(q[c].unique(), torch.arange(-n, n + 1) * scale)
        assert (q[c] - w[c]).abs().max() <= scale / 2 + 1e-6


def test_error_bound_random_weights_and_scale_formula():
    w = weights((8, 3, 3, 3))
    for bits in (2, 3, 4, 8):
        scale, zero = quantization_scale(w, bits)
        assert scale.shape == (8, 1, 1, 1) and torch.all(zero == 0)
        torch.testing.assert_close(scale.flatten(), w.abs().amax(dim=(1, 2, 3)) / (2 ** (bits - 1) - 1))
        assert torch.all((quantize(w, bits) - w).abs() <= scale / 2 + 1e-6)


def test_eight_bits_nearly_lossless_and_error_shrinks_with_bits():
    w = weights()
    err = [float((quantize(w, b) - w).norm() / w.norm()) for b in (2, 3, 4, 8)]
    assert err[-1] < 1e-2
    assert err == sorted(err, reverse=True)


@pytest.mark.parametrize("kw", [{}, {"per_channel": False}, {"symmetric": False}, {"axis": 1}])
def test_idempotent_and_preserves_dtype_shape(kw):
    w = weights((5, 20), dtype=torch.float64)
    q = quantize(w, 3, **kw)
    assert q.shape == w.shape and q.dtype == w.dtype and not q.requires_grad
    torch.testing.assert_close(quantize(q, 3, **kw), q)


def test_per_channel_keeps_each_channel_max_and_per_tensor_shares_one_scale():
    w = weights((4, 30))
    q = quantize(w, 4)
    torch.testing.assert_close(q.abs().amax(1), w.abs().amax(1))
    qt = quantize(w, 4, per_channel=False)
    s = w.abs().max() / 7
    torch.testing.assert_close(qt / s, torch.round(qt / s))  # every value is an integer multiple of the one scale
    # per-tensor is coarser for the small channels
    assert (qt - w)[0].norm() > (q - w)[0].norm()


def test_asymmetric_grid():
    w = torch.rand(3, 200) * 2 + 0.5  # all positive: the grid spans [0, max]
    for bits in (1, 2, 4):
        q = quantize(w, bits, symmetric=False)
        scale, zero = quantization_scale(w, bits, symmetric=False)
        assert all(q[c].unique().numel() <= 2**bits for c in range(3))
        assert torch.all((q - w).abs() <= scale / 2 + 1e-6)
    assert quantize(torch.zeros(2, 3), 4, symmetric=False).abs().sum() == 0


def test_zero_channel_and_requires_grad_input():
    w = weights((3, 10)).requires_grad_(True)
    with torch.no_grad():
        w[1] = 0
    q = quantize(w, 2)
    assert torch.all(q[1] == 0) and torch.isfinite(q).all() and q.grad_fn is None


def test_quantize_model_copies():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallCNN(pool="flatten", image_size=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bits = {"conv1.weight": 2, "fc1.weight": 3}
    qm = quantize_model(model, bits)
    assert qm is not model
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    sd = qm.state_dict()
    for k, v in before.items():
        expected = quantize(v, bits[k]) if k in bits else v
        torch.testing.assert_close(sd[k], expected)


def test_quantizable_layers():
    assert quantizable_layers(SmallCNN(pool="flatten", image_size=8)) == [
        "conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert quantizable_layers(MLP((4, 5, 6, 2))) == ["0.weight", "2.weight", "4.weight"]
    assert quantizable_layers(nn.Linear(2, 2)) == ["weight"]


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (lambda w: quantize(w, 1), ValueError, "The 'bits' parameter of quantize must be an int in [2, 32]. "
                                               "Got 1 instead."),
        (lambda w: quantize(w, 0, symmetric=False), ValueError, "must be an int in [1, 32]. Got 0 instead."),
        (lambda w: quantize(w, 4.0), ValueError, "'bits' parameter"),
        (lambda w: quantize(w, 33), ValueError, "'bits' parameter"),
        (lambda w: quantize(w, 4, axis=2), ValueError, "The 'axis' parameter of quantize must be an int "
                                                       "in [-2, 1]. Got 2 instead."),
        (lambda w: quantize(w.long(), 4), TypeError, "'w' parameter of quantize must be a floating-point tensor"),
        (lambda w: quantize_model(nn.Linear(2, 2), {"bias2": 4}), ValueError,
         "The 'bits' parameter of quantize_model must name parameters of the model"),
        (lambda w: quantize_model(nn.Linear(2, 2), [4]), TypeError, "'bits' parameter of quantize_model"),
    ],
)
def test_bad_arguments(call, exc, msg):
    with pytest.raises(exc) as err:
        call(weights((3, 4)))
    assert msg in str(err.value)
