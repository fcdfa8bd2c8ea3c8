"""Loss-based sensitivity scores: closed forms, torch.func cross-checks, degenerate and bad-argument cases."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from nnsens.measures import (
    gradient_sensitivity,
    loss_gradient,
    obd_saliency,
    snip_scores,
    taylor_sensitivity,
)
from nnsens.models import MLP


def _mse(z, y):
    return 0.5 * ((z.squeeze(-1) - y) ** 2).mean()


@pytest.fixture
def linear():
    """f(x) = wᵀx (no bias) with L = ½ mean (wᵀx − y)²: ∂L/∂w = Xᵀ(Xw − y)/N and H = XᵀX/N exactly."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(32, generator=gen, dtype=torch.float64)
    model = nn.Linear(5, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, 5, generator=gen, dtype=torch.float64))
    return model, x, y


def test_closed_forms_on_a_quadratic_loss(linear):
    model, x, y = linear
    w = model.weight.detach()[0]
    g = x.T @ (x @ w - y) / x.shape[0]
    h = x.T @ x / x.shape[0]
    torch.testing.assert_close(loss_gradient(model, x, target=y, loss_fn=_mse)["weight"][0], g)
    torch.testing.assert_close(gradient_sensitivity(model, x, target=y, loss_fn=_mse)["weight"][0], g.abs())
    torch.testing.assert_close(taylor_sensitivity(model, x, target=y, loss_fn=_mse)["weight"][0], (w * g).abs())
    snip = snip_scores(model, x, target=y, loss_fn=_mse)["weight"][0]
    torch.testing.assert_close(snip, (w * g).abs() / (w * g).abs().sum())
    for curv in ("gauss_newton", "hessian"):  # a linear model: Gauss–Newton = Hessian = XᵀX/N
        sal, diag = obd_saliency(model, x, target=y, loss_fn=_mse, curvature=curv, return_curvature=True)
        torch.testing.assert_close(diag["weight"][0], torch.diagonal(h))
        torch.testing.assert_close(sal["weight"][0], 0.5 * torch.diagonal(h) * w**2)


def _tiny_relu_net():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        net = MLP((4, 6, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (20,), generator=gen)
    return net, x, y


def test_obd_diagonal_matches_torch_func_hessian():
    """On a ReLU net the Hessian diagonal equals the Gauss–Newton diagonal (outputs multilinear in the weights)."""
    net, x, y = _tiny_relu_net()
    params = {k: v.detach() for k, v in net.named_parameters()}
    for name, p in params.items():
        def loss_of(t, name=name):
            return nn.functional.cross_entropy(functional_call(net, {**params, name: t}, (x,)), y)

        h = hessian(loss_of)(p).reshape(p.numel(), p.numel())
        ref = torch.diagonal(h).reshape(p.shape)
        _, gn = obd_saliency(net, x, target=y, return_curvature=True, internal_batch_size=7)
        _, ex = obd_saliency(net, x, target=y, params=[name], curvature="hessian", return_curvature=True)
        torch.testing.assert_close(gn[name], ref)
        torch.testing.assert_close(ex[name], ref)


def test_gauss_newton_differs_from_hessian_with_a_smooth_nonlinearity():
    """With tanh the dropped term is not zero: the two curvature options are genuinely different."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (10,), generator=gen)
    _, gn = obd_saliency(net, x, target=y, params="0.weight", return_curvature=True)
    _, ex = obd_saliency(net, x, target=y, params="0.weight", curvature="hessian", return_curvature=True)
    assert not torch.allclose(gn["0.weight"], ex["0.weight"])
    assert (gn["0.weight"] >= 0).all()  # Gauss–Newton is positive semi-definite


def test_batched_equals_unbatched_and_no_side_effects():
    net, x, y = _tiny_relu_net()
    net.train()
    a = taylor_sensitivity(net, x, target=y)
    b = taylor_sensitivity(net, x, target=y, internal_batch_size=3)
    for k in a:
        torch.testing.assert_close(a[k], b[k])
        assert a[k].shape == dict(net.named_parameters())[k].shape
    assert net.training and all(p.grad is None for p in net.parameters())


def test_constant_model_has_zero_sensitivity():
    net = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    for f in (taylor_sensitivity, snip_scores, obd_saliency):
        s = f(net, x, target=y)
        assert all(float(v.abs().sum()) == 0.0 for v in s.values())


def test_float32_inputs_follow_dtype():
    net, x, y = _tiny_relu_net()
    s = gradient_sensitivity(net.float(), x.float(), target=y)
    assert all(v.dtype == torch.float32 for v in s.values())


@pytest.mark.parametrize(
    "kwargs, err, msg",
    [
        ({"internal_batch_size": 0}, ValueError,
         "The 'internal_batch_size' parameter of obd_saliency must be an int in [1, inf) or None. Got 0 instead."),
        ({"curvature": "fisher"}, ValueError, "The 'curvature' parameter of obd_saliency must be one of"),
        ({"params": ["nope"]}, ValueError, "The 'params' parameter of obd_saliency must name parameters"),
        ({"target": torch.zeros(3, dtype=torch.long)}, ValueError, "The 'target' parameter of obd_saliency"),
        ({"target": [0, 1]}, TypeError, "The 'target' parameter of obd_saliency must be a torch.Tensor"),
    ],
)
def test_bad_arguments(kwargs, err, msg):
    net, x, y = _tiny_relu_net()
    kw = {"target": y, **kwargs}
    with pytest.raises(err) as e:
        obd_saliency(net, x, **kw)
    assert msg in str(e.value)


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="The 'model' parameter of gradient_sensitivity"):
        gradient_sensitivity(lambda x: x, torch.zeros(2, 2), target=torch.zeros(2))
