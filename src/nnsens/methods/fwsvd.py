"""arXiv 2505.17974 — Fisher-weighted low-rank compression of linear layers: SVD, FWSVD, SVD-LLM, K-FAC, GFWSVD.

A weight matrix W (m out × n in) is replaced by a rank-r matrix Ŵ. To second order the loss increases by
½ vec(Δ)ᵀ F vec(Δ), Δ = W − Ŵ, with F the Fisher of the layer's weights (row-major vec). Each method replaces F by
a structured approximation for which the weighted problem has a closed form:

- identity: plain truncated SVD (Eckart–Young);
- diagonal, row-summed (FWSVD, Hsu et al. 2022, arXiv 2207.00112): F ≈ diag(r²) ⊗ I with r_l² = Σ_j F_(l,j)(l,j);
- input whitening (SVD-LLM / ASVD): F ≈ I ⊗ A with A = E[x xᵀ];
- Kronecker F ≈ B ⊗ A with both factors full: K-FAC (A = E[x xᵀ], B = E[δ δᵀ]) or the nearest Kronecker product to
  the empirical Fisher (GFWSVD), the rank-1 SVD of Van Loan's rearrangement R(F) found by alternating power
  iteration over per-sample gradients without forming F (:func:`nearest_kronecker`).

With Cholesky factors B = L_B L_Bᵀ and A = L_A L_Aᵀ, vec(Δ)ᵀ(B ⊗ A)vec(Δ) = ‖L_Bᵀ Δ L_A‖²_F, minimised over rank r
by W̃ = L_Bᵀ W L_A, its truncated SVD W̃_r, and Ŵ = L_B⁻ᵀ W̃_r L_A⁻¹ (:func:`kron_weighted_svd`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.sparse.linalg import svds

METHODS = ("svd", "fwsvd", "svd_llm", "kfac", "gfwsvd")


def rank_for_ratio(m: int, n: int, ratio: float) -> int:
    """The rank r whose factors U (m×r), V (r×n) remove at least ``ratio`` of the m·n weights (at least 1)."""
    if not (isinstance(ratio, (int, float)) and 0.0 <= ratio < 1.0):
        raise ValueError(f"The 'ratio' parameter of rank_for_ratio must be a float in [0, 1). Got {ratio!r} instead.")
    return max(1, math.floor((1.0 - ratio) * m * n / (m + n)))


def truncated_svd(w: torch.Tensor, rank: int) -> torch.Tensor:
    """Best rank-``rank`` approximation of ``w`` in Frobenius norm (Eckart–Young)."""
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    return (u[:, :rank] * s[:rank]) @ vh[:rank]


def cholesky_factor(m: torch.Tensor, damping: float) -> torch.Tensor:
    """Lower Cholesky factor of ``m + damping · mean(diag m) · I`` (relative damping keeps it scale-free)."""
    if not (isinstance(damping, (int, float)) and damping >= 0):
        raise ValueError(f"The 'damping' parameter of cholesky_factor must be a float in [0, inf). Got {damping!r}.")
    d = m.shape[0]
    shift = damping * float(torch.diagonal(m).mean()) if damping > 0 else 0.0
    eye = torch.eye(d, dtype=m.dtype, device=m.device)
    return torch.linalg.cholesky(0.5 * (m + m.T) + shift * eye)


def kron_weighted_svd(w: torch.Tensor, l_b: torch.Tensor, l_a: torch.Tensor, rank: int) -> torch.Tensor:
    """argmin over rank-``rank`` Ŵ of ‖L_Bᵀ (W − Ŵ) L_A‖_F, for lower-triangular invertible L_B (m×m), L_A (n×n)."""
    wt = l_b.T @ w @ l_a  # W̃ = L_Bᵀ W L_A
    wt_r = truncated_svd(wt, rank)
    x = torch.linalg.solve_triangular(l_b.T, wt_r, upper=True)  # L_B⁻ᵀ W̃_r
    return torch.linalg.solve_triangular(l_a, x, upper=False, left=False)  # ... L_A⁻¹


def row_weights(fisher_diag: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """FWSVD row weights r_l = √(Σ_j F_(l,j)), floored at ``floor``·mean(r) (dead units have r_l = 0)."""
    r = fisher_diag.sum(dim=1).clamp_min(0).sqrt()
    return r.clamp_min(floor * float(r.mean()))


def fwsvd(w: torch.Tensor, weights: torch.Tensor, rank: int) -> torch.Tensor:
    """argmin over rank-``rank`` Ŵ of ‖diag(weights)(W − Ŵ)‖_F (FWSVD)."""
    return truncated_svd(weights[:, None] * w, rank) / weights[:, None]


def nearest_kronecker(
    x: torch.Tensor, delta: torch.Tensor, *, n_iter: int = 200, tol: float = 1e-10, init: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Nearest Kronecker product B ⊗ A to F = (1/N) Σ_i vec(G_i) vec(G_i)ᵀ for rank-one G_i = δ_i x_iᵀ.

    Alternating power iteration on Van Loan's rearrangement R(F), whose products are R vec(A) = E[G A Gᵀ] and
    Rᵀ vec(B) = E[Gᵀ B G]: B ← (1/N) Σ (x_iᵀ A x_i) δ_iδ_iᵀ, A ← (1/N) Σ (δ_iᵀ B δ_i) x_i x_iᵀ, with A normalised
    to unit Frobenius norm at each step. At convergence
    vec(B) vec(A)ᵀ = σ₁ u₁ v₁ᵀ, the best rank-1 approximation of R(F), i.e. B ⊗ A is the Frobenius-nearest Kronecker
    product to F.

    Parameters
    ----------
    x : Tensor
        (N, n) layer inputs.
    delta : Tensor
        (N, m) or (K, N, m) output gradients (K probability-weighted classes for the true Fisher; samples and
        classes are pooled, the mean is over N).
    init : Tensor, optional
        Starting A (n×n), e.g. the K-FAC factor (default: the identity).

    Returns
    -------
    B, A, iterations
    """
    n_samples = x.shape[0]
    d = delta.reshape(-1, delta.shape[-1])  # (K·N, m)
    xk = x.repeat(d.shape[0] // n_samples, 1)  # (K·N, n), aligned with d
    a = torch.eye(x.shape[1], dtype=x.dtype, device=x.device) if init is None else init.clone()
    a = a / a.norm()
    it = 0
    while it < n_iter:
        it += 1
        b = (d * ((xk @ a) * xk).sum(1, keepdim=True)).T @ d / n_samples  # Σ (xᵀAx) δδᵀ / N
        a_new = (xk * ((d @ b) * d).sum(1, keepdim=True)).T @ xk / n_samples  # Σ (δᵀBδ) xxᵀ / N
        a_new = a_new / a_new.norm()
        done = float((a_new - a).norm()) < tol
        a = a_new
        if done:
            break
    b = (d * ((xk @ a) * xk).sum(1, keepdim=True)).T @ d / n_samples
    return b, a, it


def van_loan(f: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """Van Loan's rearrangement R(F) (m², n²) of an (mn × mn) matrix over row-major vec of an m×n matrix:
    R[(i,k), (j,l)] = F[(i,j), (k,l)], so that R(B ⊗ A) = vec(B) vec(A)ᵀ."""
    return f.reshape(m, n, m, n).permute(0, 2, 1, 3).reshape(m * m, n * n)


def nearest_kronecker_dense(f: torch.Tensor, m: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: B, A from the top singular triplet of R(F) (B carries σ₁, ‖A‖_F = 1, B and A PSD), computed
    by ARPACK's Lanczos bidiagonalization (``scipy.sparse.linalg.svds``, deterministic start) in float64."""
    r = van_loan(f, m, n).detach().cpu().double().numpy()
    u, s, vh = svds(r, k=1, tol=0, v0=np.ones(min(r.shape)), random_state=0)
    b = torch.from_numpy((s[0] * u[:, 0]).reshape(m, m).copy())
    a = torch.from_numpy(vh[0].reshape(n, n).copy())
    if torch.trace(a) < 0:  # the singular pair is defined up to a joint sign: make both factors PSD
        a, b = -a, -b
    return b.to(f.device, f.dtype), a.to(f.device, f.dtype)


def compress(
    w: torch.Tensor,
    method: str,
    rank: int,
    *,
    fisher_diag: torch.Tensor | None = None,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    damping: float = 1e-3,
) -> torch.Tensor:
    """Rank-``rank`` approximation of ``w`` by one of :data:`METHODS`.

    ``fisher_diag`` (m×n) is needed by ``"fwsvd"``; ``a`` (n×n, input side) by ``"svd_llm"``, and ``a`` with ``b``
    (m×m, output side) by ``"kfac"`` and ``"gfwsvd"`` (pass the K-FAC or the nearest-Kronecker factors).
    """
    if method not in METHODS:
        raise ValueError(f"The 'method' parameter of compress must be one of {', '.join(METHODS)}. Got {method!r}.")
    if method == "svd":
        return truncated_svd(w, rank)
    if method == "fwsvd":
        if fisher_diag is None:
            raise ValueError("compress(method='fwsvd') needs 'fisher_diag'.")
        return fwsvd(w, row_weights(fisher_diag), rank)
    if a is None or (method != "svd_llm" and b is None):
        raise ValueError(f"compress(method={method!r}) needs the factor(s) 'a'" + ("" if method == "svd_llm"
                                                                                   else " and 'b'") + ".")
    l_a = cholesky_factor(a, damping)
    eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
    l_b = eye if method == "svd_llm" else cholesky_factor(b, damping)
    return kron_weighted_svd(w, l_b, l_a, rank)
