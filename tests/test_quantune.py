"""Quantune's pieces: KL-entropy calibration against a brute-force loop, BatchNorm folding (folded == unfolded in eval
mode), the configuration grid, the evaluator's grids against the quantization measures, and the seeded searches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nnsens.measures.quantization import calibrate_range, entropy_range, kl_threshold_bin, quantize
from nnsens.methods import quantune as qt
from nnsens.models import MobileCNN1d, PlainCNN1d, ResCNN1d


def _kl_brute(hist, n):
    """The cut minimising KL(P_i ‖ Q_i), bin by bin in plain Python (the definition in kl_threshold_bin's docstring)."""
    hist = [float(h) for h in hist]
    n_bins = len(hist)
    if n >= n_bins or sum(hist) == 0:
        return n_bins
    best, best_i = math.inf, n_bins
    for i in range(n, n_bins + 1):
        p = hist[:i]
        p[-1] += sum(hist[i:])
        q = [0.0] * i
        for j in range(n):
            a, b = (j * i) // n, ((j + 1) * i) // n
            mass, count = sum(hist[a:b]), sum(1 for k in range(a, b) if p[k] > 0)
            for k in range(a, b):
                if p[k] > 0:
                    q[k] = mass / count
        total_q = sum(q)
        q = [1e-10 * total_q if (p[k] > 0 and q[k] <= 0) else q[k] for k in range(i)]
        sp, sq = sum(p), sum(q)
        kl = sum(p[k] / sp * math.log((p[k] / sp) / (q[k] / sq)) for k in range(i) if p[k] > 0)
        if kl < best - 1e-12:
            best, best_i = kl, i
    return best_i


def test_kl_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(60):
        n_bins, n = int(rng.integers(2, 50)), int(rng.integers(1, 10))
        hist = rng.poisson(rng.uniform(0, 5, size=n_bins)).astype(float)
        if rng.random() < 0.3:
            hist[rng.integers(0, n_bins)] += 100  # a spike (e.g. the zeros after a ReLU)
        assert kl_threshold_bin(hist, n) == _kl_brute(hist, n)


def test_kl_threshold_closed_forms():
    assert kl_threshold_bin(np.ones(64), 64) == 64  # as many levels as bins: nothing to coarsen, keep all
    assert kl_threshold_bin(np.zeros(10), 2) == 10
    # a flat histogram is kept whole: any cut piles mass on one bin, which costs information
    assert kl_threshold_bin(np.full(256, 10.0), 16) == 256
    # empty bins cost nothing (Q is only spread over P's non-empty bins): a lone far bin is kept, not clipped
    hist = np.zeros(512)
    hist[:64] = 1000.0
    hist[-1] = 1.0
    assert kl_threshold_bin(hist, 32) == 512
    # a decaying bulk with a thin tail is cut inside the tail: coarse groups over the bulk cost more than clipping
    hist = np.floor(1e6 * np.exp(-np.arange(512) / 8.0)) + 1
    assert 32 < kl_threshold_bin(hist, 32) < 512


def test_entropy_range_shapes_and_clipping():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, generator=g)
    x[0] = 40.0  # an outlier min-max calibration would stretch the grid to
    lo, hi = entropy_range(x, 8)
    assert lo.shape == hi.shape == (1,) and torch.equal(lo, -hi) and 2.0 < hi.item() < 40.0
    relu = torch.relu(x)
    lo, hi = entropy_range(relu, 8, symmetric=False)
    assert lo.item() == 0.0 and 0 < hi.item() <= 40.0
    lo, hi = entropy_range(torch.zeros(5), 4)
    assert lo.item() == hi.item() == 0.0


@pytest.mark.parametrize("bad, msg", [
    (dict(x=torch.ones(3, dtype=torch.int64)), "The 'x' parameter of entropy_range must be a floating-point"),
    (dict(x=torch.ones(3), n_bins=1), "The 'n_bins' parameter of entropy_range must be an int in [2, inf)"),
    (dict(x=torch.ones(3), bits=1), "The 'bits' parameter of entropy_range must be an int in [2, 32]"),
])
def test_entropy_range_rejects_bad_arguments(bad, msg):
    with pytest.raises((TypeError, ValueError)) as err:
        entropy_range(**bad)
    assert msg in str(err.value)


def _with_random_bn_stats(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g))
            m.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.05)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g))
    return model.eval()


@pytest.mark.parametrize("cls", [PlainCNN1d, MobileCNN1d, ResCNN1d])
def test_fold_batchnorm_equals_unfolded_in_eval_mode(cls):
    torch.manual_seed(0)
    model = _with_random_bn_stats(cls(), 1)
    x = torch.randn(64, 40, generator=torch.Generator().manual_seed(2))
    folded = qt.fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
        fast = qt._conv1d_as_2d(qt.fold_batchnorm(model))
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


