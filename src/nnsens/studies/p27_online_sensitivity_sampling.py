"""arXiv 2306.09554 — LPO: low-switching policy optimisation with exploration via online sensitivity sampling.

What is reproduced, at laptop scale, are the paper's *mechanisms*, not its sample-complexity bound: on a seeded
combination-lock chain (H levels, 3 actions, one correct action per level, otherwise an absorbing dead state; the
observation is a one-hot level plus 8 distractor dimensions), every visited state-action pair gets an online
sensitivity score (ridge leverage of its fixed random feature vector against the current core set) and is kept with
probability min(1, C·score), importance-weighted. The policy (linear softmax, PPO-style clipped updates on the
return plus the elliptical bonus β·sqrt(φᵀ(Λ_core + λI)⁻¹φ)) is switched only when log det(Λ_core + λI) has doubled
the determinant since the last switch. We check that the reweighted core Gram matrix stays spectrally close to the
full one while keeping few samples, that switches grow slowly with the number of episodes, that the bonus makes the
lock solvable where PPO without bonus is not, and that LPO is not much slower to solve than the same bonus computed
from all data with frequent updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnsens.data.chain_mdp import ChainMDP
from nnsens.methods.lpo import AGENTS, AgentLog, RandomFeatures, moving_success, run_agent
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device

PAPER = Paper(
    title="Low-Switching Policy Gradient with Exploration via Online Sensitivity Sampling",
    authors="Yunfan Li, Yiran Wang, Yu Cheng, Lin Yang",
    year=2023,
    arxiv="2306.09554",
    code="",
)
SOLVE_WINDOW, SOLVE_LEVEL, LAST = 50, 0.8, 100  # check 4's moving average; check 3's final window
T_EARLY, T_LATE = 250, 2000  # check 2's episode counts


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P27 (defaults = smoke scale)."""

    horizon: int = param(5, low=2, high=50, doc="H: levels of the combination lock (sweepable)")
    n_episodes: int = param(300, low=50, high=100_000, doc="episodes per agent and seed")
    n_seeds: int = param(1, low=1, high=20, doc="seeds (lock, features, agents)")
    feature_dim: int = param(32, low=2, high=512, doc="d: dimension of the fixed random features (‖φ‖ = 1)")
    ridge: float = param(1.0, low=1e-6, high=1e3, doc="λ: ridge of the leverage scores and the bonus (sweepable)")
    oversampling: float = param(12.0, low=1e-3, high=1e4, doc="C: keep probability min(1, C·score) (sweepable)")
    beta: float = param(1.0, low=0.0, high=100.0, doc="β: bonus scale")
    lr: float = param(2.0, low=1e-4, high=100.0, doc="step size of the PPO-style ascent (all agents)")
    ppo_epochs: int = param(4, low=1, high=100, doc="ascent steps per policy update")
    clip: float = param(0.2, low=0.01, high=1.0, doc="PPO ratio clipping ε")
    update_every: int = param(10, low=1, high=1000,
                              doc="episodes between updates of the two baselines (PPO, full-data bonus)")
    n_noise: int = param(8, low=0, high=64, doc="distractor dimensions of the observation")
    noise_std: float = param(0.2, low=0.0, high=10.0, doc="standard deviation of the distractors")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.update_every > self.n_episodes:
            raise ValueError(f"The 'update_every' parameter of P27 must be at most n_episodes={self.n_episodes}. "
                             f"Got {self.update_every!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(horizon=10, n_episodes=2000, n_seeds=3),
    "paper": Config(horizon=10, n_episodes=10_000, n_seeds=10, update_every=1),
}


@dataclass(frozen=True)
class Result:
    logs: tuple[dict[str, AgentLog], ...]  # one {agent: log} per seed
    seeds: tuple[int, ...]
    horizon: int
    n_episodes: int
    metrics: dict[str, float]

    def success_rate(self, agent: str) -> float:
        """Fraction of the last 100 episodes that reach the goal, mean over seeds."""
        return float(np.mean([lg[agent].success[-LAST:].mean() for lg in self.logs]))

    def to_solve(self, agent: str) -> np.ndarray:
        """Episodes-to-solve per seed (first episode with 50-episode moving success ≥ 0.8; n_episodes if never)."""
        return np.array([episodes_to_solve(lg[agent].success, self.n_episodes) for lg in self.logs])


def episodes_to_solve(success: np.ndarray, censor: int) -> int:
    """First (1-based) episode at which the 50-episode moving success reaches 0.8; ``censor`` if it never does."""
    hit = np.nonzero(moving_success(success, SOLVE_WINDOW) >= SOLVE_LEVEL)[0]
    return int(hit[0] + 1) if len(hit) else int(censor)


def _one(cfg: Config, seed: int) -> dict[str, AgentLog]:
    env = ChainMDP(cfg.horizon, n_noise=cfg.n_noise, noise_std=cfg.noise_std, seed=seed)
    feats = RandomFeatures.draw(env.obs_dim, env.n_actions, cfg.feature_dim, np.random.default_rng([seed, 1]))
    checkpoints = tuple(sorted({*range(T_EARLY, cfg.n_episodes + 1, T_EARLY), cfg.n_episodes}))
    return {
        agent: run_agent(agent, env, feats, n_episodes=cfg.n_episodes, beta=cfg.beta, ridge=cfg.ridge,
                         oversampling=cfg.oversampling, update_every=cfg.update_every, lr=cfg.lr,
                         epochs=cfg.ppo_epochs, clip=cfg.clip, checkpoints=checkpoints,
                         rng=np.random.default_rng([seed, 2, k]))
        for k, agent in enumerate(AGENTS)
    }


