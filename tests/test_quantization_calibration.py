"""Calibration and fake quantization: grid closed forms (levels, error bound, exact zero for asymmetric), STE
gradient, calibration choices ordered on a heavy-tailed distribution, torch's own fake-quant ops, PTQ/QAT models,
bad arguments."""

from __future__ import annotations

import pytest
import torch

from nnsens.measures.quantization import (
    FakeQuant,
    calibrate_range,
    fake_quant_model,
    fake_quantize,
    quantizable_layers,
    quantize,
    range_to_qparams,
)
from nnsens.models import MLP
from nnsens.training import evaluate, fit


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_asymmetric_levels_and_exact_zero(bits):
    x = torch.linspace(-0.7, 2.3, 5001)
    lo, hi = calibrate_range(x, bits, symmetric=False)
    scale, zero = range_to_qparams(lo, hi, bits, symmetric=False)
    assert lo.shape == (1,)  # broadcastable against x
    torch.testing.assert_close(scale, torch.tensor([3.0 / (2**bits - 1)]))
    q = fake_quantize(x, scale, zero, bits, symmetric=False)
    assert q.unique().numel() == 2**bits  # 2^b levels
    assert fake_quantize(torch.zeros(3), scale, zero, bits, symmetric=False).eq(0).all()  # 0 exactly representable
    # inside the range the error is at most s/2 (the zero point shifts the grid by < s/2 of the range ends)
    inside = (x >= (0 - zero) * scale) & (x <= (2**bits - 1 - zero) * scale)
    assert torch.all((q - x)[inside].abs() <= scale / 2 + 1e-6)


def test_symmetric_matches_quantize_and_torch_fake_quant():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 40, generator=g) * torch.linspace(0.1, 2, 6)[:, None]
    for bits in (2, 4, 8):
        lo, hi = calibrate_range(w, bits, per_channel=True)
        scale, zero = range_to_qparams(lo, hi, bits)
        q = fake_quantize(w, scale, zero, bits)
        torch.testing.assert_close(q, quantize(w, bits))  # the P39 quantizer, same grid
        n = 2 ** (bits - 1) - 1
        ref = torch.fake_quantize_per_channel_affine(w, scale.flatten(), zero.flatten().int(), 0, -n, n)
        torch.testing.assert_close(q, ref)
    # asymmetric, per tensor, against torch
    lo, hi = calibrate_range(w, 4, symmetric=False)
    s, z = range_to_qparams(lo, hi, 4, symmetric=False)
    ref = torch.fake_quantize_per_tensor_affine(w, float(s), int(z), 0, 15)
    torch.testing.assert_close(fake_quantize(w, s, z, 4, symmetric=False), ref)


@pytest.mark.parametrize("symmetric", [True, False])
def test_ste_gradient_identity_inside_zero_outside(symmetric):
    x = torch.linspace(-3, 3, 601, requires_grad=True)
    s, z = range_to_qparams(torch.tensor(-1.0), torch.tensor(1.5), 4, symmetric=symmetric)
    y = fake_quantize(x, s, z, 4, symmetric=symmetric)
    (grad,) = torch.autograd.grad(y.sum(), x)
    qmin, qmax = (-7, 7) if symmetric else (0, 15)
    lo, hi = (qmin - z) * s, (qmax - z) * s
    inside = (x.detach() >= lo - 1e-6) & (x.detach() <= hi + 1e-6)
    strict = (x.detach() > lo + 1e-6) & (x.detach() < hi - 1e-6)
    assert torch.all(grad[strict] == 1) and torch.all(grad[~inside] == 0)


def test_calibration_choices_ordered_on_a_heavy_tailed_distribution():
    # Laplace samples: a few large outliers stretch the min-max range; at 4 bits clipping pays off
    g = torch.Generator().manual_seed(0)
    u = torch.rand(20_000, generator=g) - 0.5
    x = -torch.sign(u) * torch.log1p(-2 * u.abs())
    err = {}
    ranges = {}
    for method in ("minmax", "percentile", "mse"):
        lo, hi = calibrate_range(x, 4, method=method, percentile=99.9)
        ranges[method] = float(hi)
        s, z = range_to_qparams(lo, hi, 4)
        err[method] = float(((fake_quantize(x, s, z, 4) - x) ** 2).mean())
    assert ranges["mse"] < ranges["percentile"] < ranges["minmax"] == float(x.abs().max())
    assert err["mse"] < err["percentile"] < err["minmax"]
    # at 8 bits the rounding error is small, so the MSE-optimal clip moves out toward the extremes
    lo8, hi8 = calibrate_range(x, 8, method="mse")
    assert float(hi8) > ranges["mse"]


