"""Optimal Brain Surgeon on one layer (nnsens.methods.obs): against brute force on tiny layers and exact quadratics,
the Hessian against the HVP helper, the fast Gauss–Newton diagonal against obd_saliency."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from nnsens.measures.hessian import exact_hessian
from nnsens.measures.loss_sensitivity import obd_saliency
from nnsens.methods.obs import (
    iterative_obs,
    layer_objective,
    linear_gauss_newton_diagonal,
    magnitude_path,
    obs_downdate,
    obs_saliency,
    obs_step,
)
from nnsens.models import MLP

LAM = 0.05


def _spd(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T / n + 0.3 * torch.eye(n, dtype=torch.float64)


@pytest.fixture(scope="module")
def tiny():
    """A 3-4-3 MLP in float64 whose output layer (3×4 = 12 weights) sits at the minimum of its objective."""
    torch.manual_seed(0)
    net = MLP((3, 4, 3)).double()
    x = torch.randn(40, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (40,))
    obj = layer_objective(net, x, target=y, layer="2", weight_decay=LAM)
    with torch.no_grad():
        net[2].weight.copy_(obj.minimise().reshape(3, 4))
    return net, x, y, layer_objective(net, x, target=y, layer="2", weight_decay=LAM)


def test_minimum_and_hessian_match_the_hvp_helper(tiny):
    net, x, y, obj = tiny
    assert float(obj.gradient().norm()) < 1e-7
    h = obj.hessian()
    ref = exact_hessian(net, x, target=y, param="2.weight")  # the unregularised loss, row by row with HVPs
    torch.testing.assert_close(h, ref + LAM * torch.eye(12, dtype=torch.float64), rtol=1e-8, atol=1e-10)
    assert torch.linalg.eigvalsh(h).min() >= LAM * (1 - 1e-9)  # softmax's null space is lifted by exactly λ


def test_obs_step_is_the_brute_force_constrained_minimiser():
    """On q(δ) = ½δᵀHδ, deleting w_q: minimise over the other coordinates by solving their linear system."""
    n = 6
    h = _spd(n)
    w = torch.linspace(-1.0, 1.2, n, dtype=torch.float64)
    hinv = torch.linalg.inv(h)
    for q in range(n):
        rest = [i for i in range(n) if i != q]
        delta = torch.zeros(n, dtype=torch.float64)
        delta[q] = -w[q]
        delta[rest] = -torch.linalg.solve(h[rest][:, rest], h[rest, q] * delta[q])
        torch.testing.assert_close(obs_step(w, hinv, q), w + delta)
        assert float(obs_saliency(w, hinv)[q]) == pytest.approx(float(0.5 * delta @ h @ delta), rel=1e-10)
    assert obs_step(w, hinv, 2)[2] == 0.0


def test_downdate_is_the_inverse_of_the_remaining_block():
    h = _spd(7, seed=1)
    hi = torch.linalg.inv(h)
    for q in (0, 3, 6):
        out = obs_downdate(hi, q)
        rest = [i for i in range(7) if i != q]
        torch.testing.assert_close(out[rest][:, rest], torch.linalg.inv(h[rest][:, rest]))
        assert out[q].abs().max() == 0 and out[:, q].abs().max() == 0
    torch.testing.assert_close(hi, torch.linalg.inv(h))  # the input is not modified


def test_iterative_obs_on_a_quadratic_matches_brute_force():
    """f(w) = ½(w − w0)ᵀH(w − w0): every greedy choice is the deletion of least exact increase (all candidates
    tried), and after k deletions the weights are f's exact minimiser with those k weights held at zero."""
    n = 6
    h = _spd(n, seed=2)
    w0 = torch.tensor([0.1, -2.0, 0.05, 1.5, -0.3, 0.8], dtype=torch.float64)
    f = lambda w: 0.5 * (w - w0) @ h @ (w - w0)  # noqa: E731
    path = iterative_obs(w0, torch.linalg.inv(h), [1, 2, 3, 4])

    def restricted_min(dead):
        live = [i for i in range(n) if i not in dead]
        w = torch.zeros(n, dtype=torch.float64)
        w[live] = w0[live] + torch.linalg.solve(h[live][:, live], -(h[live][:, dead] @ (-w0[dead])))
        return w

    dead: list[int] = []
    for k in range(1, 5):
        cands = {q: float(f(restricted_min(dead + [q]))) for q in range(n) if q not in dead}
        best = min(cands, key=cands.get)
        assert int(path.order[k - 1]) == best
        dead.append(best)
        torch.testing.assert_close(path.weights[k], restricted_min(dead))
        assert float(path.predicted[k - 1]) == pytest.approx(cands[best] - float(f(restricted_min(dead[:-1]))))
    # the greedy set after 2 deletions is also the best pair here (brute force over all pairs)
    pairs = {p: float(f(restricted_min(list(p)))) for p in itertools.combinations(range(n), 2)}
    assert set(path.order[:2].tolist()) == set(min(pairs, key=pairs.get))


