"""DP-SGD step cost: one optimizer step of each private route, in units of one non-private step (issue 6).

Routes, on the same batch, timed interleaved (one step of each per round, medians over rounds, after warm-up):

- ``non-private``: a ReLU MLP, cross-entropy, SGD step (the unit);
- ``opacus hooks``: opacus's GradSampleModule + DPOptimizer (per-example gradients by hooks, clipping, noise);
- ``opacus ghost``: opacus's ghost clipping (``grad_sample_mode="ghost"``: per-example norms without per-example
  gradients, a second backward pass);
- ``torch.func DP-SGD``: :func:`nnsens.measures.privacy.per_sample_gradients` (vmap over grad), clip, noise;
- ``Lipschitz non-private``: the 1-Lipschitz MLP of P10 with its projection, no noise (the Lipschitz unit);
- ``clipless``: the same plus the calibrated noise (:class:`nnsens.methods.lipschitz.ClipLessStep`).

Goals (issue 6): DP-SGD ≤ 2.5× a non-private step; the Lipschitz route ≤ 1.2×. Times are process CPU seconds (the
machine this was written on is shared, so wall-clock is noisier). Run: ``OMP_NUM_THREADS=1 python -m benchmarks
bench_privacy`` (under 2 minutes).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

from nnsens.measures.privacy import per_sample_gradients
from nnsens.methods.lipschitz import ClipLessStep, LipschitzMLP, gradient_norm_bounds, project_inputs
from nnsens.models import MLP


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, x, y) -> Callable[[], None]:
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _opacus_step(sizes, x, y, mode: str) -> Callable[[], None]:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = MLP(sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=x.shape[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        out = engine.make_private(module=model, optimizer=opt, data_loader=loader, noise_multiplier=1.0,
                                  max_grad_norm=1.0, grad_sample_mode=mode, criterion=nn.CrossEntropyLoss(),
                                  poisson_sampling=False)
    model, opt = out[0], out[1]
    crit = out[2] if mode == "ghost" else nn.CrossEntropyLoss()

    def step() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.zero_grad(set_to_none=True)
            crit(model(x), y).backward()
            opt.step()
    return step


def _func_dpsgd_step(sizes, x, y, gen: torch.Generator) -> Callable[[], None]:
    torch.manual_seed(0)
    model = MLP(sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    clip, sigma, b = 1.0, 1.0, x.shape[0]

    def step() -> None:
        g = per_sample_gradients(model, x, target=y)  # name -> (B, *shape)
        norms = torch.stack([v.flatten(1).norm(dim=1) for v in g.values()]).square().sum(0).sqrt()  # (B,)
        scale = (clip / norms.clamp_min(1e-12)).clamp(max=1.0)  # (B,)
        for name, p in model.named_parameters():
            summed = torch.einsum("b,b...->...", scale, g[name])
            p.grad = (summed + sigma * clip * torch.randn(p.shape, generator=gen)) / b
        opt.step()
    return step


def _lipschitz_step(sizes, x, y, gen: torch.Generator, noise: bool) -> Callable[[], None]:
    model = LipschitzMLP(sizes, generator=torch.Generator().manual_seed(0))
    bounds = gradient_norm_bounds(model, input_bound=1.0, tau=0.0625)
    clipless = ClipLessStep(bounds, noise_multiplier=1.0, batch_size=x.shape[0], tau=0.0625, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1 / max(bounds.values()))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        clipless.loss(model(x), y).backward()
        if noise:
            clipless.before_step(model, 0)
        opt.step()
        clipless.after_step(model, 0)
    return step


def bench(sizes: tuple[int, ...], batch: int, rounds: int) -> dict[str, float]:
    """Median process-CPU seconds of one step of each route."""
    g = torch.Generator().manual_seed(0)
    x = project_inputs(torch.randn(batch, sizes[0], generator=g), 1.0)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
    torch.manual_seed(0)
    plain = MLP(sizes)
    routes: dict[str, Callable[[], None]] = {
        "non-private": _plain_step(plain, torch.optim.SGD(plain.parameters(), lr=0.1), x, y),
        "opacus hooks": _opacus_step(sizes, x, y, "hooks"),
        "opacus ghost": _opacus_step(sizes, x, y, "ghost"),
        "torch.func DP-SGD": _func_dpsgd_step(sizes, x, y, torch.Generator().manual_seed(1)),
        "Lipschitz non-private": _lipschitz_step(sizes, x, y, torch.Generator().manual_seed(2), noise=False),
        "clipless": _lipschitz_step(sizes, x, y, torch.Generator().manual_seed(2), noise=True),
    }
    for step in routes.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in routes}
    for _ in range(rounds):
        for name, step in routes.items():  # interleaved
            t0 = time.process_time()
            step()
            times[name].append(time.process_time() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    cases = [((64, 64, 64, 10), 128), ((64, 256, 256, 10), 256)]
    names = ("opacus hooks", "opacus ghost", "torch.func DP-SGD", "Lipschitz non-private", "clipless")
    print(f"{'model':18} {'B':>4} {'step ms':>8} " + " ".join(f"{n:>13.13}" for n in names)
          + "  clipless/Lip   (units of 1 non-private step)")
    for sizes, batch in cases:
        t = bench(sizes, batch, rounds=30)
        unit = t["non-private"]
        arch = "-".join(map(str, sizes))
        print(f"{arch:18} {batch:>4} {unit * 1e3:>8.3f} " + " ".join(f"{t[n] / unit:>13.2f}" for n in names)
              + f"  {t['clipless'] / t['Lipschitz non-private']:>12.2f}")
    print("Medians of process CPU time over 30 interleaved rounds. Goals: DP-SGD <= 2.5x, Lipschitz route <= 1.2x.")


if __name__ == "__main__":
    main()