def test_per_channel_percentile_and_mse_shapes():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 3, 4, generator=g)
    for method in ("minmax", "percentile", "mse"):
        lo, hi = calibrate_range(w, 3, method=method, per_channel=True, axis=1, symmetric=False)
        assert lo.shape == hi.shape == (1, 3, 1) and torch.all(lo <= 0) and torch.all(hi >= 0)


def test_fake_quant_module_calibrates_then_freezes():
    fq = FakeQuant(4, method="minmax", symmetric=False)
    a, b = torch.tensor([0.0, 1.0]), torch.tensor([-0.5, 2.0])
    assert torch.equal(fq(a), a) and torch.equal(fq(b), b)  # calibrating: pass-through
    fq.freeze()
    s, z = range_to_qparams(torch.tensor(-0.5), torch.tensor(2.0), 4, symmetric=False)
    torch.testing.assert_close(fq.scale, s.reshape(1))
    torch.testing.assert_close(fq.zero, z.reshape(1))
    torch.testing.assert_close(fq(torch.tensor([0.3])), fake_quantize(torch.tensor([0.3]), s, z, 4, symmetric=False))
    with pytest.raises(RuntimeError, match="needs observed data"):
        FakeQuant(4).freeze()


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP((6, 32, 3))
    fit(net, x, y, epochs=20, batch_size=32, lr=1e-2, generator=0)
    return net, x, y


def test_fake_quant_model_ptq_matches_quantize_model_and_leaves_model_untouched():
    net, x, y = _data()
    before = [p.detach().clone() for p in net.parameters()]
    q = fake_quant_model(net, weight_bits=4)
    with torch.no_grad():
        manual = torch.nn.functional.linear(
            torch.relu(torch.nn.functional.linear(x, quantize(net[0].weight, 4), net[0].bias)),
            quantize(net[2].weight, 4), net[2].bias)
        torch.testing.assert_close(q(x), manual)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    qa = fake_quant_model(net, weight_bits=8, act_bits=8, calibration_data=x)
    assert abs(evaluate(qa, x, y)["accuracy"] - evaluate(net, x, y)["accuracy"]) <= 0.02


def test_qat_through_fit_recovers_low_bit_accuracy():
    net, x, y = _data()
    q = fake_quant_model(net, weight_bits=2, per_channel=False)
    before = evaluate(q, x, y)["loss"]
    fit(q, x, y, epochs=10, batch_size=32, lr=1e-2, generator=1)  # STE: gradients reach the float weights
    assert evaluate(q, x, y)["loss"] < before


@pytest.mark.parametrize(
    "call, err, msg",
    [
        (lambda: calibrate_range(torch.ones(3), method="kl"), ValueError,
         "The 'method' parameter of calibrate_range must be one of 'minmax', 'percentile', 'mse'. Got 'kl'"),
        (lambda: calibrate_range(torch.ones(3), percentile=30.0), ValueError,
         "The 'percentile' parameter of calibrate_range must be a float in (50, 100]"),
        (lambda: calibrate_range(torch.ones(3), 0), ValueError, "The 'bits' parameter of calibrate_range"),
        (lambda: calibrate_range(torch.ones(3), n_grid=0), ValueError, "The 'n_grid' parameter"),
        (lambda: calibrate_range(torch.ones(3, 2), per_channel=True, axis=5), ValueError, "The 'axis' parameter"),
        (lambda: fake_quantize(torch.ones(2), torch.ones(()), torch.zeros(()), 1), ValueError,
         "The 'bits' parameter of fake_quantize must be an int in [2, 32]"),
        (lambda: fake_quant_model(MLP((2, 2)), weight_bits={"9.weight": 4}), ValueError,
         "The 'weight_bits' parameter of fake_quant_model"),
        (lambda: fake_quant_model(MLP((2, 2)), act_bits=8), ValueError, "The 'calibration_data' parameter"),
        (lambda: FakeQuant(4, method="max"), ValueError, "The 'method' parameter of FakeQuant"),
    ],
)
def test_bad_arguments(call, err, msg):
    with pytest.raises(err) as e:
        call()
    assert msg in str(e.value)


def test_quantizable_layers_unchanged():
    assert quantizable_layers(MLP((3, 4, 2))) == ["0.weight", "2.weight"]
