"""CSBM simulator and the degree-bounding sampler of P12."""

from __future__ import annotations

import numpy as np
import pytest

from nnsens.data.graphs import bayes_accuracy, csbm, degree_bounded_edges, mu_for_accuracy


def test_csbm_is_seeded_and_has_the_asked_homophily_and_degree():
    a, b = csbm(2000, mu=1.0, homophily=0.8, avg_degree=10.0, seed=3), csbm(2000, mu=1.0, homophily=0.8,
                                                                            avg_degree=10.0, seed=3)
    assert np.array_equal(a.edges, b.edges) and np.array_equal(a.x, b.x)
    same = (a.y[a.edges[0]] == a.y[a.edges[1]]).mean()
    assert abs(same - 0.8) < 0.03
    assert abs(2 * a.edges.shape[1] / 2000 - 10.0) < 0.6
    assert np.all(a.edges[0] < a.edges[1]) and np.unique(a.edges, axis=1).shape == a.edges.shape
    assert np.bincount(a.y).tolist() == [500] * 4
    means = np.stack([a.x[a.y == c, :4].mean(0) for c in range(4)])
    assert np.allclose(means, np.eye(4), atol=0.15)  # mu · e_c
    h = csbm(2000, homophily=0.25, seed=0)
    assert abs((h.y[h.edges[0]] == h.y[h.edges[1]]).mean() - 0.25) < 0.03


def test_bayes_accuracy_closed_form_and_inverse():
    assert bayes_accuracy(0.0) == pytest.approx(0.25, abs=1e-8)
    mu = mu_for_accuracy(0.7)
    assert bayes_accuracy(mu) == pytest.approx(0.7, abs=1e-8)
    rng = np.random.default_rng(0)  # Monte Carlo of the argmax rule
    z = rng.standard_normal((200_000, 4))
    z[:, 0] += mu
    assert (z.argmax(1) == 0).mean() == pytest.approx(0.7, abs=0.005)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_degree_bound_holds_and_only_given_nodes_remain(k):
    g = csbm(1000, avg_degree=12.0, seed=1)
    nodes = np.arange(0, 1000, 2)
    m = degree_bounded_edges(g.edges, nodes, k, seed=0)
    assert np.bincount(m[0]).max() <= k
    assert np.isin(m, nodes).all()
    und = {(min(u, v), max(u, v)) for u, v in g.edges.T}
    assert all((min(s, r), max(s, r)) in und for s, r in m.T)  # only real edges
    assert np.array_equal(m, degree_bounded_edges(g.edges, nodes, k, seed=0))


def test_bad_values_are_refused():
    with pytest.raises(ValueError, match="The 'homophily' parameter of csbm must be a float in"):
        csbm(100, homophily=1.5)
    with pytest.raises(ValueError, match="The 'max_degree' parameter of degree_bounded_edges"):
        degree_bounded_edges(np.zeros((2, 0), dtype=np.int64), np.arange(3), -1)
    with pytest.raises(ValueError, match="The 'target' parameter of mu_for_accuracy"):
        mu_for_accuracy(0.2)
