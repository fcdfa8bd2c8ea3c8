"""LPO: low-switching policy optimisation with online sensitivity sampling (Li, Wang, Cheng, Yang, arXiv 2306.09554).

A compact, mechanism-level version for small discrete-action MDPs (numpy only):

- features φ(s, a): fixed random Fourier features of (observation, one-hot action), scaled to unit norm;
- every visited (s, a) is offered to an :class:`~nnsens.measures.leverage.OnlineSensitivitySampler` (keep with
  probability min(1, C·leverage), importance weight 1/p);
- the policy is switched only when ``log det(Λ_core + λI)`` has grown by ``log 2`` since the last switch; between
  switches it is frozen, so the episodes gathered since the last switch are on-policy data for a PPO-style update;
- the update maximises the clipped surrogate on the bonus-augmented return, bonus ``β·sqrt(φᵀ(Λ_core + λI)⁻¹φ)``.

Two baselines share everything else: ``"ppo"`` (no bonus, an update every ``update_every`` episodes) and
``"full_bonus"`` (the same bonus from the full, unsampled data, an update every ``update_every`` episodes).
RL updates are not supervised training, so they are written here rather than through ``nnsens.training.fit``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnsens.data.chain_mdp import ChainMDP
from nnsens.measures.leverage import OnlineSensitivitySampler, spectral_bounds

__all__ = ["AGENTS", "AgentLog", "RandomFeatures", "moving_success", "ppo_update", "run_agent"]
AGENTS = ("lpo", "ppo", "full_bonus")


@dataclass(frozen=True)
class RandomFeatures:
    """Unit-norm random Fourier features ``φ(s, a) ∝ cos(W [s; onehot(a)] + b)``."""

    weight: np.ndarray  # (obs_dim + n_actions, dim)
    bias: np.ndarray  # (dim,)
    n_actions: int

    @classmethod
    def draw(cls, obs_dim: int, n_actions: int, dim: int, rng: np.random.Generator) -> RandomFeatures:
        """Draw W ~ N(0, 1) and b ~ U[0, 2π)."""
        return cls(rng.standard_normal((obs_dim + n_actions, dim)), rng.uniform(0, 2 * np.pi, dim), n_actions)

    def __call__(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(n, obs_dim), (n,) → (n, dim), each row of norm 1."""
        x = np.concatenate([obs, np.eye(self.n_actions)[actions]], axis=-1)
        phi = np.cos(x @ self.weight + self.bias)
        return phi / np.linalg.norm(phi, axis=-1, keepdims=True)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def ppo_update(theta: np.ndarray, obs: np.ndarray, actions: np.ndarray, advantages: np.ndarray, *, lr: float,
               epochs: int, clip: float) -> np.ndarray:
    """PPO clipped-surrogate ascent for a linear softmax policy ``π(a|s) = softmax(sᵀθ)``; returns the new θ.

    The gradient of ``min(r·A, clip(r, 1±ε)·A)`` is ``A·r·(e_a − π)⊗s`` where the unclipped term is the minimum and
    zero elsewhere; the old log-probabilities are those of ``theta``.
    """
    n = len(actions)
    onehot = np.eye(theta.shape[1])[actions]
    p_old = _softmax(obs @ theta)[np.arange(n), actions]
    for _ in range(epochs):
        pi = _softmax(obs @ theta)
        ratio = pi[np.arange(n), actions] / p_old
        clipped = ((advantages > 0) & (ratio > 1 + clip)) | ((advantages < 0) & (ratio < 1 - clip))
        g = np.where(clipped, 0.0, advantages * ratio)
        theta = theta + lr * obs.T @ (g[:, None] * (onehot - pi)) / n
    return theta


@dataclass(frozen=True)
class AgentLog:
    """What one agent run records."""

    agent: str
    success: np.ndarray  # (episodes,) 1 when the goal was reached
    switch_episodes: np.ndarray  # episodes after which the policy changed
    n_samples: int  # (s, a) samples seen
    n_kept: int  # samples kept in the core set (LPO; 0 otherwise)
    checkpoints: np.ndarray  # (k,) episodes at which the core set was checked
    kept_fraction: np.ndarray  # (k,) kept / seen at each checkpoint
    mu_min: np.ndarray  # (k,) smallest generalised eigenvalue of (Λ̃, Λ_full)
    mu_max: np.ndarray  # (k,) largest

    def switches_by(self, episode: int) -> int:
        """Number of policy switches within the first ``episode`` episodes."""
        return int(np.sum(self.switch_episodes < episode))