def test_real_objective_prediction_close_for_the_cheapest_weight(tiny):
    _, _, _, obj = tiny
    w, hinv = obj.weights, torch.linalg.inv(obj.hessian())
    sal = obs_saliency(w, hinv)
    q = int(sal.argmin())
    actual = float(obj.value(obs_step(w, hinv, q)) - obj.value())
    assert actual == pytest.approx(float(sal[q]), rel=0.2)


def test_magnitude_path_zeroes_the_smallest():
    w = torch.tensor([0.3, -0.1, 2.0, -0.05])
    out = magnitude_path(w, [0, 2])
    assert torch.equal(out[0], w) and out[2].tolist() == pytest.approx([0.3, 0.0, 2.0, 0.0])


def test_gauss_newton_diagonal_equals_obd_curvature():
    torch.manual_seed(1)
    net = MLP((5, 7, 4, 3)).double()
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randint(0, 3, (20,))
    net.train()
    fast = linear_gauss_newton_diagonal(net, x, target=y)
    names = ["0.weight", "2.weight", "4.weight"]
    _, ref = obd_saliency(net, x, target=y, params=names, return_curvature=True)
    for n in names:
        torch.testing.assert_close(fast[n], ref[n], rtol=1e-10, atol=1e-14)
    assert net.training and all(p.grad is None for p in net.parameters())
    # batched = unbatched: the diagonal is the mean of the halves' diagonals
    a = linear_gauss_newton_diagonal(net, x[:10], target=y[:10])
    b = linear_gauss_newton_diagonal(net, x[10:], target=y[10:])
    torch.testing.assert_close(fast["2.weight"], (a["2.weight"] + b["2.weight"]) / 2)


def test_no_side_effects_and_constant_model(tiny):
    net, x, y, _ = tiny
    before = copy.deepcopy(net.state_dict())
    net.train()
    layer_objective(net, x, target=y, layer="2", weight_decay=LAM).hessian()
    assert net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    zero = copy.deepcopy(net)
    with torch.no_grad():
        zero[0].weight.zero_()
        zero[0].bias.zero_()  # constant features → the output layer's weights do not matter: H = λI exactly
    h = layer_objective(zero, x, target=y, layer="2", weight_decay=LAM).hessian()
    torch.testing.assert_close(h, LAM * torch.eye(12, dtype=torch.float64))


@pytest.mark.parametrize(
    "call, msg",
    [
        (lambda net, x, y: layer_objective(net, x, target=y, layer="0"), "must name the output layer"),
        (lambda net, x, y: layer_objective(net, x, target=y, layer="1"), "must name an nn.Linear module"),
        (lambda net, x, y: layer_objective(net, x, target=y, layer="2", weight_decay=-1.0),
         "The 'weight_decay' parameter of layer_objective must be a float in [0, inf). Got -1.0 instead."),
        (lambda net, x, y: obs_step(torch.ones(3), torch.eye(3), 3), "The 'q' parameter of obs_step must be an int"),
        (lambda net, x, y: obs_saliency(torch.ones(3), torch.eye(2)), "The 'hinv' parameter of obs_saliency"),
        (lambda net, x, y: iterative_obs(torch.ones(3), torch.eye(3), [4]), "The 'counts' parameter of iterative_obs"),
    ],
)
def test_validation(tiny, call, msg):
    net, x, y, _ = tiny
    with pytest.raises(ValueError) as err:
        call(net, x, y)
    assert msg in str(err.value)
