"""TCAV measures: CAVs, layer gradients, directional derivatives, scores, significance; Captum cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnsens.measures.concepts import (
    directional_derivatives,
    layer_activations,
    layer_gradients,
    tcav_scores,
    tcav_significance,
    train_cav,
)


def _net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_train_cav_recovers_a_planted_direction():
    g = torch.Generator().manual_seed(0)
    w = torch.tensor([1.0, -2.0, 0.0, 0.5])
    w = w / w.norm()
    concept = torch.randn(200, 4, generator=g) + 2 * w
    random = torch.randn(200, 4, generator=g) - 2 * w
    cav = train_cav(concept, random)
    assert torch.isclose(cav.direction.norm(), torch.tensor(1.0))
    assert float(cav.direction @ w) > 0.97 and cav.accuracy > 0.95  # oriented towards the concept


def test_layer_gradients_closed_form_on_a_linear_head():
    net = _net()
    x = torch.randn(5, 6)
    (g,) = layer_gradients(net, x, target=2, layers=[net[1]])
    assert torch.allclose(g, net[2].weight[2].expand(5, -1))  # ∂(W h + b)_2 / ∂h = W[2]
    (a,) = layer_activations(net, x, layers=net[1])
    assert torch.allclose(a, torch.relu(net[0](x)))


def test_batched_equals_unbatched_and_per_example_targets():
    net = _net(1)
    x = torch.randn(9, 6)
    t = torch.tensor([0, 1, 2] * 3)
    full = layer_gradients(net, x, target=t, layers=[net[0], net[1]])
    part = layer_gradients(net, x, target=t, layers=[net[0], net[1]], internal_batch_size=4)
    for a, b in zip(full, part):
        assert torch.allclose(a, b)
    assert net.training  # restored


def test_constant_model_has_zero_derivatives_and_zero_scores():
    net = _net()
    with torch.no_grad():
        net[2].weight.zero_()
    (g,) = layer_gradients(net, torch.randn(4, 6), target=0, layers=[net[1]])
    assert torch.all(g == 0)
    assert torch.all(tcav_scores(g, torch.randn(3, 8)) == 0)


def test_scores_and_derivatives_shapes():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert directional_derivatives(g, v).shape == (4, 2)
    assert torch.allclose(tcav_scores(g, v), torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match="directional_derivatives needs"):
        directional_derivatives(g, torch.ones(3))


def test_significance():
    t, p = tcav_significance([0.9, 0.95, 1.0, 0.92], [0.4, 0.6, 0.5, 0.55])
    assert t > 0 and p < 0.01
    from scipy.stats import ttest_ind
    assert np.isclose(p, ttest_ind([0.9, 0.95, 1.0, 0.92], [0.4, 0.6, 0.5, 0.55]).pvalue)
    assert tcav_significance([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)
    assert tcav_significance([1.0, 1.0], [0.0, 0.0])[1] == 0.0
    with pytest.raises(ValueError, match="at least 2 scores"):
        tcav_significance([1.0], [0.0, 0.5])


def test_validation_messages():
    net = _net()
    with pytest.raises(ValueError, match="The 'layers' parameter of layer_gradients"):
        layer_gradients(net, torch.randn(2, 6), target=0, layers=[nn.ReLU()])
    with pytest.raises(ValueError, match="The 'target' parameter of layer_gradients"):
        layer_gradients(net, torch.randn(2, 6), target=torch.tensor([0, 1, 2]), layers=[net[1]])
    with pytest.raises(ValueError, match="The 'internal_batch_size' parameter of layer_activations"):
        layer_activations(net, torch.randn(2, 6), layers=[net[1]], internal_batch_size=0)
    with pytest.raises(ValueError, match="The 'test_fraction' parameter of train_cav"):
        train_cav(torch.randn(4, 2), torch.randn(4, 2), test_fraction=1.0)


def test_tcav_score_matches_captum(tmp_path):
    """Captum's TCAV sign-count score with the same CAV (our sklearn fit behind Captum's Classifier interface)."""
    from captum.concept import TCAV, Concept
    from captum.concept._utils.classifier import Classifier
    from captum.concept._utils.data_iterator import dataset_to_dataloader

    class OurCAV(Classifier):
        def __init__(self):
            self.labels, self.cav = [], None

        def train_and_eval(self, dataloader, **kwargs):
            xs, ys = zip(*dataloader)
            x, y = torch.cat(xs), torch.cat(ys)
            self.labels = sorted(set(y.tolist()))
            # Captum's row for label 0 (the concept) is the direction towards it
            self.cav = train_cav(x[y == self.labels[0]], x[y == self.labels[1]], test_fraction=0.0)
            return {"accs": torch.tensor(1.0)}

        def weights(self):
            return torch.stack([self.cav.direction, -self.cav.direction])

        def classes(self):
            return self.labels

    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    concept_x = torch.randn(40, 6, generator=g) + 1.0
    random_x = torch.randn(40, 6, generator=g)
    inputs = torch.randn(30, 6, generator=g)
    concept = Concept(0, "concept", dataset_to_dataloader(concept_x, batch_size=10))
    random = Concept(1, "random", dataset_to_dataloader(random_x, batch_size=10))
    tcav = TCAV(net, ["1"], classifier=OurCAV(), save_path=str(tmp_path))
    out = tcav.interpret(inputs, experimental_sets=[[concept, random]], target=0)
    theirs = float(out["0-1"]["1"]["sign_count"][0])

    (a_c, a_r) = (layer_activations(net, t, layers=[net[1]])[0] for t in (concept_x, random_x))
    cav = train_cav(a_c, a_r, test_fraction=0.0)
    (grads,) = layer_gradients(net, inputs, target=0, layers=[net[1]])
    ours = float(tcav_scores(grads, cav.direction))
    assert 0.0 < ours < 1.0
    assert ours == pytest.approx(theirs, abs=1e-6)