def test_config_grid_counts_and_features():
    grid = qt.config_grid((16, 64, 256), n_layers=4)
    assert len(grid) == 180 and grid.features().shape == (180, 3 + 5 + 2 + 2 + 3)
    assert np.all(grid.features().sum(1) == 5)
    assert len({tuple(c) for c in grid.codes.tolist()}) == 180
    assert grid.config(0) == {"calib_size": 16, "calibration": "max", "scheme": "sym", "granularity": "tensor",
                              "precision": "high"}
    mixed = qt.config_grid((16,), precisions=("high", "mixed"), n_layers=3)
    assert mixed.levels[4] == ("high", "mixed:0", "mixed:1", "mixed:2") and len(mixed) == 1 * 5 * 2 * 2 * 4
    assert grid.select(calibration="max", granularity="tensor", precision="high").size == 3 * 2
    with pytest.raises(ValueError, match="The 'calibrations' parameter of config_grid"):
        qt.config_grid((16,), calibrations=("max", "entropy"))


def test_layer_bits():
    assert qt.layer_bits("high", 3) == [8, 8, 8] and qt.layer_bits("low", 2, low=5) == [5, 5]
    assert qt.layer_bits("high_fp_ends", 4) == [None, 8, 8, None]
    assert qt.layer_bits("mixed:1", 3) == [4, 8, 4]
    with pytest.raises(ValueError, match="The 'precision' parameter of layer_bits"):
        qt.layer_bits("mixed:3", 3)


def test_evaluator_matches_the_quantization_measures():
    torch.manual_seed(0)
    model = _with_random_bn_stats(PlainCNN1d(), 3)
    x = torch.randn(300, 40, generator=torch.Generator().manual_seed(4))
    ev = qt.QuantEvaluator(model, x[:64])
    assert ev.names == ["stem.0.conv", "conv2.0.conv", "conv3.0.conv", "head"]  # forward order, head last
    with torch.no_grad():
        assert torch.equal(ev.predict(None, x), qt.fold_batchnorm(model)(x).argmax(1))
    # weights: the quantize() grid; activations: calibrate_range's min-max range on the first 16 samples
    w = ev.weights("asym", "channel", 6)
    torch.testing.assert_close(w[1], quantize(ev._float_w[1], 6, symmetric=False, per_channel=True))
    (s, z) = ev.act_qparams(16, "max", "sym", 8)[0]
    lo, hi = calibrate_range(x[:16].unsqueeze(1), 8)
    torch.testing.assert_close(s.reshape(()), (hi.abs() / 127).reshape(()))
    # a 16-bit symmetric configuration changes (almost) nothing; the float weights come back afterwards
    grid = qt.config_grid((64,), ("max",), ("sym",), ("channel",), ("high",))
    ev16 = qt.QuantEvaluator(model, x[:64], high=16)
    agree = (ev16.evaluate(grid, x)[0] == ev16.predict(None, x).numpy()).mean()
    assert agree > 0.99
    assert all(torch.equal(m.weight, w0) for m, w0 in zip(ev16.mods, ev16._float_w))


def test_searches_are_seeded_and_find_the_target():
    rng = np.random.default_rng(0)
    grid = qt.config_grid((16, 64, 256), n_layers=4)
    # a smooth synthetic landscape: a known best gene per dimension, accuracy falls with the distance to it
    values = 0.9 - 0.02 * np.abs(grid.codes - np.array([2, 3, 1, 1, 0])).sum(1) + rng.normal(0, 1e-3, len(grid))
    target = values >= values.max() - 1e-9
    feats = grid.features()
    for search in (
        lambda g: qt.random_search(target, generator=g),
        lambda g: qt.genetic_search(grid.codes, values, target, generator=g),
        lambda g: qt.xgb_search(feats, values, target, generator=g),
    ):
        a, b = search(np.random.default_rng(5)), search(np.random.default_rng(5))
        assert np.array_equal(a, b)  # same generator → same evaluation order
        assert len(set(a.tolist())) == len(a) and target[a[-1]]  # distinct evaluations, stops at the target
        assert qt.evals_to_target(a, target) == len(a)
    ranks = [qt.evals_to_target(qt.xgb_search(feats, values, target, generator=s), target) for s in range(5)]
    rand = [qt.evals_to_target(qt.random_search(target, generator=s), target) for s in range(5)]
    assert np.mean(ranks) < np.mean(rand)  # on a smooth landscape the surrogate helps
    order = qt.random_search(target, min_evals=50, generator=1)
    assert len(order) >= 50
    with pytest.raises(ValueError, match="The 'target' parameter"):
        qt.random_search(np.zeros(5, dtype=bool))
