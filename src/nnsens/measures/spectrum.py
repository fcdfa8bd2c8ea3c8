"""The spectrum of the loss Hessian, from the one Hessian-vector product of :mod:`nnsens.measures.hessian`.

- :func:`hessian_top_eigenvalues`: the k largest eigenvalues by Lanczos (our own, fully reorthogonalised, stopped
  on the Ritz residuals; or ARPACK's implicitly restarted Lanczos through ``scipy.sparse.linalg.eigsh``), with the
  HVPs used; :func:`hessian_top_eigenvalue` / :func:`layer_top_eigenvalues`: power iteration (PyHessian,
  arXiv 2006.07040; HAWQ-V1, arXiv 1905.03696).
- :func:`hessian_spectral_density`: stochastic Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019,
  arXiv 1901.10159): Gauss-quadrature nodes and weights per probe and a Gaussian-smoothed density.

No function has side effects: the model is put in eval mode and restored, gradients are taken with
``torch.autograd.grad`` (``.grad`` is never written), and randomness comes only from ``generator``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import nn

from nnsens.measures._checks import as_generator as _as_generator
from nnsens.measures._checks import check_float as _check_float
from nnsens.measures._checks import check_int as _check_int
from nnsens.measures._checks import select_params as _select_params
from nnsens.measures.hessian import (
    HessianVectorProduct,
    LossFn,
    _dot,
    _rademacher,
    make_hvp,
)


# ------------------------------------------------------------------------------------------ top eigenvalue
def _power_iteration(hvp: HessianVectorProduct, max_iter: int, tol: float, gen: torch.Generator) -> float:
    v = [torch.randn(p.shape, generator=gen, device=gen.device).to(p) for p in hvp.params]
    norm = torch.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    eig: float | None = None
    for _ in range(max_iter):
        hv = hvp(v)
        new = float(_dot(v, hv))  # Rayleigh quotient vᵀHv with ‖v‖ = 1
        norm = torch.sqrt(_dot(hv, hv))
        if float(norm) == 0.0:  # H v = 0: v is in the null space; for a zero Hessian the answer is exactly 0
            return 0.0 if eig is None else eig
        v = [x / norm for x in hv]
        if eig is not None and abs(new - eig) <= tol * (abs(eig) + 1e-12):
            return new
        eig = new
    return float(eig)  # type: ignore[arg-type]


def hessian_top_eigenvalue(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> float:
    """Dominant Hessian eigenvalue by power iteration (HAWQ-V1's sensitivity), with relative-change stopping.

    Power iteration converges to the eigenvalue of largest magnitude: λ_max whenever the positive curvature
    dominates, which is the case near a trained minimum. It stops when the Rayleigh quotient changes by less than
    ``tol`` relative to its previous value, or after ``max_iter`` HVPs. ``params`` restricts H to a block.
    """
    fn = "hessian_top_eigenvalue"
    max_iter = _check_int(max_iter, "max_iter", fn, 1)
    tol = _check_float(tol, "tol", fn, 0.0)
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    return _power_iteration(hvp, max_iter, tol, gen)


def layer_top_eigenvalues(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    params: Sequence[str] | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> dict[str, float]:
    """Top eigenvalue of each parameter tensor's own Hessian block H_ii (the HVP restricted to that tensor)."""
    fn = "layer_top_eigenvalues"
    max_iter = _check_int(max_iter, "max_iter", fn, 1)
    tol = _check_float(tol, "tol", fn, 0.0)
    gen = _as_generator(generator, fn)
    names = [n for n, _ in _select_params(model, params, fn)]
    out = {}
    for name in names:
        hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=[name],
                       internal_batch_size=internal_batch_size, fn=fn)
        out[name] = _power_iteration(hvp, max_iter, tol, gen)
    return out


# ------------------------------------------------------------------------------------ Lanczos: top-k and density
@dataclass(frozen=True)
class Eigenvalues:
    """The top eigenvalues of H, largest first, and the Hessian-vector products spent finding them."""

    values: tuple[float, ...]
    n_hvp: int


