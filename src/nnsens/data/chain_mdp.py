"""A seeded combination-lock chain MDP with sparse reward (the exploration test bed of P27).

There are H levels and ``n_actions`` actions; at each level exactly one action (drawn once from the seed) moves the
agent one level down the chain, every other action sends it to an absorbing dead state, where it stays until the
episode ends after H steps. The reward is 1 on taking the correct action at the last level and 0 otherwise, so a
uniformly random policy finds it with probability ``n_actions**-H``. The observation is a one-hot slot (level h for
an alive agent, slot H for the dead state) followed by ``n_noise`` Gaussian distractor dimensions, redrawn at every
step.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ChainMDP"]


class ChainMDP:
    """Combination lock of horizon H.

    Parameters
    ----------
    horizon : int
        H ≥ 1 levels (and steps per episode).
    n_actions : int, default 3
    n_noise : int, default 8
        Distractor dimensions appended to the observation.
    noise_std : float, default 0.2
        Standard deviation of the distractors.
    seed : int, default 0
        Draws the lock (the correct action of each level).
    """

    def __init__(self, horizon: int, *, n_actions: int = 3, n_noise: int = 8, noise_std: float = 0.2,
                 seed: int = 0) -> None:
        for name, value, low in (("horizon", horizon, 1), ("n_actions", n_actions, 2), ("n_noise", n_noise, 0),
                                 ("seed", seed, 0)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
                raise ValueError(f"The {name!r} parameter of ChainMDP must be an int in [{low}, inf). "
                                 f"Got {value!r} instead.")
        if not isinstance(noise_std, (int, float)) or isinstance(noise_std, bool) or not noise_std >= 0:
            raise ValueError(f"The 'noise_std' parameter of ChainMDP must be a float in [0, inf). "
                             f"Got {noise_std!r} instead.")
        self.horizon, self.n_actions, self.n_noise = int(horizon), int(n_actions), int(n_noise)
        self.noise_std = float(noise_std)
        self.lock = np.random.default_rng([int(seed), 27]).integers(0, self.n_actions, self.horizon)
        self.obs_dim = self.horizon + 1 + self.n_noise
        self.level, self.dead, self.t = 0, False, 0

    def _observe(self, rng: np.random.Generator) -> np.ndarray:
        obs = np.zeros(self.obs_dim)
        obs[self.horizon if self.dead else self.level] = 1.0
        if self.n_noise:
            obs[self.horizon + 1:] = self.noise_std * rng.standard_normal(self.n_noise)
        return obs

    def reset(self, rng: np.random.Generator) -> np.ndarray:
        """Start an episode at level 0; ``rng`` draws the distractors."""
        self.level, self.dead, self.t = 0, False, 0
        return self._observe(rng)

    def step(self, action: int, rng: np.random.Generator) -> tuple[np.ndarray, float, bool]:
        """Take ``action``; returns ``(observation, reward, done)``; an episode always lasts H steps."""
        if self.t >= self.horizon:
            raise RuntimeError("The episode is over; call reset() first.")
        if not 0 <= int(action) < self.n_actions:
            raise ValueError(f"The 'action' parameter of ChainMDP.step must be an int in [0, {self.n_actions - 1}]. "
                             f"Got {action!r} instead.")
        reward = 0.0
        if not self.dead:
            if int(action) == self.lock[self.level]:
                self.level += 1
                if self.level == self.horizon:
                    reward, self.level = 1.0, self.horizon - 1  # goal reached (the episode ends now)
            else:
                self.dead = True
        self.t += 1
        return self._observe(rng), reward, self.t >= self.horizon