def moving_success(success: np.ndarray, window: int = 50) -> np.ndarray:
    """Trailing moving average of the success indicator (NaN before ``window`` episodes)."""
    out = np.full(len(success), np.nan)
    if len(success) >= window:
        c = np.cumsum(np.insert(np.asarray(success, float), 0, 0.0))
        out[window - 1:] = (c[window:] - c[:-window]) / window
    return out


def _advantages(rewards: np.ndarray, slots: np.ndarray, n_slots: int) -> np.ndarray:
    """Return-to-go minus its mean over the batch for the same (time, observation slot), normalised."""
    rtg = np.flip(np.cumsum(np.flip(rewards, 1), 1), 1)  # (episodes, H)
    h = rewards.shape[1]
    key = (np.arange(h)[None, :] * n_slots + slots).ravel()
    sums = np.bincount(key, weights=rtg.ravel(), minlength=h * n_slots)
    counts = np.bincount(key, minlength=h * n_slots)
    adv = rtg.ravel() - sums[key] / np.maximum(counts[key], 1)
    sd = adv.std()
    return adv / sd if sd > 1e-8 else np.zeros_like(adv)


def run_agent(agent: str, env: ChainMDP, features: RandomFeatures, *, n_episodes: int, beta: float, ridge: float,
              oversampling: float, update_every: int, lr: float, epochs: int, clip: float,
              checkpoints: tuple[int, ...] = (), rng: np.random.Generator) -> AgentLog:
    """Run one agent for ``n_episodes`` on ``env`` (see the module docstring)."""
    if agent not in AGENTS:
        raise ValueError(f"The 'agent' parameter of run_agent must be one of {AGENTS}. Got {agent!r} instead.")
    h, n_act, d = env.horizon, env.n_actions, features.bias.shape[0]
    theta = np.zeros((env.obs_dim, n_act))
    sampler = OnlineSensitivitySampler(d, ridge=ridge, oversampling=oversampling, generator=rng)
    full_gram = np.zeros((d, d))
    full_inv = np.eye(d) / ridge
    last_logdet = sampler.logdet
    success, switches, batch = np.zeros(n_episodes), [], []
    ck, kept_frac, mu_lo, mu_hi = [], [], [], []
    for ep in range(n_episodes):
        obs = np.zeros((h, env.obs_dim))
        acts, rews = np.zeros(h, dtype=np.int64), np.zeros(h)
        o = env.reset(rng)
        for t in range(h):
            obs[t] = o
            acts[t] = rng.choice(n_act, p=_softmax(o @ theta))
            o, rews[t], _ = env.step(acts[t], rng)
        success[ep] = rews.sum() > 0
        phi = features(obs, acts)  # (H, d)
        for row in phi:
            if agent == "lpo":
                sampler.offer(row)
            elif agent == "full_bonus":
                u = full_inv @ row
                full_inv -= np.outer(u, u) / (1.0 + row @ u)
            full_gram += np.outer(row, row)
        batch.append((obs, acts, rews, phi))
        if agent == "lpo":
            update = sampler.logdet - last_logdet >= np.log(2.0)
        else:
            update = (ep + 1) % update_every == 0
        if update:
            o_b = np.stack([b[0] for b in batch])  # (episodes, H, obs_dim)
            a_b = np.stack([b[1] for b in batch])
            r_b = np.stack([b[2] for b in batch])
            if agent != "ppo":
                p_b = np.stack([b[3] for b in batch])  # (episodes, H, d)
                inv = sampler.inv if agent == "lpo" else full_inv
                r_b = r_b + beta * np.sqrt(np.maximum(np.einsum("ehi,ij,ehj->eh", p_b, inv, p_b), 0.0))
            slots = o_b[:, :, : h + 1].argmax(-1)
            adv = _advantages(r_b, slots, h + 1)
            theta = ppo_update(theta, o_b.reshape(-1, env.obs_dim), a_b.ravel(), adv, lr=lr, epochs=epochs,
                               clip=clip)
            switches.append(ep)
            batch = []
            last_logdet = sampler.logdet
        if agent == "lpo" and ep + 1 in checkpoints:
            lo, hi = spectral_bounds(sampler.gram, full_gram)
            ck.append(ep + 1)
            kept_frac.append(sampler.n_kept / sampler.n_seen)
            mu_lo.append(lo)
            mu_hi.append(hi)
    return AgentLog(agent, success, np.asarray(switches, dtype=np.int64), n_episodes * h, sampler.n_kept,
                    np.asarray(ck, dtype=np.int64), np.asarray(kept_frac), np.asarray(mu_lo), np.asarray(mu_hi))