def hessian_top_eigenvalues(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    k: int = 1,
    loss_fn: LossFn | None = None,
    tol: float = 1e-6,
    max_iter: int = 300,
    solver: str = "lanczos",
    ncv: int | None = None,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> Eigenvalues:
    """The ``k`` largest (algebraic) eigenvalues of H by Lanczos, one HVP per step.

    Unlike power iteration, whose error shrinks like (λ₂/λ₁)^(2t), Lanczos extracts the extreme eigenvalues from
    the whole Krylov space span{v, Hv, ..., H^(t−1) v} and needs far fewer HVPs. The starting vector is drawn from
    ``generator`` (Gaussian), so results are reproducible.

    - ``solver="lanczos"`` (default): plain Lanczos in float64 with full reorthogonalisation, stopped as soon as
      every wanted Ritz pair (θ_i, y_i) has residual ‖H y_i − θ_i y_i‖ = β_t |s_ti| ≤ tol·|θ_i|, which bounds the
      eigenvalue error by tol·|θ_i| (the actual error is usually near residual²/gap, far smaller). Keeps the
      basis: memory n × steps.
    - ``solver="arpack"``: implicitly restarted Lanczos, ``scipy.sparse.linalg.eigsh`` on a ``LinearOperator``
      whose matvec is one HVP (float64 on the SciPy side), with ARPACK's own tolerance; bounded memory, but each
      restart cycle costs ``ncv`` HVPs.

    Parameters
    ----------
    k : int
        Number of eigenvalues, in [1, n − 1] (n = number of selected parameters).
    tol : float
        Relative tolerance (see above; for ARPACK, its ``tol``).
    max_iter : int
        Lanczos: the most steps (HVPs). ARPACK: the most restarts (``maxiter``). If not all ``k`` values converge, a
        RuntimeWarning is raised and the current Ritz values (ARPACK: the converged ones) are returned.
    solver : {"lanczos", "arpack"}
    ncv : int, optional
        ARPACK's basis size (default min(n, max(2k + 1, 20))); ARPACK only.

    Returns
    -------
    Eigenvalues
        ``values`` (descending) and ``n_hvp``.
    """
    fn = "hessian_top_eigenvalues"
    tol = _check_float(tol, "tol", fn, 0.0)
    max_iter = _check_int(max_iter, "max_iter", fn, 1)
    if solver not in ("lanczos", "arpack"):
        raise ValueError(f"The 'solver' parameter of {fn} must be one of 'lanczos', 'arpack'. Got {solver!r} instead.")
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    n = hvp.numel
    k = _check_int(k, "k", fn, 1, n - 1)
    if ncv is not None:
        if solver != "arpack":
            raise ValueError(f"The 'ncv' parameter of {fn} only applies to solver='arpack'. Got {ncv!r}.")
        ncv = _check_int(ncv, "ncv", fn, k + 1, n)
    v0 = torch.randn(n, generator=gen, device=gen.device, dtype=torch.float64).to(hvp.params[0].device)
    if solver == "arpack":
        vals = _arpack_top(hvp, v0, k, tol, max_iter, ncv, fn)
    else:
        vals = _lanczos_top(hvp, v0, k, tol, max_iter, fn)
    return Eigenvalues(tuple(float(x) for x in np.sort(np.asarray(vals))[::-1]), hvp.n_hvp)


def _lanczos_top(hvp: HessianVectorProduct, v0: torch.Tensor, k: int, tol: float, steps: int, fn: str) -> np.ndarray:
    converged = [False]

    def stop(alpha: list[float], beta: list[float], b: float) -> bool:
        if len(alpha) < k:
            return False
        theta, s = scipy.linalg.eigh_tridiagonal(np.array(alpha), np.array(beta))
        top = slice(len(theta) - k, None)
        resid = b * np.abs(s[-1, top])  # ‖H y_i − θ_i y_i‖ for the k largest Ritz pairs
        converged[0] = bool(np.all(resid <= tol * np.abs(theta[top])))
        return converged[0]

    alpha, beta = _lanczos(hvp.mv, v0 / torch.linalg.vector_norm(v0), min(steps, hvp.numel), stop)
    exhausted = len(alpha) == min(steps, hvp.numel) and len(beta) == len(alpha) - 1
    if len(alpha) < k:  # the Krylov space of v0 is invariant and smaller than k: the rest of H is not seen
        warnings.warn(f"{fn}: the Krylov space of the starting vector has dimension {len(alpha)} < k = {k}.",
                      RuntimeWarning, stacklevel=3)
    elif exhausted and not converged[0] and len(alpha) < hvp.numel:
        warnings.warn(f"{fn}: Lanczos did not reach tol={tol:g} in {steps} steps.", RuntimeWarning, stacklevel=3)
    theta = scipy.linalg.eigh_tridiagonal(alpha, beta, eigvals_only=True) if len(alpha) > 1 else alpha
    return theta[-k:]


def _arpack_top(hvp: HessianVectorProduct, v0: torch.Tensor, k: int, tol: float, max_iter: int,
                ncv: int | None, fn: str) -> np.ndarray:
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

    n, device = hvp.numel, hvp.params[0].device

    def matvec(x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), device=device)
        return hvp.mv(xt).cpu().numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    v0 = v0.cpu().numpy()
    try:
        return eigsh(op, k=k, which="LA", v0=v0, ncv=ncv, tol=tol, maxiter=max_iter, return_eigenvectors=False)
    except ArpackNoConvergence as err:
        warnings.warn(f"{fn}: ARPACK converged {len(err.eigenvalues)} of {k} eigenvalues in {max_iter} restarts.",
                      RuntimeWarning, stacklevel=3)
        return err.eigenvalues
    except ArpackError:
        # ARPACK gives up when the Krylov space collapses at once (H v0 = 0); as power iteration does, a random
        # vector in the null space is taken to mean H = 0 (e.g. a loss linear in the parameters).
        if np.any(matvec(v0)):
            raise
        return np.zeros(k)


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian spectrum.

    Attributes
    ----------
    nodes, weights : ndarray (n_probes, n_iter)
        Per probe, the Gauss-quadrature nodes (Ritz values θ_j of the Lanczos tridiagonal T) and weights (squared
        first components of T's eigenvectors; each row sums to 1). Rows cut short by a Lanczos breakdown (an
        invariant subspace was found) are padded with weight 0.
    grid, density : ndarray (n_grid,)
        The smoothed density φ(λ) = mean over probes of Σ_j w_j N(λ; θ_j, σ²), which integrates to 1.
    sigma : float
        The Gaussian width σ.
    n_hvp : int
        Hessian-vector products used.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    n_hvp: int

    def expect(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        """The quadrature's estimate of Tr(f(H)) / n, mean over probes of Σ_j w_j f(θ_j)."""
        return float(np.mean(np.sum(self.weights * f(self.nodes), axis=1)))


def _lanczos(
    mv: Callable[[torch.Tensor], torch.Tensor],
    v: torch.Tensor,
    m: int,
    stop: Callable[[list[float], list[float], float], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """At most m steps of Lanczos from unit v with full reorthogonalisation; returns T's diagonal α and off-diagonal
    β (one HVP per α). ``stop(alpha, beta, b)``, called after each step with the next off-diagonal b (the scale of
    the residual of the current Ritz pairs), ends the iteration early when it returns True."""
    basis = [v]
    alpha, beta = [], []
    for j in range(m):
        w = mv(basis[j])
        a = float(w @ basis[j])
        alpha.append(a)
        if j == m - 1:
            break
        vmat = torch.stack(basis, dim=1)  # (n, j + 1)
        w = w - vmat @ (vmat.T @ w)  # full Gram-Schmidt, twice ("twice is enough") to keep the basis orthogonal
        w = w - vmat @ (vmat.T @ w)
        b = float(torch.linalg.vector_norm(w))
        if b <= 1e-10 * max(1.0, max(abs(x) for x in alpha)):  # breakdown: the Krylov space is invariant
            break
        if stop is not None and stop(alpha, beta, b):
            break
        beta.append(b)
        basis.append(w / b)
    return np.array(alpha), np.array(beta)


def hessian_spectral_density(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    target: torch.Tensor,
    loss_fn: LossFn | None = None,
    n_probes: int = 1,
    n_iter: int = 80,
    n_grid: int = 1000,
    sigma: float | None = None,
    params: Sequence[str] | None = None,
    internal_batch_size: int | None = None,
    generator: torch.Generator | int | None = None,
) -> SpectralDensity:
    """Eigenvalue density of H by stochastic Lanczos quadrature (SLQ; PyHessian's ``density``).

    For each probe v (Rademacher, normalised), ``n_iter`` Lanczos steps give a tridiagonal T = U diag(θ) Uᵀ, and
    vᵀ f(H) v ≈ Σ_j U_{0j}² f(θ_j), a Gauss quadrature that is exact for polynomials f of degree ≤ 2·n_iter − 1.
    Since E[vᵀ f(H) v] = Tr(f(H)) / n for a unit Rademacher probe, the mean over probes estimates the normalised
    spectral measure. One HVP per Lanczos step.

    Parameters
    ----------
    n_probes : int
        Number of independent probes (Lanczos runs).
    n_iter : int
        Lanczos steps per probe (capped at n).
    n_grid : int
        Points of the density grid, spanning the nodes ± 5σ.
    sigma : float, optional
        Gaussian smoothing width; default 1 % of the nodes' range (or 1e-3 when all nodes coincide).
    """
    fn = "hessian_spectral_density"
    n_probes = _check_int(n_probes, "n_probes", fn, 1)
    n_iter = _check_int(n_iter, "n_iter", fn, 1)
    n_grid = _check_int(n_grid, "n_grid", fn, 2)
    if sigma is not None:
        sigma = _check_float(sigma, "sigma", fn, 0.0)
    gen = _as_generator(generator, fn)
    hvp = make_hvp(model, inputs, target=target, loss_fn=loss_fn, params=params,
                   internal_batch_size=internal_batch_size, fn=fn)
    m = min(n_iter, hvp.numel)
    nodes, weights = np.zeros((n_probes, m)), np.zeros((n_probes, m))
    for i in range(n_probes):
        v = hvp.flatten(_rademacher(hvp.params, gen))
        alpha, beta = _lanczos(hvp.mv, v / torch.linalg.vector_norm(v), m)
        t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, u = np.linalg.eigh(t)
        nodes[i, : len(theta)], weights[i, : len(theta)] = theta, u[0] ** 2
    live = weights > 0
    lo, hi = float(nodes[live].min()), float(nodes[live].max())
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else 1e-3
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid)
    kernel = np.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = (kernel * weights[None]).sum(2).mean(1)  # (n_grid,)
    return SpectralDensity(nodes, weights, grid, density, float(sigma), hvp.n_hvp)
