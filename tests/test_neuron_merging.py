"""Neuron merging by cosine similarity (nnsens.methods.neuron_merging): exact for proportional ReLU units, greedy
choice of the most similar pair, weight budgets."""

from __future__ import annotations

import pytest
import torch

from nnsens.methods.neuron_merging import merge_neurons, merge_plan, widths_for_budget
from nnsens.models import MLP
from nnsens.training import predict


def _net():
    torch.manual_seed(0)
    return MLP((4, 6, 5, 3)).double()


def test_proportional_units_merge_exactly():
    """Units 4 and 5 of layer 0 are positive multiples of units 1 and 2: merging both leaves the function as is."""
    net = _net()
    with torch.no_grad():
        net[0].weight[4] = 2.5 * net[0].weight[1]
        net[0].bias[4] = 2.5 * net[0].bias[1]
        net[0].weight[5] = 0.4 * net[0].weight[2]
        net[0].bias[5] = 0.4 * net[0].bias[2]
    x = torch.randn(50, 4, dtype=torch.float64)
    small = merge_neurons(net, {"0": 4})
    assert small[0].out_features == 4 and small[2].in_features == 4
    torch.testing.assert_close(predict(small, x), predict(net, x))
    plan = merge_plan(net[0].weight, net[0].bias, 4)
    assert {(j, i) for j, i, _ in plan.merges} == {(1, 4), (5, 2)}  # the smaller-norm unit is folded in
    assert plan.keep.tolist() == [0, 2, 3, 4]
    scales = {(j, i): s for j, i, s in plan.merges}
    assert scales[(1, 4)] == pytest.approx(1 / 2.5) and scales[(5, 2)] == pytest.approx(0.4)


def test_two_layers_and_original_untouched():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    small = merge_neurons(net, {"0": 3, "2": 2})
    assert [m.out_features for m in small if isinstance(m, torch.nn.Linear)] == [3, 2, 3]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_merge_plan_keep_all_is_identity():
    w = torch.randn(5, 3)
    plan = merge_plan(w, None, 5)
    assert plan.merges == () and plan.keep.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("budget", [75, 500, 5020, 25100, 50200])
def test_widths_for_budget(budget):
    sizes = widths_for_budget((64, 300, 100, 10), budget)
    count = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert sizes[0] == 64 and sizes[-1] == 10
    assert count <= budget and (budget < 5000 or count >= 0.97 * budget)
    assert widths_for_budget((64, 300, 100, 10), 50200) == (64, 300, 100, 10)


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda: merge_plan(torch.ones(3, 2), None, 0), "The 'n_keep' parameter of merge_plan must be an int in [1"),
        (lambda: merge_plan(torch.ones(3), None, 1), "The 'weight' parameter of merge_plan must be a 2-D tensor"),
        (lambda: merge_neurons(_net(), {"4": 2}), "The 'widths' parameter of merge_neurons must name hidden layers"),
        (lambda: widths_for_budget((4, 3), 10), "needs a hidden layer"),
    ],
)
def test_validation(call, msg):
    with pytest.raises(ValueError) as err:
        call()
    assert msg in str(err.value)
