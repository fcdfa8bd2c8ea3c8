"""The combination-lock chain MDP of P27."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.data.chain_mdp import ChainMDP


def _play(env: ChainMDP, actions, seed: int = 0):
    rng = np.random.default_rng(seed)
    obs = [env.reset(rng)]
    rewards, dones = [], []
    for a in actions:
        o, r, d = env.step(a, rng)
        obs.append(o)
        rewards.append(r)
        dones.append(d)
    return np.array(obs), rewards, dones


def test_lock_is_seeded_and_the_correct_sequence_reaches_the_goal():
    env = ChainMDP(6, seed=3)
    assert np.array_equal(env.lock, ChainMDP(6, seed=3).lock) and env.lock.shape == (6,)
    assert env.obs_dim == 6 + 1 + 8
    obs, rewards, dones = _play(env, env.lock)
    assert rewards == [0.0] * 5 + [1.0] and dones == [False] * 5 + [True]
    assert np.array_equal(obs[:6, :7].argmax(1), np.arange(6))  # one-hot level while alive


def test_a_wrong_action_is_absorbing_and_unrewarded():
    env = ChainMDP(5, seed=1)
    acts = list(env.lock)
    acts[2] = (acts[2] + 1) % 3
    obs, rewards, dones = _play(env, acts)
    assert sum(rewards) == 0.0 and dones[-1]
    assert np.all(obs[3:, :6].argmax(1) == 5)  # the dead slot from then on
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(0, np.random.default_rng(0))


def test_distractors_are_noise_of_the_given_scale():
    env = ChainMDP(4, n_noise=8, noise_std=0.5, seed=0)
    rng = np.random.default_rng(0)
    noise = np.array([env.reset(rng)[5:] for _ in range(2000)])
    assert noise.shape == (2000, 8) and abs(noise.std() - 0.5) < 0.02
    assert np.all(ChainMDP(4, n_noise=0).reset(rng) == np.eye(5)[0])


@pytest.mark.parametrize(
    "kw, msg",
    [({"horizon": 0}, "The 'horizon' parameter of ChainMDP must be an int in [1, inf). Got 0 instead."),
     ({"horizon": 3, "n_actions": 1}, "The 'n_actions' parameter of ChainMDP"),
     ({"horizon": 3, "noise_std": -1.0}, "The 'noise_std' parameter of ChainMDP")],
)
def test_validation(kw, msg):
    with pytest.raises(ValueError) as err:
        ChainMDP(**kw)
    assert msg in str(err.value)
