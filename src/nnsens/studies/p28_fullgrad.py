"""arXiv 1905.00780 — Srinivas, S., Fleuret, F. (NeurIPS 2019), *Full-Gradient Representation for Neural Network
Visualization*.

What is reproduced, offline and at small scale, on sklearn digits upsampled to 32x32 with a VGG-style CNN (4 conv
+ BatchNorm + ReLU blocks, biases on) in eval mode:

1. completeness: the input-gradient part plus the bias-gradient parts of every affine layer (BatchNorm's eval-mode
   shift counted as a bias) sum to the explained logit, on random inputs of an untrained net with random BatchNorm
   statistics and of the trained net, and on test images of the trained net;
2. pixel perturbation: replacing the k % *least* salient pixels by the image mean should barely move the logit when
   the map is faithful; FullGrad against Saliency, InputXGradient, Integrated Gradients, SmoothGrad, Grad-CAM (all
   Captum) and a random map, with paired-bootstrap CIs over images;
3. remove and retrain (ROAR): remove the top-k % pixels of every train and test image (set to the background value
   0), retrain from scratch, and compare accuracy drops.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from nnsens.data import digits_images
from nnsens.measures.fullgrad import fullgrad, fullgrad_parts
from nnsens.measures.metrics import pixel_perturbation, remove_and_retrain
from nnsens.models import VGGNet
from nnsens.study import UNTESTABLE, Claim, Paper, StudyConfig, Verdict, compare, param, resolve_device
from nnsens.training import accuracy, fit, predict

with warnings.catch_warnings():  # captum imports tqdm.auto, which warns in a notebook without ipywidgets
    warnings.simplefilter("ignore")
    from captum.attr import InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

PAPER = Paper(
    title="Full-Gradient Representation for Neural Network Visualization",
    authors="Srinivas, S., Fleuret, F.",
    year=2019,
    arxiv="1905.00780",
    code="https://github.com/idiap/fullgrad-saliency",
)

METHODS = ("fullgrad", "saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "gradcam", "random")
BEATS = ("saliency", "input_x_gradient", "integrated_gradients", "random")  # check 2b: each CI of the gap below 0
CHECK_KS = (3.0, 10.0)  # pre-registered k (%) of check 2
CHECK_ROAR = 50.0  # pre-registered ROAR ratio (%) of check 3
IG_STEPS, SG_SAMPLES, SG_SIGMA = 32, 16, 0.15  # catalog: IG 32 steps, zero baseline; SmoothGrad 16 x N(0, 0.15 range)
REL_TOL = 1e-4


@dataclass(frozen=True)
class Config(StudyConfig):
    """Parameters of P28; the defaults are the smoke scale."""

    image_size: int = param(32, low=8, high=128, doc="digits upsampled to image_size x image_size")
    channels: tuple[int, ...] = param((8, 16, 32, 32), low=1, high=512, doc="VGGNet conv widths (pool between)")
    epochs: int = param(2, low=1, high=200, doc="training epochs of the explained model")
    lr: float = param(3e-3, low=1e-5, high=1.0, doc="Adam learning rate, decayed linearly to 0")
    n_test: int = param(50, low=2, high=450, doc="test images for pixel perturbation (correct ones are used)")
    n_random: int = param(100, low=1, high=10_000, doc="random inputs of the completeness check")
    fractions: tuple[float, ...] = param((1.0, 5.0), low=0.0, high=100.0,
                                         doc="k: % of least salient pixels replaced by the image mean")
    n_boot: int = param(2000, low=100, high=100_000, doc="paired-bootstrap resamples")
    roar_ratios: tuple[float, ...] = param((50.0,), low=0.0, high=100.0, doc="ROAR: % of top pixels removed")
    roar_methods: tuple[str, ...] = param(("fullgrad", "saliency", "random"), choices=METHODS,
                                          doc="maps whose top pixels ROAR removes")
    roar_seeds: int = param(0, low=0, high=20, doc="ROAR retraining seeds (0: no ROAR)")
    roar_epochs: int = param(4, low=1, high=200, doc="epochs of each ROAR retraining")

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) < 2:
            raise ValueError(f"The 'channels' parameter of P28 must hold at least two conv widths. "
                             f"Got {self.channels!r} instead.")
        if self.image_size // 2 ** (len(self.channels) - 1) < 1:
            raise ValueError(f"The 'image_size' parameter of P28 must be at least 2**(len(channels) - 1) = "
                             f"{2 ** (len(self.channels) - 1)}. Got {self.image_size!r} instead.")
        for name in ("fractions", "roar_ratios", "roar_methods"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"The {name!r} parameter of P28 must not repeat values. Got {values!r} instead.")


# The catalog: smoke 50 test images, k in {1, 5} %, no ROAR; cpu 360 test images, k in {0.1, 1, 3, 5, 10} %,
# ROAR at 50 % x (FullGrad, Saliency, random) x 3 seeds x 4 epochs; paper: ROAR at 30/50/70/90 % for every method,
# larger images and a deeper VGG (we keep digits, upsampled to 64x64, as the offline stand-in).
PRESETS = {
    "smoke": Config(),
    "cpu": Config(epochs=6, n_test=360, fractions=(0.1, 1.0, 3.0, 5.0, 10.0), roar_seeds=3),
    "paper": Config(image_size=64, channels=(32, 64, 128, 128, 256), epochs=15, n_test=450,
                    fractions=(0.1, 1.0, 3.0, 5.0, 10.0), roar_ratios=(30.0, 50.0, 70.0, 90.0),
                    roar_methods=METHODS, roar_seeds=3, roar_epochs=10),
}


@dataclass(frozen=True)
class Result:
    """What the claims and figures read (arrays on CPU, numbers as floats)."""

    completeness: dict[str, float]  # "{rel32,rel64,scaled32,min_output}_{random_net,trained_random,trained_test}"
    completeness_no_bn: float  # float32 relative error on the trained net's test images without BatchNorm shifts
    completeness_scatter: dict[str, np.ndarray]  # "output", "total": trained net, random then test inputs
    fractions: tuple[float, ...]  # k in %
    perturbation: dict[str, np.ndarray]  # method -> (n_images, K) fractional output change
    roar: dict[float, dict[str, np.ndarray]]  # ratio (%) -> method -> accuracy drop (points) per seed
    accuracy: float  # test accuracy of the explained model (all test images)
    n_images: int  # correctly classified test images used for pixel perturbation
    examples: dict[str, np.ndarray]  # "image" (k, H, W), method -> (k, H, W) maps
    n_boot: int
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)

    def mean_change(self, method: str, k: float) -> float:
        return float(self.perturbation[method][:, self.fractions.index(k)].mean())

    def gap_ci(self, method: str, other: str, k: float) -> tuple[float, float, float]:
        """Mean of (method - other) per image at k and its paired-bootstrap 95 % CI."""
        j = self.fractions.index(k)
        return paired_bootstrap(self.perturbation[method][:, j], self.perturbation[other][:, j], self.n_boot,
                                np.random.default_rng([self.seed, 28, int(k * 1000)]))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of ``a - b`` and the percentile 95 % CI of that mean over ``n_boot`` resamples of the pairs."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    means = d[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


# --- models ---------------------------------------------------------------------------------------------------------
def _model(cfg: Config, seed: int) -> VGGNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGGNet(channels=cfg.channels, image_size=cfg.image_size)


def _randomise_batchnorm(model: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so BatchNorm shifts matter in completeness."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2.0), (m.weight, 0.5, 1.5),
                                  (m.bias, -0.5, 0.5)):
                    t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=gen))
    return model.eval()


# --- attributions -----------------------------------------------------------------------------------------------------
def saliency_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, methods: tuple[str, ...],
                  seed: int) -> dict[str, torch.Tensor]:
    """Per-pixel maps (N, H, W) of each method: |attribution| summed over channels (Grad-CAM: ReLU, upsampled)."""
    model.eval()
    xg = x.detach().clone().requires_grad_(True)
    out = {}
    for m in methods:
        if m == "fullgrad":
            a = fullgrad(model, x, target=y, internal_batch_size=512)
        elif m == "saliency":
            a = Saliency(model).attribute(xg, target=y, abs=True)
        elif m == "input_x_gradient":
            a = InputXGradient(model).attribute(xg, target=y).abs()
        elif m == "integrated_gradients":
            a = IntegratedGradients(model).attribute(xg, baselines=0.0, target=y, n_steps=IG_STEPS,
                                                     internal_batch_size=1024).abs()
        elif m == "smoothgrad":
            sigma = SG_SIGMA * float(x.max() - x.min())
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(seed)  # NoiseTunnel draws its noise from the global generator
                a = NoiseTunnel(Saliency(model)).attribute(xg, nt_type="smoothgrad", nt_samples=SG_SAMPLES,
                                                           nt_samples_batch_size=SG_SAMPLES, stdevs=sigma, target=y)
        elif m == "gradcam":
            cam = LayerGradCam(model, model.features[-1]).attribute(xg, target=y, relu_attributions=True)
            a = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        elif m == "random":
            gen = torch.Generator().manual_seed(seed)
            a = torch.rand(x.shape[0], 1, *x.shape[-2:], generator=gen).to(x.device)
        else:
            raise ValueError(f"Unknown method {m!r}; valid: {', '.join(METHODS)}.")
        out[m] = a.detach().sum(1)
    return out


# --- (1) completeness -------------------------------------------------------------------------------------------------
def completeness(model: nn.Module, x: torch.Tensor) -> dict[str, float | np.ndarray]:
    """Completeness of FullGrad on ``x`` (target = predicted class), in the model's float32 and in float64.

    Keys: ``rel32`` / ``rel64`` max relative error |Σ parts - output| / |output|; ``scaled32`` the float32 gap
    relative to Σ |parts| (free of cancellation when the output is near 0); ``min_output`` smallest |output|;
    ``no_bn`` the float32 relative error with the BatchNorm shifts left out; ``output`` and ``total`` per input.
    """
    parts = fullgrad_parts(model, x, internal_batch_size=512)
    bn = {n for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    no_bn = parts.total() - sum(b.flatten(1).sum(1) for k, b in parts.biases.items() if k.split("#")[0] in bn)
    denom = parts.output.abs().clamp_min(1e-30)
    gap = (parts.total() - parts.output).abs()
    scale = parts.input.abs().flatten(1).sum(1) + sum(b.abs().flatten(1).sum(1) for b in parts.biases.values())
    twin = copy.deepcopy(model).double()  # the same network in float64: the identity itself, without rounding
    parts64 = fullgrad_parts(twin, x.double(), target=_argmax(model, x),
                             internal_batch_size=512)
    return {"rel32": parts.relative_error().max().item(), "rel64": parts64.relative_error().max().item(),
            "scaled32": (gap / scale).max().item(), "min_output": parts.output.abs().min().item(),
            "no_bn": ((no_bn - parts.output).abs() / denom).max().item(),
            "output": parts.output.cpu().numpy(), "total": parts.total().cpu().numpy()}


def _argmax(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return predict(model, x).argmax(1)


# --- run ------------------------------------------------------------------------------------------------------------
def run(cfg: Config) -> Result:
    """Train the VGG-style net on digits, check completeness, pixel perturbation and (cpu/paper) ROAR."""
    device = resolve_device(cfg.device)
    seeds = [int(s) for s in np.random.default_rng([cfg.seed, 28]).integers(0, 2**31 - 1, size=8)]
    xtr, ytr, xte, yte = (t.to(device) for t in digits_images(cfg.image_size, seed=cfg.seed))

    model = _model(cfg, seeds[0]).to(device)
    fit(model, xtr, ytr, epochs=cfg.epochs, batch_size=64, lr=cfg.lr, schedule="linear", generator=seeds[1])
    model.eval()
    acc = accuracy(model, xte, yte)

    # (1) completeness: untrained net with random BatchNorm statistics, trained net; random inputs, test images
    gen = torch.Generator().manual_seed(seeds[2])
    xr = torch.rand(cfg.n_random, 1, cfg.image_size, cfg.image_size, generator=gen).to(device)
    random_net = _randomise_batchnorm(_model(cfg, seeds[3]), gen).to(device)
    runs = {"random_net": completeness(random_net, xr), "trained_random": completeness(model, xr),
            "trained_test": completeness(model, xte[: cfg.n_test])}
    comp = {f"{key}_{name}": float(c[key]) for name, c in runs.items()
            for key in ("rel32", "rel64", "scaled32", "min_output")}
    no_bn = float(runs["trained_test"]["no_bn"])
    scatter = {k: np.concatenate([runs[n][k] for n in ("trained_random", "trained_test")]) for k in ("output", "total")}

    # (2) pixel perturbation on the correctly classified of the first n_test test images, target = predicted class
    x, y = xte[: cfg.n_test], yte[: cfg.n_test]
    keep = predict(model, x).argmax(1) == y
    x, y = x[keep], y[keep]
    maps = saliency_maps(model, x, y, METHODS, seeds[4])
    fr = tuple(f / 100 for f in cfg.fractions)
    pert = {m: pixel_perturbation(model, x, s, target=y, fractions=fr, generator=seeds[5] + j).cpu().numpy()
            for j, (m, s) in enumerate(maps.items())}  # ties (exact zeros of x * grad) broken at random

    # (3) ROAR: maps of the original model on train and test images, top pixels set to 0 (the background), retrain
    roar: dict[float, dict[str, np.ndarray]] = {}
    if cfg.roar_seeds > 0:
        ytr_hat = predict(model, xtr).argmax(1)  # explain what the model predicts (= the label on ~all train images)
        yte_hat = predict(model, xte).argmax(1)
        tr_maps = saliency_maps(model, xtr, ytr_hat, cfg.roar_methods, seeds[6])
        te_maps = saliency_maps(model, xte, yte_hat, cfg.roar_methods, seeds[6] + 1)
        roar_seeds = [seeds[7] + s for s in range(cfg.roar_seeds)]
        for ratio in cfg.roar_ratios:
            roar[ratio] = {}
            for m in cfg.roar_methods:
                accs = remove_and_retrain(lambda s: _model(cfg, s), (xtr, ytr, tr_maps[m]), (xte, yte, te_maps[m]),
                                          fraction=ratio / 100, fill=0.0, seeds=roar_seeds, generator=seeds[6] + 2,
                                          epochs=cfg.roar_epochs,
                                          batch_size=64, lr=cfg.lr, schedule="linear")
                roar[ratio][m] = 100 * (acc - accs.numpy())

    examples = {"image": x[:4, 0].cpu().numpy(), **{m: s[:4].cpu().numpy() for m, s in maps.items()}}
    result = Result(completeness=comp, completeness_no_bn=no_bn, completeness_scatter=scatter,
                    fractions=cfg.fractions, perturbation=pert, roar=roar, accuracy=acc, n_images=int(keep.sum()),
                    examples=examples, n_boot=cfg.n_boot, seed=cfg.seed)
    metrics = {
        "accuracy": acc,
        "n_images": float(result.n_images),
        **{f"completeness_{k}": v for k, v in comp.items()},
        "completeness_without_bn_shift": no_bn,
        "gradcam_all_zero": (maps["gradcam"].flatten(1).amax(1) <= 0).float().mean().item(),  # ReLU'd to nothing
        **{f"pp_{m}_k{k:g}": result.mean_change(m, k) for m in METHODS for k in cfg.fractions},
        **{f"roar{r:g}_{m}": float(d.mean()) for r, dd in roar.items() for m, d in dd.items()},
    }
    return replace(result, metrics={k.replace(".", "p"): float(v) for k, v in metrics.items()})


def perturbation_table(r: Result):
    """Mean fractional logit change per method (rows) and k (columns), a pandas DataFrame rounded to 4 digits."""
    import pandas as pd

    return pd.DataFrame({f"k = {k:g} %": [r.mean_change(m, k) for m in METHODS] for k in r.fractions},
                        index=list(METHODS)).round(4)


def roar_table(r: Result):
    """Mean (± SD over seeds) accuracy drop in points per ROAR ratio (rows) and method (columns)."""
    import pandas as pd

    rows = {f"{ratio:g} %": {m: f"{d.mean():.1f} ± {d.std():.1f}" for m, d in dd.items()}
            for ratio, dd in r.roar.items()}
    return pd.DataFrame(rows).T


# --- claims -----------------------------------------------------------------------------------------------------------
_SETTINGS = ("random_net", "trained_random", "trained_test")


def check_completeness(r: Result, precision: str = "32") -> Verdict:
    """Max relative error over the three settings, in the model's float32 (as pre-registered) or in float64."""
    errs = {s: r.completeness[f"rel{precision}_{s}"] for s in _SETTINGS}
    note = ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
    extra = (f"; smallest |logit| {min(r.completeness[f'min_output_{s}'] for s in _SETTINGS):.2g}; float32 gap / "
             f"Σ|parts| {max(r.completeness[f'scaled32_{s}'] for s in _SETTINGS):.1e}" if precision == "32" else
             f"; without BatchNorm shifts (float32, test images) {r.completeness_no_bn:.1e}")
    return compare(max(errs.values()), "<=", REL_TOL, note=f"float{precision} max relative error: {note}{extra}")


