"""HAWQ-V2 arithmetic: Ω tables, configuration enumeration and size, Pareto frontier, selectors, and the
prefix-sharing evaluator of all configurations (checked against quantize_model + a plain forward pass)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from nnsens.measures.quantization import quantize, quantize_model
from nnsens.methods import hawq
from nnsens.models import MLP, SmallCNN


def test_enumerate_configs_order_and_size():
    c = hawq.enumerate_configs(3, 2)
    assert c.tolist() == [list(t) for t in itertools.product(range(2), repeat=3)]
    bits, n = (2, 8), (10, 30, 60)
    size = hawq.config_size(c, bits, n)
    assert size[0] == pytest.approx(2.0) and size[-1] == pytest.approx(8.0)
    assert size[1] == pytest.approx((2 * 10 + 2 * 30 + 8 * 60) / 100)  # config (2, 2, 8)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        hawq.enumerate_configs(0, 2)


def test_omega_tables_and_totals():
    w = [torch.randn(4, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    bits = (2, 4, 8)
    d = hawq.perturbation_sq(w, bits)
    assert d.shape == (3, 3) and np.all(np.diff(d, axis=1) < 0)
    assert d[1, 0] == pytest.approx(float((quantize(w[1], 2) - w[1]).pow(2).sum()))
    om = hawq.layer_omega([1.0, 2.0, 0.5], d)
    np.testing.assert_allclose(om, d * np.array([[1.0], [2.0], [0.5]]))
    c = hawq.enumerate_configs(3, 3)
    tot = hawq.total_omega(c, om)
    k = 7
    assert tot[k] == pytest.approx(sum(om[i, c[k, i]] for i in range(3)))
    with pytest.raises(ValueError, match="one value per layer"):
        hawq.layer_omega([1.0], d)


def test_pareto_front_is_exactly_the_non_dominated_set():
    rng = np.random.default_rng(0)
    size, cost = rng.integers(0, 10, 60).astype(float), rng.random(60)
    front = hawq.pareto_front(size, cost)
    dominated = {i for i in range(60) for j in range(60)
                 if (size[j] <= size[i] and cost[j] < cost[i]) or (size[j] < size[i] and cost[j] <= cost[i])}
    assert set(front) <= set(range(60)) - dominated
    # one representative per non-dominated (size, cost) point, in increasing size and decreasing cost
    assert {(size[i], cost[i]) for i in front} == {(size[i], cost[i]) for i in set(range(60)) - dominated}
    assert np.all(np.diff(size[front]) > 0) and np.all(np.diff(cost[front]) < 0)


def test_argmin_within_budget_and_selectors():
    bits, n = (2, 4, 8), (100, 100)
    c = hawq.enumerate_configs(2, 3)
    size = hawq.config_size(c, bits, n)
    om = hawq.layer_omega([10.0, 1.0], np.array([[4.0, 1.0, 0.0], [4.0, 1.0, 0.0]]))
    i = hawq.argmin_within(size, hawq.total_omega(c, om), 5.0)
    assert size[i] <= 5.0 and c[i].tolist() == [2, 0]  # the sensitive layer 0 gets 8 bits, layer 1 gets 2 bits
    assert hawq.argmin_within(size, hawq.total_omega(c, om), 1.0) == -1
    kw = dict(configs=c, size=size, budget=5.0, omega_trace=om, omega_eig=om,
              omega_reversed=hawq.layer_omega(hawq.reversed_sensitivity([10.0, 1.0]), np.ones((2, 3))))
    assert hawq.select("trace", **kw) == i
    assert c[hawq.select("uniform", **kw)].tolist() == [1, 1]  # 4 bits everywhere is the best uniform fit
    draws = [hawq.select("random", generator=np.random.default_rng(s), **kw) for s in range(30)]
    assert all(size[d] <= 5.0 for d in draws) and len(set(draws)) > 1
    assert draws[:5] == [hawq.select("random", generator=np.random.default_rng(s), **kw) for s in range(5)]
    with pytest.raises(ValueError, match="'selector' parameter of select must be one of"):
        hawq.select("best", **kw)
    with pytest.raises(ValueError, match="'generator' parameter of select is required"):
        hawq.select("random", **kw)


def test_reversed_sensitivity():
    np.testing.assert_allclose(hawq.reversed_sensitivity([3.0, 1.0, 2.0]), [1.0, 3.0, 2.0])
    np.testing.assert_allclose(hawq.reversed_sensitivity([5.0, 0.1, 1.0, 2.0]), [0.1, 5.0, 2.0, 1.0])


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_chain_evaluation_matches_quantized_models(kind):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SmallCNN(pool="flatten", image_size=8) if kind == "cnn" else MLP((6, 7, 5, 3))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 1, 8, 8, generator=g) if kind == "cnn" else torch.randn(9, 6, generator=g)
    names, stages = hawq.chain_stages(model)
    params = dict(model.named_parameters())
    bits = (2, 8)
    q = [[quantize(params[n], b) for b in bits] for n in names]
    scores = hawq.evaluate_chain(stages, q, x, lambda out: out.flatten().tolist())
    configs = hawq.enumerate_configs(len(names), len(bits))
    assert scores.shape[0] == len(configs) == 2 ** len(names)
    for k in (0, 5, len(configs) - 1):
        qm = quantize_model(model, {n: bits[j] for n, j in zip(names, configs[k])})
        with torch.no_grad():
            np.testing.assert_allclose(scores[k], qm(x).flatten().numpy(), rtol=1e-5, atol=1e-6)
    full = hawq.evaluate_chain(stages, [[params[n].detach()] for n in names], x, lambda out: out.flatten().tolist())
    with torch.no_grad():
        np.testing.assert_allclose(full[0], model(x).flatten().numpy(), rtol=1e-5, atol=1e-6)


def test_chain_stages_rejects_unsupported():
    with pytest.raises(ValueError, match="chain_stages supports"):
        hawq.chain_stages(SmallCNN(pool="avg"))
