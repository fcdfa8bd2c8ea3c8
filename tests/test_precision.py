"""Low-precision float emulation: bit-identity with torch's fp16/bf16 casts, fixed points, directed roundings,
unbiased stochastic rounding, subnormals/overflow, an independent bit-mask truncation, pychop, hooks, arguments."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from nnsens.measures.precision import (
    FORMATS,
    FloatFormat,
    round_activations,
    round_parameters_,
    round_ste,
    round_to_format,
    weight_rounding_hook,
)
from nnsens.models import MLP
from nnsens.training import fit


def _mixed_values(n: int = 200_000, seed: int = 0) -> torch.Tensor:
    """Random float32 bit patterns (all binades) plus values spread over the fp16 range, and exact ties."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(-(2**31), 2**31 - 1, (n,), generator=g, dtype=torch.int64).to(torch.int32)
    raw = bits.view(torch.float32)
    raw = raw[torch.isfinite(raw)]
    spread = torch.randn(n, generator=g) * torch.exp2(torch.randint(-30, 18, (n,), generator=g).float())
    # ties of fp16 at several binades: (k + 1/2) ulp, and around the overflow threshold 65504 / 65520
    k = torch.arange(1, 200, dtype=torch.float32)
    ties = torch.cat([(1024 + k + 0.5) * 2.0**e for e in (-24, -14, -10, 0, 5)] + [torch.tensor(
        [65504.0, 65519.0, 65520.0, 65536.0, -65520.0, 2.0**-25, 2.0**-24, 3 * 2.0**-26])])
    return torch.cat([raw, spread, ties, -ties])


@pytest.mark.parametrize("fmt, cast", [("fp16", lambda t: t.half().float()), ("bf16", lambda t: t.bfloat16().float())])
def test_nearest_is_bit_identical_to_torch_casts(fmt, cast):
    x = _mixed_values()
    r = round_to_format(x, fmt)
    assert torch.equal(r.view(torch.int32), cast(x).view(torch.int32))  # incl. subnormals, ties, ±inf, signed 0


@pytest.mark.parametrize("rounding", ["nearest", "toward_zero", "up", "down", "stochastic"])
@pytest.mark.parametrize("fmt", [FloatFormat(5, 10), FloatFormat(4, 3), FloatFormat(8, 0)])
def test_representable_values_are_fixed_points(rounding, fmt):
    # every fp16 bit pattern is an fp16 value; for the smaller formats, take a dense grid of their own values
    if fmt == FloatFormat(5, 10):
        x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
        x = x[torch.isfinite(x)]
    else:
        x = round_to_format(torch.linspace(-fmt.max_finite, fmt.max_finite, 20001, dtype=torch.float64), fmt)
    r = round_to_format(x, fmt, rounding=rounding, generator=0)
    assert torch.equal(r, x)


def test_directed_roundings_bracket_and_nearest_is_closest():
    fmt = FloatFormat(5, 4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50_000, generator=g, dtype=torch.float64) * 100
    up, down = round_to_format(x, fmt, rounding="up"), round_to_format(x, fmt, rounding="down")
    rz, rn = round_to_format(x, fmt, rounding="toward_zero"), round_to_format(x, fmt, rounding="nearest")
    assert torch.all(down <= x) and torch.all(x <= up)
    assert torch.all(rz.abs() <= x.abs()) and torch.all((rz == up) | (rz == down))
    assert torch.all((rn == up) | (rn == down))
    assert torch.all((rn - x).abs() <= torch.minimum(up - x, x - down))
    # closed form of the relative error of nearest in the normal range: |rn - x| <= 2^-(m+1) |x|
    normal = x.abs() >= fmt.min_normal
    assert torch.all((rn - x)[normal].abs() <= fmt.eps * x[normal].abs())


