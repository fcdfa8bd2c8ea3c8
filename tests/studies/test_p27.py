"""P27 (LPO, online sensitivity sampling): the smoke preset runs, every claim returns a Verdict, Config checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnsens.methods.lpo import AGENTS, moving_success, ppo_update
from nnsens.studies import p27_online_sensitivity_sampling as p27
from nnsens.study import Verdict


@pytest.fixture(scope="module")
def result():
    return p27.run(p27.PRESETS["smoke"])


def test_smoke_runs_and_claims_return_verdicts(result):
    cfg = p27.PRESETS["smoke"]
    assert len(result.logs) == cfg.n_seeds and set(result.logs[0]) == set(AGENTS)
    for lg in result.logs:
        lpo = lg["lpo"]
        assert lpo.success.shape == (cfg.n_episodes,) and lpo.n_samples == cfg.n_episodes * cfg.horizon
        assert tuple(lpo.checkpoints) == (250, 300) and 0 < lpo.n_kept < lpo.n_samples
        assert np.all(lpo.mu_min <= 1.0 + 1e-9) and np.all(lpo.mu_max >= 1.0 - 1e-9)
        assert lg["ppo"].switches_by(cfg.n_episodes) == cfg.n_episodes // cfg.update_every
    for claim in p27.CLAIMS:
        v = claim.check(result)
        assert isinstance(v, Verdict) and v.verdict in ("PASS", "FAIL", "NOT TESTABLE")
    assert p27._c2(result).verdict == "NOT TESTABLE"  # 300 < 2000 episodes
    assert p27._c3("lpo", ">=", 0.8)(result).verdict == "NOT TESTABLE"  # H = 5
    assert all(isinstance(v, float) for v in result.metrics.values())


def test_episodes_to_solve_and_censoring(result):
    s = np.zeros(200)
    assert p27.episodes_to_solve(s, 200) == 200
    s[100:] = 1
    assert p27.episodes_to_solve(s, 200) == 140  # 40 of the last 50 reach the goal at episode 140
    np.testing.assert_allclose(moving_success(s)[139], 0.8)
    # c4: LPO censored where the baseline solved → FAIL whatever the ratio
    logs = [{a: dataclasses.replace(lg[a]) for a in AGENTS} for lg in result.logs]
    n = result.n_episodes
    solved = np.ones(n)
    logs[0]["full_bonus"] = dataclasses.replace(logs[0]["full_bonus"], success=solved)
    logs[0]["lpo"] = dataclasses.replace(logs[0]["lpo"], success=np.zeros(n))
    fake = p27.Result(tuple(logs), result.seeds, result.horizon, n, {})
    v = p27._c4(fake)
    assert v.verdict == "FAIL" and "censored" in v.note
    logs[0]["full_bonus"] = dataclasses.replace(logs[0]["full_bonus"], success=np.zeros(n))
    assert p27._c4(p27.Result(tuple(logs), result.seeds, result.horizon, n, {})).verdict == "NOT TESTABLE"


def test_ppo_update_moves_towards_positive_advantage():
    obs = np.eye(2)[[0, 0, 1, 1]]
    actions = np.array([0, 1, 2, 2])
    adv = np.array([1.0, -1.0, 1.0, 1.0])
    theta = ppo_update(np.zeros((2, 3)), obs, actions, adv, lr=1.0, epochs=3, clip=0.2)
    probs = np.exp(obs @ theta) / np.exp(obs @ theta).sum(1, keepdims=True)
    assert probs[0, 0] > 1 / 3 > probs[0, 1] and probs[2, 2] > 1 / 3
    ratio = probs[0, 0] * 3  # the clip stops the ascent once the ratio passes 1 + ε (one step may overshoot)
    assert ratio < 1.2 + 0.5


def test_presets_follow_the_catalog():
    smoke, cpu, paper = (p27.PRESETS[k] for k in ("smoke", "cpu", "paper"))
    assert smoke == p27.Config() and (smoke.horizon, smoke.n_episodes, smoke.n_seeds) == (5, 300, 1)
    assert (cpu.horizon, cpu.n_episodes, cpu.n_seeds, cpu.update_every) == (10, 2000, 3, 10)
    assert (cpu.feature_dim, cpu.ridge, cpu.oversampling) == (32, 1.0, 12.0)
    assert (paper.n_episodes, paper.n_seeds, paper.update_every) == (10_000, 10, 1)


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"horizon": 1}, "The 'horizon' parameter of P27 must be an int in [2, 50]. Got 1 instead."),
        ({"ridge": 0.0}, "The 'ridge' parameter of P27"),
        ({"oversampling": -1.0}, "The 'oversampling' parameter of P27"),
        ({"update_every": 500}, "The 'update_every' parameter of P27 must be at most n_episodes=300"),
        ({"device": "tpu"}, "The 'device' parameter of P27"),
    ],
)
def test_config_rejects_bad_values(bad, msg):
    with pytest.raises(ValueError) as err:
        p27.Config(**bad)
    assert msg in str(err.value)