def check_lowest(r: Result, k: float) -> Verdict:
    """(a) FullGrad has the lowest mean change, or the CI of (FullGrad - lowest other) contains 0: CI low <= 0."""
    if k not in r.fractions:
        return Verdict(float("nan"), "<= 0", UNTESTABLE, note=f"k = {k:g} % is not among this run's fractions")
    others = [m for m in METHODS if m != "fullgrad"]
    best = min(others, key=lambda m: r.mean_change(m, k))
    mean, lo, hi = r.gap_ci("fullgrad", best, k)
    return compare(lo, "<=", 0.0, note=f"lowest other: {best}; FullGrad - {best} = {mean:.4f} "
                                       f"[{lo:.4f}, {hi:.4f}] (upper CI bound > 0 would mean worse)")


def check_beats(r: Result, k: float) -> Verdict:
    """(b) FullGrad below Saliency, InputXGradient, IG and random, each CI of the gap below 0: max CI high < 0."""
    if k not in r.fractions:
        return Verdict(float("nan"), "< 0", UNTESTABLE, note=f"k = {k:g} % is not among this run's fractions")
    gaps = {m: r.gap_ci("fullgrad", m, k) for m in BEATS}
    worst = max(gaps, key=lambda m: gaps[m][2])
    note = "; ".join(f"{m} {g[0]:.4f} [{g[1]:.4f}, {g[2]:.4f}]" for m, g in gaps.items())
    return compare(gaps[worst][2], "<", 0.0, note=f"upper 95 % CI bound of FullGrad - method: {note}")


