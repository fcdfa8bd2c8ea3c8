"""arXiv 2305.16202 — DP-SGD without clipping: the Lipschitz neural network way (clipless DP-SGD).

What is reproduced, at laptop scale: on scikit-learn's digits (64 features, 10 classes) and breast-cancer (30
features, 2 classes) sets, standardised and projected onto the ball ‖x‖ ≤ X0, a bias-free 1-Lipschitz MLP
(orthogonally initialised Linear layers, GroupSort-2; :mod:`nnsens.methods.lipschitz`) is trained with clipless
DP-SGD through :func:`nnsens.training.fit`: the batch-summed gradient of each effective weight W_d gets Gaussian
noise scaled to the analytic per-example bound Δ_d = (√2/τ)·X0 (``before_step``), then an SGD step and a projection
back onto ‖W_d‖₂ ≤ 1 (``after_step``). The noise multiplier for a target ε (δ = 1/N) comes from opacus's RDP
accountant at sampling rate q = B/N. After every epoch the per-example gradient norms of every layer are measured on
all training examples with torch.func (:func:`nnsens.measures.privacy.per_sample_gradient_norms`) and compared with
Δ_d. The baseline is opacus's PrivacyEngine (per-example clipping, Poisson sampling) on an unconstrained ReLU MLP
at the same ε; accuracy and the wall-clock time of an epoch (interleaved epochs) are compared.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnsens.measures.privacy import epsilon_spent, noise_multiplier_for_epsilon, per_sample_gradient_norms
from nnsens.methods.lipschitz import ClipLessStep, LipschitzMLP, gradient_norm_bounds, project_inputs
from nnsens.models import MLP
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit

PAPER = Paper(
    title="DP-SGD Without Clipping: The Lipschitz Neural Network Way",
    authors="Louis Béthune, Thomas Massena, Thibaut Boissin, Aurélien Bellet, Franck Mamalet, Yannick Prudent, "
            "Corentin Friedrich, Mathieu Serrurier, David Vigouroux",
    year=2024,
    arxiv="2305.16202",
    code="github.com/Algue-Rythme/lip-dp",
)
DATASETS = ("digits", "breast_cancer")
REL_TOL = 1e-6  # a measured norm above Δ_d (1 + REL_TOL) is a violation


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P10 (defaults = smoke scale)."""

    datasets: tuple[str, ...] = param(("digits",), choices=DATASETS, doc="scikit-learn sets trained on")
    epsilons: tuple[float, ...] = param((4.0,), low=0.05, high=100.0,
                                        doc="privacy budgets ε of the clipless runs (sweepable; δ = 1/N)")
    baseline_epsilon: float = param(4.0, low=0.05, high=100.0,
                                    doc="ε of the opacus baseline and of the comparison (a clipless run is added)")
    tau: float = param(0.0625, low=1e-3, high=100.0, doc="τ: loss temperature, L_loss = √2/τ (sweepable)")
    input_bound: float = param(1.0, low=1e-3, high=100.0, doc="X0: inputs projected onto ‖x‖ ≤ X0 (sweepable)")
    hidden: int = param(64, low=2, high=4096, doc="width of the hidden layers (even: GroupSort-2)")
    n_hidden: int = param(2, low=1, high=8, doc="hidden layers of both networks")
    n_seeds: int = param(1, low=1, high=20, doc="seeds (initialisation, data order, noise) per dataset and ε")
    epochs: int = param(5, low=1, high=1000, doc="training epochs (the accountant's horizon)")
    batch_size: int = param(128, low=8, high=400, doc="expected batch size B; sampling rate q = B/N")
    lr: float = param(0.1, low=1e-5, high=100.0,
                      doc="SGD learning rate of the clipless runs in units of 1/Δ (the actual rate is lr/Δ, so the "
                          "joint scale of X0/τ cancels)")
    projection: str = param("spectral", choices=("spectral", "bjorck"),
                            doc="projection onto ‖W‖₂ ≤ 1 after each step (post-processing)")
    opacus_lr: float = param(0.3, low=1e-5, high=100.0, doc="SGD learning rate of the opacus baseline")
    max_grad_norm: float = param(1.0, low=1e-4, high=1e4, doc="per-example clipping norm C of the opacus baseline")
    timing_epochs: int = param(0, low=0, high=50,
                               doc="interleaved epochs timed per method and dataset (0: no timing; smoke scale, "
                                   "so that the committed claims table holds no wall-clock number)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % 2:
            raise ValueError(f"The 'hidden' parameter of P10 must be even (GroupSort-2 sorts pairs). "
                             f"Got {self.hidden!r} instead.")
        for name in ("datasets", "epsilons"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"The {name!r} parameter of P10 must not repeat values. Got {values!r} instead.")


PRESETS = {
    "smoke": Config(),
    "cpu": Config(datasets=DATASETS, epsilons=(0.5, 1.0, 2.0, 4.0, 8.0), n_seeds=3, epochs=30, timing_epochs=5),
    "paper": Config(datasets=DATASETS, epsilons=(0.5, 1.0, 2.0, 4.0, 8.0), n_seeds=10, epochs=60, hidden=256,
                    n_hidden=3, projection="bjorck", timing_epochs=10),
}


@dataclass(frozen=True)
class BoundCheck:
    """Per-example gradient norms against Δ_d over every epoch of one clipless run."""

    violations: int  # (example, layer, epoch) triples with norm > Δ_d (1 + REL_TOL)
    max_ratio: float  # max over examples, layers and epochs of norm / Δ_d
    ratio_by_epoch: np.ndarray  # (epochs, layers): max over examples of norm / Δ_d
    final_ratios: np.ndarray  # (layers, N): norm / Δ_d of every example after the last epoch


@dataclass(frozen=True)
class Run:
    """One trained model: its dataset, ε, seed, method, noise multiplier and test accuracy."""

    dataset: str
    method: str  # "clipless" or "opacus"
    epsilon: float
    seed: int
    noise_multiplier: float
    epsilon_spent: float
    test_acc: float
    check: BoundCheck | None  # clipless runs only


@dataclass(frozen=True)
class Result:
    runs: tuple[Run, ...]
    epoch_seconds: dict[str, dict[str, list[float]]]  # dataset → method → wall seconds of each timed epoch
    epoch_cpu_seconds: dict[str, dict[str, list[float]]]  # same, process CPU seconds
    layers: tuple[str, ...]
    bounds: dict[str, float]  # layer → Δ_d
    datasets: tuple[str, ...]
    epsilons: tuple[float, ...]  # clipless ε grid (the configured one plus the baseline ε)
    baseline_epsilon: float
    metrics: dict[str, float]

    def select(self, **kw) -> list[Run]:
        """The runs whose fields equal ``kw`` (e.g. ``dataset="digits", method="opacus"``)."""
        return [r for r in self.runs if all(getattr(r, k) == v for k, v in kw.items())]

    def mean_acc(self, dataset: str, method: str, epsilon: float) -> float:
        """Mean test accuracy over seeds (NaN when there is no such run)."""
        accs = [r.test_acc for r in self.select(dataset=dataset, method=method, epsilon=epsilon)]
        return float(np.mean(accs)) if accs else float("nan")


# ------------------------------------------------------------------------------------------------- data
def load(name: str, seed: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """``(x_train, y_train, x_test, y_test)``: a stratified 75/25 split, features standardised on the training part."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    ds = load_digits() if name == "digits" else load_breast_cancer()
    xtr, xte, ytr, yte = train_test_split(ds.data, ds.target, test_size=0.25, random_state=seed, stratify=ds.target)
    scaler = StandardScaler().fit(xtr)
    as_x = lambda a: torch.as_tensor(scaler.transform(a), dtype=torch.float32, device=device)  # noqa: E731
    as_y = lambda a: torch.as_tensor(a, dtype=torch.long, device=device)  # noqa: E731
    return as_x(xtr), as_y(ytr), as_x(xte), as_y(yte)


# ------------------------------------------------------------------------------------------------- the two routes
def _steps(n: int, cfg: Config) -> int:
    return cfg.epochs * -(-n // cfg.batch_size)  # fit's steps: ceil(N / B) per epoch


def clipless_route(cfg: Config, xtr, ytr, n_classes: int, epsilon: float, seed: int, device, *, check: bool):
    """Model and an ``epoch()`` closure of clipless DP-SGD; ``epoch()`` returns the bound check's (layers, N) ratios
    after the epoch when ``check``."""
    n = xtr.shape[0]
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, 10]).integers(2**31)))
    model = LipschitzMLP([xtr.shape[1]] + [cfg.hidden] * cfg.n_hidden + [n_classes], generator=gen).to(device)
    bounds = gradient_norm_bounds(model, input_bound=cfg.input_bound, tau=cfg.tau)
    q, delta = cfg.batch_size / n, 1.0 / n
    sigma = noise_multiplier_for_epsilon(epsilon, delta=delta, sample_rate=q, steps=_steps(n, cfg))
    noise_gen = torch.Generator(device=device).manual_seed(int(np.random.default_rng([seed, 11]).integers(2**31)))
    step = ClipLessStep(bounds, noise_multiplier=sigma, batch_size=cfg.batch_size, tau=cfg.tau, generator=noise_gen,
                        projection=cfg.projection)
    order = torch.Generator().manual_seed(int(np.random.default_rng([seed, 12]).integers(2**31)))
    names = list(bounds)
    delta_max = max(bounds.values())
    one = lambda z, y: step.loss(z, y) * cfg.batch_size  # noqa: E731  (one example's own loss)

    def epoch() -> np.ndarray | None:
        fit(model, xtr, ytr, epochs=1, batch_size=cfg.batch_size, lr=cfg.lr / delta_max, optimizer="sgd", momentum=0.0,
            loss_fn=step.loss, generator=order, before_step=step.before_step, after_step=step.after_step)
        if not check:
            return None
        norms = per_sample_gradient_norms(model, xtr, target=ytr, loss=one, params=names, internal_batch_size=512)
        return np.stack([(norms[k] / bounds[k]).double().cpu().numpy() for k in names])  # (layers, N)

    meta = {"sigma": sigma, "eps": epsilon_spent(sigma, delta=delta, sample_rate=q, steps=_steps(n, cfg)),
            "bounds": bounds}
    return model, epoch, meta


def opacus_route(cfg: Config, xtr, ytr, n_classes: int, epsilon: float, seed: int, device):
    """Model and an ``epoch()`` closure of opacus DP-SGD (PrivacyEngine: per-example clipping, Poisson sampling)."""
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    n = xtr.shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.default_rng([seed, 20]).integers(2**31)))
        model = MLP([xtr.shape[1]] + [cfg.hidden] * cfg.n_hidden + [n_classes]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.opacus_lr)
    sample_gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, 21]).integers(2**31)))
    noise_gen = torch.Generator(device=device).manual_seed(int(np.random.default_rng([seed, 22]).integers(2**31)))
    loader = DataLoader(TensorDataset(xtr, ytr), batch_size=cfg.batch_size, generator=sample_gen)
    q, steps = 1.0 / len(loader), cfg.epochs * len(loader)  # what make_private_with_epsilon would use
    sigma = noise_multiplier_for_epsilon(epsilon, delta=1.0 / n, sample_rate=q, steps=steps)
    with warnings.catch_warnings():  # opacus warns that secure_mode is off: intended for a seeded study
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        model, opt, loader = engine.make_private(module=model, optimizer=opt, data_loader=loader,
                                                 noise_multiplier=sigma, max_grad_norm=cfg.max_grad_norm,
                                                 noise_generator=noise_gen)
    loss_fn = nn.CrossEntropyLoss()

    def epoch() -> None:
        model.train()
        with warnings.catch_warnings():  # opacus's hooks fire on module outputs (inputs need no grad): intended
            warnings.filterwarnings("ignore", message="Full backward hook")
            for xb, yb in loader:  # Poisson-sampled batches
                opt.zero_grad(set_to_none=True)
                loss_fn(model(xb), yb).backward()
                opt.step()
        model.eval()

    meta = {"sigma": sigma, "eps": epsilon_spent(sigma, delta=1.0 / n, sample_rate=q, steps=steps)}
    return model, epoch, meta


# ------------------------------------------------------------------------------------------------- the pipeline
def _clipless_run(cfg, data, name, epsilon, seed, device) -> tuple[Run, dict[str, float]]:
    xtr, ytr, xte, yte = data
    n_classes = int(ytr.max()) + 1
    model, epoch, meta = clipless_route(cfg, xtr, ytr, n_classes, epsilon, seed, device, check=True)
    ratios = [epoch() for _ in range(cfg.epochs)]  # each (layers, N)
    stack = np.stack(ratios)  # (epochs, layers, N)
    check = BoundCheck(int((stack > 1 + REL_TOL).sum()), float(stack.max()), stack.max(axis=2), ratios[-1])
    acc = accuracy(model, xte, yte)
    return Run(name, "clipless", epsilon, seed, meta["sigma"], meta["eps"], acc, check), meta["bounds"]


def _opacus_run(cfg, data, name, epsilon, seed, device) -> Run:
    xtr, ytr, xte, yte = data
    model, epoch, meta = opacus_route(cfg, xtr, ytr, int(ytr.max()) + 1, epsilon, seed, device)
    for _ in range(cfg.epochs):
        epoch()
    return Run(name, "opacus", epsilon, seed, meta["sigma"], meta["eps"], accuracy(model, xte, yte), None)


def run(cfg: Config) -> Result:
    """Clipless runs over the ε grid and opacus runs at the baseline ε, per dataset and seed, then the timing."""
    device = resolve_device(cfg.device)
    epsilons = tuple(sorted(set(cfg.epsilons) | {cfg.baseline_epsilon}))
    runs: list[Run] = []
    wall, cpu, bounds = {}, {}, {}
    for name in cfg.datasets:
        data = load(name, cfg.seed, device)
        data = (project_inputs(data[0], cfg.input_bound), data[1], project_inputs(data[2], cfg.input_bound), data[3])
        raw = load(name, cfg.seed, device)  # the opacus baseline keeps the standardised features
        for rep in range(cfg.n_seeds):
            seed = cfg.seed + rep
            for eps in epsilons:
                r, bounds = _clipless_run(cfg, data, name, eps, seed, device)
                runs.append(r)
            runs.append(_opacus_run(cfg, raw, name, cfg.baseline_epsilon, seed, device))
        if cfg.timing_epochs:
            wall[name], cpu[name] = _timing(cfg, data, raw, device)
    res = Result(tuple(runs), wall, cpu, tuple(bounds), bounds, tuple(cfg.datasets), epsilons, cfg.baseline_epsilon,
                 {})
    return Result(**{**res.__dict__, "metrics": _metrics(res)})


def _timing(cfg, data, raw, device):
    """Wall and CPU seconds of `timing_epochs` epochs of each route at the baseline ε, interleaved (each route on its
    own inputs: projected for clipless, standardised for opacus)."""
    xtr, ytr, xraw = data[0], data[1], raw[0]
    k = int(ytr.max()) + 1
    routes = {"clipless": clipless_route(cfg, xtr, ytr, k, cfg.baseline_epsilon, cfg.seed, device, check=False)[1],
              "opacus": opacus_route(cfg, xraw, ytr, k, cfg.baseline_epsilon, cfg.seed, device)[1]}
    for epoch in routes.values():  # one warm-up epoch each (first-call overheads are not an epoch's cost)
        epoch()
    wall: dict[str, list[float]] = {m: [] for m in routes}
    cpu: dict[str, list[float]] = {m: [] for m in routes}
    for _ in range(cfg.timing_epochs):
        for method, epoch in routes.items():  # interleaved: clipless, opacus, clipless, ...
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            epoch()
            if device.type == "cuda":
                torch.cuda.synchronize()
            wall[method].append(time.perf_counter() - t0)
            cpu[method].append(time.process_time() - c0)
    return wall, cpu


def epoch_time_ratio(res: Result, dataset: str, which: str = "wall") -> float:
    """Median clipless epoch time over median opacus epoch time (wall-clock or CPU seconds)."""
    t = (res.epoch_seconds if which == "wall" else res.epoch_cpu_seconds)[dataset]
    return statistics.median(t["clipless"]) / statistics.median(t["opacus"])


def _metrics(res: Result) -> dict[str, float]:
    out: dict[str, float] = {}
    clip = res.select(method="clipless")
    out["bound_violations"] = float(sum(r.check.violations for r in clip))
    out["bound_max_ratio"] = float(max(r.check.max_ratio for r in clip))
    out["bound"] = float(next(iter(res.bounds.values())))
    for name in res.datasets:
        for eps in res.epsilons:
            out[f"acc_clipless_{name}_eps{eps:g}"] = res.mean_acc(name, "clipless", eps)
        out[f"acc_opacus_{name}"] = res.mean_acc(name, "opacus", res.baseline_epsilon)
        out[f"acc_gap_{name}"] = 100 * (out[f"acc_clipless_{name}_eps{res.baseline_epsilon:g}"]
                                        - out[f"acc_opacus_{name}"])
        if name in res.epoch_seconds:
            out[f"time_ratio_{name}"] = epoch_time_ratio(res, name)
            out[f"cpu_time_ratio_{name}"] = epoch_time_ratio(res, name, "cpu")
        sig = [r.noise_multiplier for r in res.select(dataset=name, method="clipless", epsilon=res.baseline_epsilon)]
        out[f"sigma_clipless_{name}"] = float(sig[0])
        out[f"sigma_opacus_{name}"] = float(res.select(dataset=name, method="opacus")[0].noise_multiplier)
    return {k: float(v) for k, v in out.items()}


# ------------------------------------------------------------------------------------------------- the claims
def _c1_violations(res: Result) -> Verdict:
    n = sum(r.check.ratio_by_epoch.shape[0] for r in res.select(method="clipless"))
    return compare(res.metrics["bound_violations"], "<=", 0,
                   note=f"norms > Δ_d·(1 + {REL_TOL:g}) in {n} run-epochs, each over every layer and training example")


def _c1_vacuity(res: Result) -> Verdict:
    return compare(res.metrics["bound_max_ratio"], ">=", 0.05,
                   note="max measured norm / Δ_d over all runs, layers, epochs and examples; < 0.05 flags a vacuous "
                        "bound")


def _c2_accuracy(res: Result) -> Verdict:
    gaps = {n: res.metrics[f"acc_gap_{n}"] for n in res.datasets}
    worst = min(gaps, key=gaps.get)
    note = "; ".join(f"{n}: clipless {100 * res.mean_acc(n, 'clipless', res.baseline_epsilon):.1f} vs opacus "
                     f"{100 * res.mean_acc(n, 'opacus', res.baseline_epsilon):.1f}" for n in res.datasets)
    return compare(gaps[worst], ">=", -3.0, note=f"points, worst dataset {worst}; {note}")


def _c2_time(res: Result) -> Verdict:
    ratios = {n: res.metrics[f"time_ratio_{n}"] for n in res.datasets if f"time_ratio_{n}" in res.metrics}
    if not ratios:
        return Verdict(float("nan"), "<= 0.667", UNTESTABLE, note="epochs not timed (timing_epochs = 0)")
    worst = max(ratios, key=ratios.get)
    note = ", ".join(f"{n} {v:.2f}" for n, v in ratios.items())
    return compare(ratios[worst], "<=", round(1 / 1.5, 3), note=f"median wall-clock epoch, clipless/opacus: {note}")


CLAIMS = (
    Claim("c1_bound_violations",
          "Per-example gradient norms of every effective weight, measured with torch.func on all training examples "
          "after every epoch of every clipless run, never exceed the analytic bound Δ_d = (√2/τ)·X0 (value: number "
          "of violations at relative tolerance 1e-6).", _c1_violations),
    Claim("c1_bound_not_vacuous",
          "The bound is not vacuous: the largest measured norm reaches at least 5 % of Δ_d (value: max-to-bound "
          "ratio).", _c1_vacuity),
    Claim("c2_accuracy_vs_opacus",
          "At ε = 4 (δ = 1/N), the clipless 1-Lipschitz network's mean test accuracy over seeds is at most 3 points "
          "below opacus DP-SGD with clipping, on each dataset (value: smallest clipless − opacus gap, points).",
          _c2_accuracy),
    Claim("c2_epoch_time",
          "A clipless epoch takes at most 1/1.5 of an opacus epoch (median wall-clock over interleaved epochs; "
          "value: the largest ratio over datasets).", _c2_time),
)
