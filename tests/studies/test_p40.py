"""P40 (numerical precision): the smoke preset runs, every claim returns a Verdict, Config rejects bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnsens.measures.precision import FloatFormat, round_to_format
from nnsens.studies import p40_numerical_precision as p40
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p40.run(p40.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p40.PRESETS["smoke"]
    assert len(result.cells) == len(cfg.widths) * len(cfg.lrs) * 2
    for c in result.cells:
        assert c.knee in set(cfg.mantissa_bits) | {-1} and c.censored in ("", "low", "high")
        assert all(m in cfg.mantissa_bits for m in c.acc) and 0 <= c.fp32_acc <= 1
    for err in result.forward_err.values():
        assert err.shape == (cfg.n_seeds, len(cfg.forward_m)) and np.all(err > 0)
    # truncating weights at more bits gives a smaller forward error (closed-form scaling ~ 2^-m)
    err = result.forward_err[("toward_zero", 1)][0]
    assert err[-1] < err[0] / 100
    for claim in p40.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert all(isinstance(v, float) for v in result.metrics.values())
    assert set(p40.m_star(result, cfg.widths[0], cfg.lrs[0])) == {50, 90, 99}


@pytest.mark.parametrize("rounding", ["toward_zero", "nearest"])
def test_chop_members_matches_round_to_format(rounding):
    g = torch.Generator().manual_seed(0)
    ms = torch.tensor([0, 3, 10, 23])
    p = torch.randn(4, 50, 7, generator=g) * torch.exp2(torch.randint(-140, 127, (4, 50, 7), generator=g).float())
    fmt = FloatFormat(8, 0)
    out = p40.chop_members(p, ms, fmt.emin, fmt.emax, rounding)
    for r, m in enumerate(ms.tolist()):
        ref = round_to_format(p[r], (8, m), rounding=rounding, subnormals=False, overflow="saturate")
        assert torch.equal(out[r], ref)


def test_presets_follow_the_catalog():
    smoke, cpu = p40.PRESETS["smoke"], p40.PRESETS["cpu"]
    assert smoke == p40.Config() and smoke.mantissa_bits == (2, 4, 8, 23) and len(smoke.widths) == 1
    assert smoke.epochs == 3
    assert cpu.mantissa_bits == tuple(range(13)) + (23,) and cpu.widths == (32, 128, 512)
    assert cpu.lrs == (0.1, 0.01) and cpu.n_seeds == 2 and cpu.epochs == 10 and cpu.depths == (1, 2, 3)
    assert cpu.forward_m == tuple(range(4, 17))


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P40 must be an int in [1, 20]. Got 0 instead."),
        ({"mantissa_bits": (2, 2)}, "The 'mantissa_bits' parameter of P40 must not repeat values"),
        ({"mantissa_bits": (24,)}, "The 'mantissa_bits' parameter of P40"),
        ({"exp_bits": 9}, "The 'exp_bits' parameter of P40"),
        ({"lrs": (0.01, 0.1)}, "The 'lrs' parameter of P40 must be two learning rates, larger first"),
        ({"forward_m": (4,)}, "The 'forward_m' parameter of P40 needs at least 2 values"),
        ({"dataset": "mnist"}, "The 'dataset' parameter of P40"),
        ({"device": "tpu"}, "The 'device' parameter of P40"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p40.Config(**bad)
    assert msg in str(err.value)