def check_roar(r: Result, other: str, thr: float) -> Verdict:
    """FullGrad's ROAR drop at 50 % minus ``other``'s, in points (mean over retraining seeds)."""
    d = r.roar.get(CHECK_ROAR, {})
    if "fullgrad" not in d or other not in d:
        return Verdict(float("nan"), f">= {thr:g}", UNTESTABLE,
                       note=f"no ROAR run at {CHECK_ROAR:g} % for FullGrad and {other} at this scale")
    n = len(d["fullgrad"])
    gap = float(d["fullgrad"].mean() - d[other].mean())
    note = f"drops: FullGrad {d['fullgrad'].mean():.1f}, {other} {d[other].mean():.1f} points ({n} seeds)"
    if n < 3:
        note += "; fewer than the pre-registered 3 seeds"
    return compare(gap, ">=", thr, note=note)


CLAIMS = (
    Claim("c1_completeness", "The input-gradient and bias-gradient parts (BatchNorm shifts included) sum to the "
          "logit, relative error at most 1e-4, on random and on real inputs (float32, as pre-registered)",
          check_completeness),
    Claim("c1b_completeness_float64", "Added check: the same identity evaluated in float64, which separates the "
          "decomposition from float32 rounding when a logit is near 0", lambda r: check_completeness(r, "64")),
    Claim("c2_lowest_k3", "At k = 3 %, FullGrad's mean fractional output change is the lowest, or statistically "
          "tied with the lowest", lambda r: check_lowest(r, 3.0)),
    Claim("c2_beats_k3", "At k = 3 %, FullGrad changes the output less than Saliency, InputXGradient, IG and "
          "random (each 95 % CI of the gap below 0)", lambda r: check_beats(r, 3.0)),
    Claim("c2_lowest_k10", "At k = 10 %, FullGrad's mean fractional output change is the lowest, or tied with the "
          "lowest", lambda r: check_lowest(r, 10.0)),
    Claim("c2_beats_k10", "At k = 10 %, FullGrad changes the output less than Saliency, InputXGradient, IG and "
          "random (each 95 % CI of the gap below 0)", lambda r: check_beats(r, 10.0)),
    Claim("c3_roar_vs_saliency", "ROAR at 50 %: FullGrad's accuracy drop exceeds plain Saliency's by at least 3 "
          "points", lambda r: check_roar(r, "saliency", 3.0)),
    Claim("c3_roar_vs_random", "ROAR at 50 %: FullGrad's accuracy drop exceeds a random map's by at least 5 points",
          lambda r: check_roar(r, "random", 5.0)),
)
