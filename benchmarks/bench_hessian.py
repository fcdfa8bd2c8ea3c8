"""Hessian estimators against PyHessian (PyPI ``pyhessian==0.1``) on a trained network, in one run.

The network is SmallCNN (conv16-conv32-fc64-fc10) trained on scikit-learn's digits with ``training.fit``; the
Hessian is that of the mean cross-entropy on 256 training images (its spectrum has a few dominant eigenvalues, about
one per class, over a large flat bulk). Every variant builds its own gradient graph from scratch inside its timing;
variants are interleaved within each repeat and times are medians over repeats. One thread.

(a) Trace. Reference: PyHessian's ``hessian.trace`` (Hutchinson, one Rademacher probe per HVP) with 100 probes
    (``tol=0`` so it never stops early); its standard error SE_ref = sd/√100. Ours: ``hessian_trace`` with Hutch++
    and ``rtol = SE_ref / |mean_ref|`` (stops on its own standard error), i.e. the time to reach the same error.
    Goal: PyHessian time / ours ≥ 3. Also our plain Hutchinson at 100 probes against the floor of 100 HVPs
    (one gradient graph + 100 bare HVP calls on pre-drawn probes): goal ≤ 1.1.
(b) Top eigenvalue. Reference value: ARPACK with tol 1e-10 and a 40-vector basis. PyHessian's power iteration
    (``hessian.eigenvalues``) and our ``hessian_top_eigenvalues`` (default: plain Lanczos with full
    reorthogonalisation and a residual stop; and ``solver="arpack"``, SciPy's eigsh) are each run at tolerances
    1e-2, 1e-3, ... until the relative error is ≤ 1e-4; we report the HVPs and time of that first run (which
    includes each method's stopping rule). Also the oracle count without any stopping rule: the fewest fixed
    iterations (power iteration) or Lanczos steps whose value is within 1e-4. Goal: our HVPs / PyHessian's ≤ 0.5.

PyHessian writes ``.grad`` (``loss.backward(create_graph=True)``) and draws from torch's global generator; the
benchmark seeds that generator before each of its calls (the library code of nnsens never does).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np
import torch

N_HESS = 256
REPEATS = 5
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)


def _trained_net():
    from nnsens.data import digits
    from nnsens.models import SmallCNN
    from nnsens.training import accuracy, fit

    xtr, ytr, xte, yte = digits(seed=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = SmallCNN(pool="flatten", image_size=8)
    fit(net, xtr, ytr, epochs=30, batch_size=64, lr=2e-3, generator=0)
    idx = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(1))[:N_HESS]
    return net, xtr[idx], ytr[idx], accuracy(net, xte, yte)


class _Counter:
    """Counts PyHessian's HVP calls by wrapping its module-level ``hessian_vector_product``."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401  (the package's __init__ shadows the submodule name with the class)

        ph = sys.modules["pyhessian.hessian"]
        self.ph, self.orig, self.n = ph, ph.hessian_vector_product, 0

        def counted(*a, **k):
            self.n += 1
            return self.orig(*a, **k)

        ph.hessian_vector_product = counted


def _pyhessian(net, x, y):
    from pyhessian import hessian

    net.zero_grad(set_to_none=True)  # PyHessian reads and keeps .grad (create_graph=True): start from none
    return hessian(net, torch.nn.functional.cross_entropy, data=(x, y), cuda=False)


def _timed(f):
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def _floor(net, x, y, n: int, seed: int) -> float:
    """One gradient graph plus n bare HVPs on probes drawn beforehand: the least any n-probe estimator can cost."""
    from nnsens.measures.hessian import make_hvp

    g = torch.Generator().manual_seed(seed)
    params = [p for p in net.parameters()]
    probes = [[(torch.randint(0, 2, p.shape, generator=g) * 2 - 1).to(p) for p in params] for _ in range(n)]
    t0 = time.perf_counter()
    hvp = make_hvp(net, x, target=y)
    for v in probes:
        hvp(v)
    return time.perf_counter() - t0