def test_stochastic_rounding_is_unbiased_and_seeded():
    fmt = FloatFormat(8, 2)
    x = torch.full((200_000,), 1.1, dtype=torch.float64)  # between 1 and 1.25: P(up) = 0.4
    r = round_to_format(x, fmt, rounding="stochastic", generator=0)
    assert set(r.unique().tolist()) == {1.0, 1.25}
    se = 0.25 * (0.4 * 0.6 / x.numel()) ** 0.5
    assert abs(r.mean().item() - 1.1) < 4 * se
    assert torch.equal(r, round_to_format(x, fmt, rounding="stochastic", generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(r, round_to_format(x, fmt, rounding="stochastic", generator=1))


def test_subnormals_and_overflow():
    fmt = FORMATS["fp16"]
    tiny = torch.tensor([2.0**-24, 3 * 2.0**-25, 2.0**-20, -(2.0**-15)])
    torch.testing.assert_close(round_to_format(tiny, fmt), torch.tensor([2.0**-24, 2.0**-23, 2.0**-20, -(2.0**-15)]))
    flushed = round_to_format(tiny, fmt, subnormals=False)
    assert torch.all(flushed == 0) and torch.signbit(flushed[-1])
    big = torch.tensor([7e4, -7e4])
    assert round_to_format(big, fmt).isinf().all()
    assert torch.equal(round_to_format(big, fmt, overflow="saturate"), torch.tensor([65504.0, -65504.0]))
    assert torch.equal(round_to_format(big, fmt, rounding="toward_zero"), torch.tensor([65504.0, -65504.0]))
    assert torch.equal(round_to_format(big, fmt, rounding="up"), torch.tensor([float("inf"), -65504.0]))
    assert torch.equal(round_to_format(big, fmt, rounding="down"), torch.tensor([65504.0, -float("inf")]))
    special = torch.tensor([float("inf"), -float("inf"), float("nan")])
    out = round_to_format(special, fmt, overflow="saturate")
    assert out[0] == float("inf") and out[1] == -float("inf") and out[2].isnan()


def _mask_truncate(x: torch.Tensor, e: int, m: int) -> torch.Tensor:
    """P40's emulator as an independent formula: float32 → int32 view, clear the low 23 − m mantissa bits, then
    flush results below 2^emin to 0 and saturate above the largest finite value."""
    bits = x.view(torch.int32) & ~torch.tensor((1 << (23 - m)) - 1, dtype=torch.int32)
    y = bits.view(torch.float32)
    emax = 2 ** (e - 1) - 1
    big = (2 - 2.0**-m) * 2.0**emax
    y = torch.where(y.abs() < 2.0 ** (1 - emax), torch.zeros_like(y) * torch.sign(x), y)
    return torch.clamp(y, -big, big)


@pytest.mark.parametrize("e, m", [(8, 0), (8, 3), (8, 10), (6, 7), (5, 2)])
def test_truncation_matches_the_bit_mask_formula(e, m):
    g = torch.Generator().manual_seed(e * 100 + m)
    x = torch.randn(100_000, generator=g) * torch.exp2(torch.randint(-40, 40, (100_000,), generator=g).float())
    ours = round_to_format(x, (e, m), rounding="toward_zero", subnormals=False, overflow="saturate")
    ref = _mask_truncate(x, e, m)
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("rmode, rounding", [(1, "nearest"), (2, "up"), (3, "down"), (4, "toward_zero")])
@pytest.mark.parametrize("e, m", [(5, 10), (8, 7), (4, 3), (8, 2), (6, 5)])
def test_matches_pychop_in_the_normal_range(rmode, rounding, e, m):
    os.environ.setdefault("chop_backend", "torch")
    pychop = pytest.importorskip("pychop")
    fmt = FloatFormat(e, m)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(20_000, generator=g, dtype=torch.float64) * torch.exp2(
        torch.randint(fmt.emin, fmt.emax, (20_000,), generator=g).double())
    x = x[(x.abs() < fmt.max_finite) & (x.abs() >= fmt.min_normal)]
    ref = pychop.Chop(e, m, rmode=rmode)(x.clone())
    assert torch.equal(round_to_format(x, fmt, rounding=rounding), ref)


def test_float64_input_and_dtype_kept():
    x = torch.tensor([1 / 3, 2 / 3], dtype=torch.float64)
    r = round_to_format(x, (11, 20))
    assert r.dtype == torch.float64
    ulp = torch.tensor([2.0**-22, 2.0**-21], dtype=torch.float64)  # 1/3 in [1/4, 1/2), 2/3 in [1/2, 1)
    torch.testing.assert_close(r, torch.round(x / ulp) * ulp, rtol=0, atol=0)
    assert torch.equal(round_to_format(x, "fp64"), x)


def test_ste_gradient_is_identity():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    y = round_ste(x, (8, 2))
    assert torch.equal(y.detach(), round_to_format(x, (8, 2)))
    (g,) = torch.autograd.grad((y * torch.arange(101.0)).sum(), x)
    assert torch.equal(g, torch.arange(101.0))


def test_round_parameters_and_weight_hook_in_fit():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP((5, 8, 3))
    seen = []
    hook = weight_rounding_hook((8, 3), rounding="toward_zero")
    fit(net, x, y, epochs=2, batch_size=16, lr=0.05, optimizer="sgd", generator=0,
        after_step=lambda model, step: (hook(model, step), seen.append(step)))
    assert seen == list(range(8))
    for p in net.parameters():  # stored in the format after the last step
        assert torch.equal(p.detach(), round_to_format(p.detach(), (8, 3)))
    net2 = round_parameters_(MLP((5, 8, 3)), "bf16", params=["0.weight"])
    assert torch.equal(net2[0].weight, net2[0].weight.bfloat16().float())


def test_round_activations_hooks_and_removal():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = MLP((4, 16, 3))
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    ref = net(x)
    with round_activations(net, (8, 1), inputs=True) as handles:
        assert len(handles) == 4  # 3 leaves + the input
        out = net(x)
        assert torch.equal(out, round_to_format(out, (8, 1)))
        h = round_to_format(net[1](net[0](round_to_format(x, (8, 1)))), (8, 1))  # hooks are active inside too
        assert torch.equal(net[1](net[0](round_to_format(x, (8, 1)))), h)
    assert torch.equal(net(x), ref)  # hooks removed
    with pytest.raises(RuntimeError), round_activations(net, "fp16"):
        raise RuntimeError("boom")
    assert torch.equal(net(x), ref)  # removed after an exception too
    with pytest.raises(ValueError, match="'modules' parameter of round_activations"):
        with round_activations(net, "fp16", modules=["nope"]):
            pass


@pytest.mark.parametrize(
    "call, err, msg",
    [
        (lambda: FloatFormat(1, 3), ValueError, "The 'exp_bits' parameter of FloatFormat must be an int in [2, 11]"),
        (lambda: FloatFormat(5, 53), ValueError, "The 'man_bits' parameter of FloatFormat must be an int in [0, 52]"),
        (lambda: round_to_format(torch.ones(2), "fp7"), ValueError, "The 'fmt' parameter of round_to_format"),
        (lambda: round_to_format(torch.ones(2), "fp16", rounding="odd"), ValueError,
         "The 'rounding' parameter of round_to_format must be one of"),
        (lambda: round_to_format(torch.ones(2), "fp16", rounding="stochastic"), TypeError,
         "The 'generator' parameter of round_to_format"),
        (lambda: round_to_format(torch.ones(2, dtype=torch.int64), "fp16"), TypeError, "floating-point tensor"),
        (lambda: round_to_format(torch.ones(2), "fp16", overflow="wrap"), ValueError, "The 'overflow' parameter"),
        (lambda: round_parameters_(nn.Linear(2, 2), "fp16", params=["x"]), ValueError, "The 'params' parameter"),
    ],
)
def test_bad_arguments(call, err, msg):
    with pytest.raises(err) as e:
        call()
    assert msg in str(e.value)
