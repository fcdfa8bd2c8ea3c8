"""Fisher diagonal: cost in units of one full-batch loss gradient, against a per-sample loop and torch.func vmap.

For each model and batch, the variants are timed interleaved (one call of each per round), and the median over
rounds is divided by the median time of one ``torch.autograd.grad`` of the mean cross-entropy over the same batch
with respect to all parameters. Goal (issue 5): ``fisher_diagonal(kind="empirical")`` ≤ 2 gradients.

- ``fisher_diagonal``: our outer-product form for Linear layers ((g²)ᵀ(a²) from hooks and one backward pass);
- ``fisher_diagonal true``: the same summed exactly over the C classes (C backward passes, vmapped);
- ``torch.func vmap``: ``fisher_diagonal(method="per_sample")``, vmap over grad of the per-sample NLL;
- ``per-sample loop``: N separate backward passes, each squared and accumulated (the naive reference).

Run: ``OMP_NUM_THREADS=1 python -m benchmarks bench_fisher``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from nnsens.measures import fisher_diagonal
from nnsens.models import MLP


def _loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    params = list(model.parameters())
    acc = [torch.zeros_like(p) for p in params]
    for i in range(x.shape[0]):
        loss = nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        for a, g in zip(acc, torch.autograd.grad(loss, params)):
            a += g.square()
    return [a / x.shape[0] for a in acc]


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(sizes: tuple[int, ...], n: int, rounds: int, loop_rounds: int) -> dict[str, float]:
    """Median seconds of each variant on an MLP with ``sizes`` and a batch of ``n`` random inputs."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MLP(sizes).eval()
    x = torch.randn(n, sizes[0], generator=g)
    y = torch.randint(0, sizes[-1], (n,), generator=g)
    params = list(model.parameters())

    def gradient():
        return torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)

    variants: dict[str, Callable[[], object]] = {
        "gradient": gradient,
        "fisher_diagonal": lambda: fisher_diagonal(model, x, target=y),
        "fisher_diagonal true": lambda: fisher_diagonal(model, x, target=y, kind="true"),
        "torch.func vmap": lambda: fisher_diagonal(model, x, target=y, method="per_sample"),
        "per-sample loop": lambda: _loop(model, x, y),
    }
    ref = fisher_diagonal(model, x, target=y, method="per_sample")
    got = fisher_diagonal(model, x, target=y)
    loop = dict(zip(ref, _loop(model, x, y)))
    for k in ref:  # the three routes agree before anything is timed
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(loop[k], ref[k], rtol=1e-4, atol=1e-8)
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds):
        for name, fn in variants.items():  # interleaved
            if name == "per-sample loop" and r >= loop_rounds:
                continue
            times[name].append(_time(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    cases = [((40, 256, 256, 10), 512), ((40, 256, 256, 10), 2048), ((64, 512, 512, 512, 10), 512)]
    print(f"{'model':24} {'N':>5} {'grad ms':>8} {'fisher':>7} {'true':>7} {'vmap':>7} {'loop':>7}"
          "   (units of 1 gradient)")
    for sizes, n in cases:
        t = bench(sizes, n, rounds=15, loop_rounds=3)
        unit = t["gradient"]
        arch = "-".join(map(str, sizes))
        print(f"{arch:24} {n:>5} {unit * 1e3:>8.2f} {t['fisher_diagonal'] / unit:>7.2f} "
              f"{t['fisher_diagonal true'] / unit:>7.2f} {t['torch.func vmap'] / unit:>7.2f} "
              f"{t['per-sample loop'] / unit:>7.1f}")
    print("fisher = fisher_diagonal(kind='empirical') (goal <= 2); true = kind='true' (C backward passes); "
          "vmap = torch.func per-sample gradients; loop = N backward passes. Medians over interleaved rounds.")


if __name__ == "__main__":
    main()