def _trace_rows(net, x, y):
    from nnsens.measures.hessian import hessian_trace

    rows: dict[str, list] = {k: [] for k in ("ph", "pp", "pp20", "hutch", "floor")}
    for r in range(REPEATS):
        torch.manual_seed(r)
        vals, t_ph = _timed(lambda: _pyhessian(net, x, y).trace(maxIter=100, tol=0.0))
        vals = np.asarray(vals)
        mean_ref, se_ref = float(vals.mean()), float(vals.std(ddof=1) / np.sqrt(len(vals)))
        rows["ph"].append((t_ph, mean_ref, se_ref, len(vals)))
        rtol = se_ref / abs(mean_ref)
        est, t = _timed(lambda r=r, rtol=rtol: hessian_trace(net, x, target=y, n_samples=3000, rtol=rtol,
                                                             generator=r))
        rows["pp"].append((t, est.mean, est.std, est.n_samples))
        est, t = _timed(lambda r=r, rtol=rtol: hessian_trace(net, x, target=y, n_samples=3000, rtol=rtol,
                                                             sketch_size=20, generator=r))
        rows["pp20"].append((t, est.mean, est.std, est.n_samples))
        est, t = _timed(lambda r=r: hessian_trace(net, x, target=y, n_samples=100, method="hutchinson", generator=r))
        rows["hutch"].append((t, est.mean, est.std, est.n_samples))
        rows["floor"].append((_floor(net, x, y, 100, r), float("nan"), float("nan"), 100))
    return {k: tuple(statistics.median(c) for c in zip(*v)) for k, v in rows.items()}


def _first_within(run, truth: float, target: float = 1e-4):
    """Run at decreasing tolerances; return (tol, value, HVPs, seconds) of the first with relative error ≤ target."""
    for tol in TOLS:
        (val, n), t = _timed(lambda tol=tol: run(tol))
        if abs(val - truth) <= target * abs(truth):
            return tol, val, n, t
    return float("nan"), val, n, t


def _min_steps(run, truth: float, target: float = 1e-4, cap: int = 200) -> int:
    """Oracle count: the fewest HVPs (fixed iteration counts 1, 2, ...) at which ``run(t)`` is within target."""
    for t in range(1, cap + 1):
        if abs(run(t) - truth) <= target * abs(truth):
            return t
    return cap


def _eig_rows(net, x, y):
    from nnsens.measures.spectrum import hessian_top_eigenvalues

    truth = hessian_top_eigenvalues(net, x, target=y, k=1, tol=1e-10, solver="arpack", ncv=40,
                                    generator=123).values[0]
    counter = _Counter()

    def ph(tol, seed):
        torch.manual_seed(seed)
        h = _pyhessian(net, x, y)
        counter.n = 0
        eig, _ = h.eigenvalues(maxIter=10_000, tol=tol, top_n=1)
        return eig[0], counter.n

    def ours(tol, seed, solver):
        e = hessian_top_eigenvalues(net, x, target=y, k=1, tol=tol, solver=solver, generator=seed)
        return e.values[0], e.n_hvp

    def ph_fixed(steps, seed):  # tol = 0 never stops early: exactly `steps` HVPs
        torch.manual_seed(seed)
        return _pyhessian(net, x, y).eigenvalues(maxIter=steps, tol=0.0, top_n=1)[0][0]

    def ours_fixed(steps, seed):  # a tolerance no residual meets: exactly `steps` Lanczos steps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return hessian_top_eigenvalues(net, x, target=y, k=1, tol=1e-300, max_iter=steps, generator=seed).values[0]

    rows: dict[str, list] = {"ph": [], "lanczos": [], "arpack": []}
    oracle: dict[str, list] = {"ph": [], "lanczos": []}
    try:
        for r in range(REPEATS):
            rows["ph"].append(_first_within(lambda t, r=r: ph(t, r), truth))
            for solver in ("lanczos", "arpack"):
                rows[solver].append(_first_within(lambda t, r=r, s=solver: ours(t, r, s), truth))
            oracle["ph"].append(_min_steps(lambda t, r=r: ph_fixed(t, r), truth))
            oracle["lanczos"].append(_min_steps(lambda t, r=r: ours_fixed(t, r), truth))
    finally:
        counter.ph.hessian_vector_product = counter.orig
    med = {k: tuple(statistics.median(c) for c in zip(*v)) for k, v in rows.items()}
    return truth, med, {k: statistics.median(v) for k, v in oracle.items()}