def run(cfg: Config) -> Result:
    """Run LPO and both baselines for every seed (numpy on the CPU; ``device`` is accepted and unused)."""
    resolve_device(cfg.device)
    seeds = tuple(cfg.seed + r for r in range(cfg.n_seeds))
    logs = tuple(_one(cfg, s) for s in seeds)
    res = Result(logs, seeds, cfg.horizon, cfg.n_episodes, {})
    lpo = [lg["lpo"] for lg in logs]
    metrics = {
        "kept_fraction": float(max(lg.kept_fraction[-1] for lg in lpo)),
        "mu_min": float(min(lg.mu_min[-1] for lg in lpo)),
        "mu_max": float(max(lg.mu_max[-1] for lg in lpo)),
        "mu_min_any": float(min(lg.mu_min.min() for lg in lpo)),  # over every checkpoint (every 250 episodes)
        "mu_max_any": float(max(lg.mu_max.max() for lg in lpo)),
        "switches_final": float(np.mean([lg.switches_by(cfg.n_episodes) for lg in lpo])),
        "switches_early": float(np.mean([lg.switches_by(T_EARLY) for lg in lpo])),
    }
    for agent in AGENTS:
        metrics[f"success_{agent}"] = res.success_rate(agent)
        metrics[f"to_solve_{agent}"] = float(res.to_solve(agent).mean())
    return Result(logs, seeds, cfg.horizon, cfg.n_episodes, metrics)


# ------------------------------------------------------------------------------------------------- the claims
def _c1_min(res: Result) -> Verdict:
    vals = [lg["lpo"].mu_min[-1] for lg in res.logs]
    return compare(min(vals), ">=", 0.5, note="smallest generalised eigenvalue of (Λ̃, Λ_full), worst seed, at the end")


def _c1_max(res: Result) -> Verdict:
    vals = [lg["lpo"].mu_max[-1] for lg in res.logs]
    return compare(max(vals), "<=", 1.5, note="largest generalised eigenvalue of (Λ̃, Λ_full), worst seed, at the end")


def _c1_kept(res: Result) -> Verdict:
    vals = [lg["lpo"].kept_fraction[-1] for lg in res.logs]
    return compare(max(vals), "<=", 0.2, note="fraction of (s, a) samples in the core set, worst seed")


def _c2(res: Result) -> Verdict:
    if res.n_episodes < T_LATE:
        return Verdict(float("nan"), "<= 2.5", UNTESTABLE, note=f"needs {T_LATE} episodes; ran {res.n_episodes}")
    ratios = [lg["lpo"].switches_by(T_LATE) / max(lg["lpo"].switches_by(T_EARLY), 1) for lg in res.logs]
    return compare(max(ratios), "<=", 2.5, note="switches(T = 2000) / switches(T = 250), worst seed")


def _c3(agent: str, op: str, thr: float):
    def check(res: Result) -> Verdict:
        if res.horizon != 10:
            return Verdict(float("nan"), f"{op} {thr:g}", UNTESTABLE, note=f"defined at H = 10; ran H = {res.horizon}")
        return compare(res.success_rate(agent), op, thr, note="goal rate over the last 100 episodes, mean over seeds")
    return check


def _c4(res: Result) -> Verdict:
    lpo, base = res.to_solve("lpo"), res.to_solve("full_bonus")
    cens_l, cens_b = ~moving_hit(res, "lpo"), ~moving_hit(res, "full_bonus")
    if cens_b.all():
        return Verdict(float("nan"), "<= 1.5", UNTESTABLE, note="the full-data-bonus baseline never solves the lock")
    ratio = float(lpo.mean() / base.mean())
    note = (f"mean episodes-to-solve LPO {lpo.mean():.0f}, full-data bonus {base.mean():.0f} "
            f"(censored at {res.n_episodes})")
    if np.any(cens_l & ~cens_b):
        return Verdict(ratio, "<= 1.5", "FAIL", note=note + "; LPO censored where the baseline is not")
    return compare(ratio, "<=", 1.5, note=note)


def moving_hit(res: Result, agent: str) -> np.ndarray:
    """Per seed: whether the 50-episode moving success ever reaches 0.8 (not censored)."""
    return np.array([bool(np.any(moving_success(lg[agent].success, SOLVE_WINDOW) >= SOLVE_LEVEL)) for lg in res.logs])


CLAIMS = (
    Claim("c1_core_lower",
          "Online sensitivity sampling keeps a core set whose reweighted Gram matrix dominates half the full Gram "
          "matrix, Λ̃ ≽ 0.5·Λ_full, at the end of every seed (d = 32, ‖φ‖ = 1, λ = 1, C = 12; value: smallest "
          "generalised eigenvalue).", _c1_min),
    Claim("c1_core_upper",
          "... and is dominated by 1.5·Λ_full (value: largest generalised eigenvalue, worst seed).", _c1_max),
    Claim("c1_core_kept",
          "... while keeping at most 20 % of the state-action samples (value: largest kept fraction).", _c1_kept),
    Claim("c2_switch_ratio",
          "The log-det rule switches the policy rarely: switches after 2000 episodes are at most 2.5 × those after "
          "250 (value: worst seed).", _c2),
    Claim("c3_lpo_success",
          "At H = 10, LPO reaches the goal in at least 80 % of the last 100 of 2000 episodes (mean over seeds).",
          _c3("lpo", ">=", 0.8)),
    Claim("c3_ppo_success",
          "At H = 10, PPO without a bonus reaches it in at most 20 % of them (mean over seeds).",
          _c3("ppo", "<=", 0.2)),
    Claim("c4_to_solve_ratio",
          "LPO needs at most 1.5 × the episodes (mean over seeds, censored at the run length) of the same bonus from "
          "all data with frequent updates to reach a 50-episode success of 0.8, and is never censored where that "
          "baseline is not.", _c4),
)
