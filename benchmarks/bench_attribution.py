"""Perturbation and SmoothGrad attributions: our chunked loops against Captum and against the "floor".

1. Chunk sizes. For SmallCNN (P46's / P07's digits net, conv 8-16 + fc 64) at 8x8, 28x28 and 32x32, the cost per
   perturbed copy of one forward (+ softmax) of B copies, B = 32 ... 4096; the best B is what
   ``perturbation.default_batch`` should pick. The same for one forward + backward (SmoothGrad's unit).
2. Attribution at 32x32 on 4 images, variants interleaved (one call of each per round), median over rounds:
   - ``occlusion_cells`` (8x8 cells, 65 forwards per image; also 16 images at 8x8 with 4x4 cells) against
     ``captum.attr.Occlusion`` on the same softmax probability with its default ``perturbations_per_eval=1``
     and with the best of a small ppe sweep ("tuned");
   - ``rise`` (500 masks per image);
   - ``smoothgrad`` (16 samples) against ``NoiseTunnel(Saliency(abs=False))``, whose default evaluates all samples
     in one pass.
   The floor of a method = its perturbed copies x the per-copy cost at the best chunk size (part 1).

Goals (issue 4): occlusion >= 4x Captum's default, >= 1.3x tuned Captum, within 1.15x of the floor.
Run: ``OMP_NUM_THREADS=1 python -m benchmarks bench_attribution`` (about a minute on one core).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch

from nnsens.measures.gradients import smoothgrad
from nnsens.measures.perturbation import SoftmaxProbability, default_batch, occlusion_cells, rise
from nnsens.models import SmallCNN

with warnings.catch_warnings():  # captum imports tqdm.auto
    warnings.simplefilter("ignore")
    from captum.attr import NoiseTunnel, Occlusion, Saliency

CHUNKS = {8: (64, 256, 1024, 2048, 4096), 28: (32, 64, 128, 256, 512, 1024), 32: (32, 64, 128, 256, 512, 1024)}
N_IMAGES, GRID, RISE_MASKS, SG_SAMPLES, ROUNDS = 4, 8, 500, 16, 5


def _model(size: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SmallCNN(channels=(8, 16), pool="flatten", image_size=size).eval()


def _seconds(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(variants: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each variant, one call of each per round (after one warm-up call each)."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            times[k].append(_seconds(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def per_copy_costs(size: int, *, backward: bool = False, copies: int = 1024, rounds: int = 3) -> dict[int, float]:
    """Seconds per copy of forward (+ softmax) or forward + input-gradient, at each chunk size."""
    model = _model(size)
    x = torch.rand(max(CHUNKS[size]), 1, size, size, generator=torch.Generator().manual_seed(1))

    def run(b: int) -> None:
        for _ in range(0, max(copies, b), b):
            xb = x[:b]
            if backward:
                xb = xb.clone().requires_grad_(True)
                torch.autograd.grad(model(xb)[:, 0].sum(), xb)
            else:
                with torch.no_grad():
                    torch.softmax(model(xb).double(), 1)

    med = interleaved({b: (lambda b=b: run(b)) for b in CHUNKS[size]}, rounds)
    return {b: med[b] / max(copies, b) for b in CHUNKS[size]}


def main() -> None:
    torch.set_num_threads(1)
    print("-- cost per copy (microseconds) vs copies per pass; * = best, d = default_batch's choice")
    best: dict[tuple[int, bool], tuple[int, float]] = {}
    for size, backward in ((8, False), (28, False), (32, False), (32, True)):
        costs = per_copy_costs(size, backward=backward, copies=4096 if size == 8 else 1024)
        b_best = min(costs, key=costs.get)
        best[size, backward] = (b_best, costs[b_best])
        d = default_batch(torch.zeros(1, 1, size, size))
        row = "  ".join(f"{b}:{1e6 * c:.0f}{'*' if b == b_best else ''}{'d' if b == d else ''}"
                        for b, c in costs.items())
        print(f"{'fwd+bwd' if backward else 'forward'} {size:>2}x{size:<2} {row}")

    for size, n, grid in ((32, N_IMAGES, GRID), (8, 4 * N_IMAGES, 4)):
        attribution_table(size, n, grid, best, with_rise=size == 32)


def attribution_table(size: int, n: int, grid: int, best: dict, *, with_rise: bool) -> None:
    """Time the attribution variants on n random images of side ``size`` and print times, floors and ratios."""
    model, g = _model(size), torch.Generator().manual_seed(2)
    x = torch.rand(n, 1, size, size, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    prob = SoftmaxProbability(model)
    win = (1, size // grid, size // grid)

    def captum_occ(ppe: int) -> Callable[[], object]:
        def f() -> object:
            with torch.no_grad():
                return Occlusion(prob).attribute(x, sliding_window_shapes=win, strides=win, baselines=0.0, target=y,
                                                 perturbations_per_eval=ppe)
        return f

    cells = grid**2
    ppes = tuple(p for p in (4, 8, 16, 32, 64) if p <= cells)
    variants: dict[str, Callable[[], object]] = {
        "occlusion_cells": lambda: occlusion_cells(model, x, target=y, grid_size=grid),
        "captum Occlusion ppe=1": captum_occ(1),
        **{f"captum Occlusion ppe={p}": captum_occ(p) for p in ppes},
    }
    if with_rise:
        variants.update({
            "rise": lambda: rise(model, x, target=y, n_masks=RISE_MASKS, generator=0),
            "smoothgrad": lambda: smoothgrad(model, x, target=y, n_samples=SG_SAMPLES, stdev=0.15, generator=0),
            "captum NoiseTunnel": lambda: NoiseTunnel(Saliency(model)).attribute(
                x, nt_type="smoothgrad", nt_samples=SG_SAMPLES, stdevs=0.15, target=y, abs=False),
        })
    t = interleaved(variants, rounds=ROUNDS)
    tuned = min(ppes, key=lambda p: t[f"captum Occlusion ppe={p}"])
    t_tuned = t[f"captum Occlusion ppe={tuned}"]
    fwd = best[size, False][1]
    floors = {"occlusion_cells": n * (cells + 1) * fwd, "rise": n * RISE_MASKS * fwd}
    if (size, True) in best:
        floors["smoothgrad"] = n * SG_SAMPLES * best[size, True][1]
    print(f"-- {n} images {size}x{size}, {grid}x{grid} cells, SmallCNN(8, 16), median of {ROUNDS} interleaved rounds")
    print(f"{'variant':<26}{'ms':>9}{'floor ms':>10}{'/ floor':>9}")
    for k, v in t.items():
        fl = floors.get(k)
        print(f"{k:<26}{1e3 * v:>9.1f}" + (f"{1e3 * fl:>10.1f}{v / fl:>9.2f}" if fl else ""))
    occ = t["occlusion_cells"]
    print(f"-- ratios at {size}x{size} (goal: >= 4, >= 1.3, <= 1.15)")
    print(f"Captum Occlusion default / occlusion_cells = {t['captum Occlusion ppe=1'] / occ:.2f}")
    print(f"Captum Occlusion tuned (ppe={tuned}) / occlusion_cells = {t_tuned / occ:.2f}")
    print(f"occlusion_cells / floor = {occ / floors['occlusion_cells']:.2f}")
    if with_rise:
        print(f"rise / floor = {t['rise'] / floors['rise']:.2f}")
        print(f"Captum NoiseTunnel / smoothgrad = {t['captum NoiseTunnel'] / t['smoothgrad']:.2f}; "
              f"smoothgrad / floor = {t['smoothgrad'] / floors['smoothgrad']:.2f}")


if __name__ == "__main__":
    main()