def main() -> None:
    from importlib.metadata import version

    import pyhessian  # noqa: F401  (fail early if the reference is missing)

    torch.set_num_threads(1)
    net, x, y, acc = _trained_net()
    n_params = sum(p.numel() for p in net.parameters())
    print(f"SmallCNN on digits: {n_params} parameters, test accuracy {acc:.3f}; Hessian on {N_HESS} training "
          f"images; pyhessian {version('pyhessian')}, torch {torch.__version__}; medians of {REPEATS} repeats, "
          "1 thread")

    tr = _trace_rows(net, x, y)
    print("\n(a) trace")
    print(f"{'variant':34} {'time s':>8} {'trace':>10} {'SE':>8} {'HVPs':>6} {'ratio':>7}")
    names = {"ph": "PyHessian Hutchinson, 100 probes", "pp": "ours Hutch++, rtol = SE_ref/|mean|",
             "pp20": "  same, sketch_size=20",
             "hutch": "ours Hutchinson, 100 probes", "floor": "floor: graph + 100 bare HVPs"}
    ratio = {"ph": 1.0, "pp": tr["ph"][0] / tr["pp"][0], "pp20": tr["ph"][0] / tr["pp20"][0],
             "hutch": tr["hutch"][0] / tr["floor"][0],
             "floor": 1.0}
    for k, name in names.items():
        t, m, se, n = tr[k]
        print(f"{name:34} {t:8.3f} {m:10.3f} {se:8.3f} {n:6.0f} {ratio[k]:7.2f}")
    print(f"speed-up of Hutch++ at PyHessian's 100-probe SE (PyHessian time / ours): {ratio['pp']:.2f} "
          f"(default sketch, 10), {ratio['pp20']:.2f} (sketch 20)  (goal >= 3)")
    print(f"our Hutchinson / floor of 100 HVPs: {ratio['hutch']:.3f}  (goal <= 1.1); "
          f"PyHessian / floor: {tr['ph'][0] / tr['floor'][0]:.3f}")

    truth, eig, oracle = _eig_rows(net, x, y)
    print(f"\n(b) top eigenvalue (reference {truth:.6f}, target relative error <= 1e-4)")
    print(f"{'variant':34} {'tol':>8} {'value':>12} {'HVPs':>6} {'time s':>8}")
    for k, name in (("ph", "PyHessian power iteration"), ("lanczos", "ours Lanczos (default)"),
                    ("arpack", "ours ARPACK eigsh (ncv 20)")):
        tol, val, n, t = eig[k]
        print(f"{name:34} {tol:8.0e} {val:12.6f} {n:6.0f} {t:8.3f}")
    for k in ("lanczos", "arpack"):
        print(f"{k}: HVPs ours / PyHessian: {eig[k][2] / eig['ph'][2]:.2f}  (goal <= 0.5); "
              f"time ours / PyHessian: {eig[k][3] / eig['ph'][3]:.2f}")
    print(f"oracle (fewest fixed iterations within 1e-4, no stopping rule): power iteration {oracle['ph']:.0f} HVPs, "
          f"Lanczos {oracle['lanczos']:.0f} HVPs, ratio {oracle['lanczos'] / oracle['ph']:.2f}")


if __name__ == "__main__":
    main()
