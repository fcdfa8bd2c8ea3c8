"""Seeded graph simulators: the contextual stochastic block model (CSBM) and the degree-bounding edge sampler of P12.

CSBM: ``n_nodes`` nodes with balanced labels in ``n_classes`` classes; node features are Gaussian,
``x = mu · e_y + N(0, I_d)`` (class means on orthogonal axes, so every pair of classes is equally far apart); edges are
undirected, independent, with an expected degree ``avg_degree`` of which a fraction ``homophily`` joins nodes of the
same class (``homophily = 1 / n_classes`` makes the edges carry no label information).

The sampler (node-level DP-GNN, arXiv 2111.15521, official ``sampler.py``) bounds, for every node v, how many other
nodes aggregate v's features to at most ``max_degree`` = K, by keeping a random subset of v's outgoing messages. A
node's deletion then changes at most K + 1 per-node terms of a 1-layer GNN loss (its own and those of the ≤ K nodes
that aggregate it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, stats

__all__ = ["CSBM", "bayes_accuracy", "csbm", "degree_bounded_edges", "mu_for_accuracy"]


@dataclass(frozen=True)
class CSBM:
    """A sampled CSBM graph: features (N, d) float32, labels (N,), undirected edges (2, E) with i < j."""

    x: np.ndarray
    y: np.ndarray
    edges: np.ndarray
    mu: float
    homophily: float


def bayes_accuracy(mu: float, n_classes: int = 4) -> float:
    """Accuracy of the Bayes classifier on the features alone: P(mu + z_0 > max_{c≥1} z_c), z i.i.d. N(0, 1).

    With means ``mu · e_c`` and identity covariance the Bayes rule is ``argmax_c x_c``, so the accuracy is
    ``∫ φ(z) Φ(z + mu)^(C−1) dz``.
    """
    val, _ = integrate.quad(lambda z: stats.norm.pdf(z) * stats.norm.cdf(z + mu) ** (n_classes - 1), -12, 12)
    return float(val)


def mu_for_accuracy(target: float, n_classes: int = 4) -> float:
    """The class-mean separation mu at which the features-only Bayes accuracy equals ``target``."""
    if not (isinstance(target, float) and 1.0 / n_classes < target < 1.0):
        raise ValueError(f"The 'target' parameter of mu_for_accuracy must be a float in (1/{n_classes}, 1). "
                         f"Got {target!r} instead.")
    return float(optimize.brentq(lambda m: bayes_accuracy(m, n_classes) - target, 0.0, 20.0, xtol=1e-10))


def _check(name: str, value: object, ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"The {name!r} parameter of csbm must be {what}. Got {value!r} instead.")


def csbm(n_nodes: int, *, n_features: int = 16, n_classes: int = 4, mu: float = 1.0, homophily: float = 0.8,
         avg_degree: float = 10.0, seed: int | np.random.Generator = 0) -> CSBM:
    """Sample a contextual stochastic block model (see the module docstring).

    Edges are drawn block by block (a Binomial count of pairs per class pair, then that many distinct random pairs),
    so memory stays O(E) for large graphs.
    """
    _check("n_nodes", n_nodes, isinstance(n_nodes, int) and n_nodes >= 2 * n_classes, f"an int >= {2 * n_classes}")
    _check("n_features", n_features, isinstance(n_features, int) and n_features >= n_classes,
           f"an int >= n_classes={n_classes}")
    _check("homophily", homophily, isinstance(homophily, (int, float)) and 0.0 <= homophily <= 1.0,
           "a float in [0, 1]")
    _check("mu", mu, isinstance(mu, (int, float)) and mu >= 0, "a float in [0, inf)")
    _check("avg_degree", avg_degree, isinstance(avg_degree, (int, float)) and 0 < avg_degree < n_nodes / n_classes,
           f"a float in (0, {n_nodes / n_classes:g})")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    y = np.arange(n_nodes) % n_classes
    rng.shuffle(y)
    x = rng.standard_normal((n_nodes, n_features))
    x[np.arange(n_nodes), y] += mu
    members = [np.flatnonzero(y == c) for c in range(n_classes)]
    n_c = n_nodes / n_classes
    p_in = homophily * avg_degree / (n_c - 1)  # expected same-class neighbours = homophily · avg_degree
    p_out = (1 - homophily) * avg_degree / (n_nodes - n_c)
    chunks = []
    for a in range(n_classes):
        for b in range(a, n_classes):
            ma, mb = members[a], members[b]
            pairs = len(ma) * (len(ma) - 1) // 2 if a == b else len(ma) * len(mb)
            m = rng.binomial(pairs, min(1.0, p_in if a == b else p_out))
            i, j = ma[rng.integers(0, len(ma), 2 * m + 8)], mb[rng.integers(0, len(mb), 2 * m + 8)]
            keep = i != j
            pairs_ij = np.sort(np.stack([i[keep], j[keep]]), axis=0)
            _, first = np.unique(pairs_ij, axis=1, return_index=True)
            chunks.append(pairs_ij[:, np.sort(first)[:m]])  # the first m distinct pairs in draw order
    edges = np.concatenate(chunks, axis=1) if chunks else np.zeros((2, 0), dtype=np.int64)
    edges = np.unique(np.sort(edges, axis=0), axis=1).astype(np.int64)
    return CSBM(x.astype(np.float32), y.astype(np.int64), edges, float(mu), float(homophily))


def degree_bounded_edges(edges: np.ndarray, nodes: np.ndarray, max_degree: int,
                         seed: int | np.random.Generator = 0) -> np.ndarray:
    """Directed messages ``(source, receiver)`` among ``nodes`` such that every source feeds at most ``max_degree``
    receivers.

    Each undirected edge {u, v} with both ends in ``nodes`` gives the messages u→v and v→u; for every source a
    uniformly random subset of at most ``max_degree`` of its messages is kept (the official sampler bounds each
    node's in-degree in the reversed graph: message passing runs against the edge direction there).

    Returns
    -------
    ndarray, (2, M) int64
        Row 0: sources (whose features are aggregated), row 1: receivers (whose term uses them).
    """
    if not (isinstance(max_degree, (int, np.integer)) and max_degree >= 0):
        raise ValueError(f"The 'max_degree' parameter of degree_bounded_edges must be an int in [0, inf). "
                         f"Got {max_degree!r} instead.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    inside = np.zeros(int(max(edges.max(initial=-1), nodes.max(initial=-1))) + 1, dtype=bool)
    inside[nodes] = True
    e = edges[:, inside[edges[0]] & inside[edges[1]]]
    msg = np.concatenate([e, e[::-1]], axis=1)  # (2, 2E) source, receiver
    msg = msg[:, rng.permutation(msg.shape[1])]  # random order, then keep the first max_degree per source
    order = np.argsort(msg[0], kind="stable")
    msg = msg[:, order]
    _, start, counts = np.unique(msg[0], return_index=True, return_counts=True)
    rank = np.arange(msg.shape[1]) - np.repeat(start, counts)
    return msg[:, rank < max_degree].astype(np.int64)
