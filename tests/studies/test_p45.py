"""P45 (pychop emulation): the smoke preset runs, every claim returns a Verdict, Config rejects bad values; the
low-precision training path runs on a tiny configuration."""

from __future__ import annotations

import pytest
import torch

from nnsens.studies import p45_pychop as p45
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p45.run(p45.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p45.PRESETS["smoke"]
    assert result.identity == {"fp16": 0, "bf16": 0}
    assert result.formats == ("t0", "t3", "bf16") and result.modes == cfg.modes
    assert len(result.ptq_acc) == len(result.ptq_kl) == 2 * cfg.n_seeds * 3 * len(cfg.modes)
    assert all(v >= -1e-9 for v in result.ptq_kl.values())  # a KL divergence
    for claim in p45.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert p45.CLAIMS[-1].check(result).verdict == "NOT TESTABLE"  # smoke: PTQ only
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_identity_values_cover_ties_subnormals_and_overflow():
    x = p45.identity_values(5000, 0)
    assert x.numel() == 5000 and torch.isfinite(x).all()
    assert (x.abs() == 65520.0).any() and (x.abs() < 2.0**-14).any() and (x.half().isinf()).any()


def test_low_precision_training_runs():
    cfg = p45.Config(cnn_epochs=1, mlp_epochs=1, mnist1d_train=500, qat=True, n_identity=1000)
    data = p45._data("mlp", cfg, torch.device("cpu"))
    for setting in p45.QAT_SETTINGS:
        acc = p45._low_precision_training("mlp", cfg, 0, data, setting, torch.device("cpu"))
        assert 0.0 <= acc <= 1.0


def test_presets_follow_the_catalog():
    cpu = p45.PRESETS["cpu"]
    assert cpu.t_bits == tuple(range(11)) and cpu.exp_bits == 8 and set(cpu.modes) == set(p45.ROUNDINGS)
    assert cpu.n_seeds == 3 and cpu.qat and cpu.qat_t == 3 and cpu.n_identity == 10**6
    assert p45.PRESETS["smoke"] == p45.Config() and not p45.Config().qat


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"n_seeds": 0}, "The 'n_seeds' parameter of P45 must be an int in [1, 20]. Got 0 instead."),
        ({"t_bits": (3, 3)}, "The 't_bits' parameter of P45 must not repeat values"),
        ({"modes": ("up",)}, "The 'modes' parameter of P45 must include 'nearest'"),
        ({"modes": ("nearest", "odd")}, "The 'modes' parameter of P45"),
        ({"named": ("fp7",)}, "The 'named' parameter of P45"),
        ({"named": ("none", "fp16")}, "The 'named' parameter of P45 cannot mix 'none'"),
        ({"exp_bits": 9}, "The 'exp_bits' parameter of P45"),
        ({"device": "tpu"}, "The 'device' parameter of P45"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p45.Config(**bad)
    assert msg in str(err.value)
