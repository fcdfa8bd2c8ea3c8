"""Fisher-weighted SVD (P53): closed forms on small matrices (Eckart–Young; the Kronecker-weighted truncation is the
weighted optimum, checked against alternating least squares from many starts), the nearest Kronecker product
against the exact SVD of Van Loan's rearrangement, and argument messages."""

from __future__ import annotations

import pytest
import torch

from nnsens.methods.fwsvd import (
    cholesky_factor,
    compress,
    fwsvd,
    kron_weighted_svd,
    nearest_kronecker,
    nearest_kronecker_dense,
    rank_for_ratio,
    row_weights,
    truncated_svd,
    van_loan,
)

M, N_IN = 5, 4


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def spd(n, seed):
    q = rand(n, n, seed=seed)
    return q @ q.T + 0.1 * torch.eye(n, dtype=torch.float64)


def weighted_err(w, what, b, a):
    d = (w - what).flatten()  # row-major vec
    return float(d @ torch.kron(b, a) @ d)


def als_best(w, b, a, rank, starts=8, iters=100):
    """Brute force: alternating weighted least squares over U (m×r), V (r×n) for vec(Δ)ᵀ(B⊗A)vec(Δ), many starts."""
    m, n = w.shape
    f, wv = torch.kron(b, a), w.flatten()
    best = float("inf")
    for s in range(starts):
        v = rand(rank, n, seed=100 + s)
        for _ in range(iters):
            ju = torch.block_diag(*[v.T] * m)  # vec(U V) = (I ⊗ Vᵀ) vec(U)
            u = torch.linalg.solve(ju.T @ f @ ju, ju.T @ f @ wv).reshape(m, rank)
            jv = torch.kron(u, torch.eye(n, dtype=w.dtype))  # vec(U V) = (U ⊗ I) vec(V)
            v = torch.linalg.solve(jv.T @ f @ jv, jv.T @ f @ wv).reshape(rank, n)
        best = min(best, weighted_err(w, u @ v, b, a))
    return best


def test_identity_weights_give_plain_svd_with_eckart_young_error():
    w = rand(M, N_IN)
    s = torch.linalg.svdvals(w)
    eye_m, eye_n = torch.eye(M, dtype=w.dtype), torch.eye(N_IN, dtype=w.dtype)
    for r in (1, 2, 3):
        plain = truncated_svd(w, r)
        torch.testing.assert_close(kron_weighted_svd(w, eye_m, eye_n, r), plain)
        torch.testing.assert_close(fwsvd(w, torch.ones(M, dtype=w.dtype), r), plain)
        torch.testing.assert_close((w - plain).norm() ** 2, s[r:].square().sum())
        assert torch.linalg.matrix_rank(plain) == r


@pytest.mark.parametrize("rank", [1, 2])
def test_kronecker_weighted_truncation_is_the_weighted_optimum(rank):
    w, b, a = rand(M, N_IN, seed=1), spd(M, 2), spd(N_IN, 3)
    what = kron_weighted_svd(w, cholesky_factor(b, 0.0), cholesky_factor(a, 0.0), rank)
    err = weighted_err(w, what, b, a)
    # closed form: the error is the tail of the singular values of L_Bᵀ W L_A
    s = torch.linalg.svdvals(cholesky_factor(b, 0.0).T @ w @ cholesky_factor(a, 0.0))
    assert err == pytest.approx(float(s[rank:].square().sum()), rel=1e-10)
    assert torch.linalg.matrix_rank(what) == rank
    assert err <= als_best(w, b, a, rank) * (1 + 1e-8)  # no rank-r matrix found by brute force does better
    assert err < weighted_err(w, truncated_svd(w, rank), b, a)  # and plain SVD is worse under this weighting


def test_fwsvd_is_the_row_weighted_optimum():
    w, d = rand(M, N_IN, seed=4), rand(M, seed=5).abs() + 0.1
    what = fwsvd(w, d, 2)
    b, a = torch.diag(d.square()), torch.eye(N_IN, dtype=w.dtype)
    assert weighted_err(w, what, b, a) <= als_best(w, b, a, 2, starts=5) * (1 + 1e-8)


def test_row_weights_floor_dead_units():
    fd = torch.tensor([[4.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    r = row_weights(fd)
    assert r[0] == 2.0 and r[2] == 1.0 and r[1] == pytest.approx(1e-3 * 1.0)


def test_nearest_kronecker_matches_van_loan_svd():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(40, N_IN, generator=g, dtype=torch.float64)
    d = torch.randn(40, M, generator=g, dtype=torch.float64) * (1 + x[:, :1].abs())  # δ depends on x: not K-FAC
    grads = torch.einsum("ni,nj->nij", d, x).reshape(40, -1)  # vec_row(δ xᵀ)
    f = grads.T @ grads / 40
    b, a, it = nearest_kronecker(x, d, n_iter=500, tol=1e-13)
    b_ref, a_ref = nearest_kronecker_dense(f, M, N_IN)
    assert it < 500
    torch.testing.assert_close(torch.kron(b, a), torch.kron(b_ref, a_ref))
    torch.testing.assert_close(van_loan(torch.kron(b, a), M, N_IN), torch.outer(b.flatten(), a.flatten()))
    # it is the nearest Kronecker product: better than the best-scaled K-FAC product and than diag(F)
    kfac = torch.kron(d.T @ d / 40, x.T @ x / 40)
    alpha = (f * kfac).sum() / kfac.square().sum()
    nkp_err = (f - torch.kron(b, a)).norm()
    assert nkp_err < (f - alpha * kfac).norm()
    assert nkp_err < (f - torch.diag(torch.diagonal(f))).norm()
    # classes pooled with weights: (K, N, m) gives the same as stacking
    b2, a2, _ = nearest_kronecker(x, torch.stack([d / 2**0.5, d / 2**0.5]), n_iter=500, tol=1e-13)
    torch.testing.assert_close(torch.kron(b2, a2), torch.kron(b, a))


def test_compress_dispatch_and_ratio():
    w = rand(M, N_IN, seed=7)
    a, b, fd = spd(N_IN, 8), spd(M, 9), rand(M, N_IN, seed=10).square()
    for method in ("svd", "fwsvd", "svd_llm", "kfac", "gfwsvd"):
        out = compress(w, method, 2, fisher_diag=fd, a=a, b=b, damping=0.0)
        assert out.shape == w.shape and torch.linalg.matrix_rank(out) == 2
    torch.testing.assert_close(compress(w, "kfac", 2, a=a, b=b, damping=0.0),
                               compress(w, "gfwsvd", 2, a=a, b=b, damping=0.0))
    assert rank_for_ratio(256, 256, 0.1) == 115 and rank_for_ratio(32, 40, 0.7) == 5
    assert rank_for_ratio(4, 4, 0.99) == 1


def test_bad_arguments():
    w = rand(M, N_IN)
    with pytest.raises(ValueError, match="The 'method' parameter of compress must be one of svd, fwsvd"):
        compress(w, "pca", 1)
    with pytest.raises(ValueError, match="needs 'fisher_diag'"):
        compress(w, "fwsvd", 1)
    with pytest.raises(ValueError, match="needs the factor"):
        compress(w, "kfac", 1, a=spd(N_IN, 0))
    with pytest.raises(ValueError, match="The 'ratio' parameter of rank_for_ratio must be a float in \\[0, 1\\)"):
        rank_for_ratio(4, 4, 1.0)
    with pytest.raises(ValueError, match="The 'damping' parameter of cholesky_factor"):
        cholesky_factor(spd(3, 0), -1.0)
