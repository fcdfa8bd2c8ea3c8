"""fit's objective and before_step hooks: the same step as the plain loop when they do nothing special."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnsens.models import MLP
from nnsens.training import fit


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)


def _model():
    torch.manual_seed(1)
    return MLP((5, 8, 3))


def test_objective_equals_loss_fn_path():
    x, y = _data()
    a, b = _model(), _model()
    fit(a, x, y, epochs=2, batch_size=16, generator=3)
    fit(b, x, y, epochs=2, batch_size=16, generator=3,
        objective=lambda m, xb, yb: nn.functional.cross_entropy(m(xb), yb))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_before_step_sees_gradients_and_can_replace_them():
    x, y = _data()
    m = _model()
    before = [p.detach().clone() for p in m.parameters()]
    seen = []

    def zero_grads(model, step):
        seen.append(all(p.grad is not None for p in model.parameters()))
        for p in model.parameters():
            p.grad.zero_()

    fit(m, x, y, epochs=1, batch_size=16, optimizer="sgd", momentum=0.0, generator=0, before_step=zero_grads)
    assert seen == [True] * 4
    for p, q in zip(before, m.parameters()):
        torch.testing.assert_close(p, q)  # zero gradients: SGD leaves the weights alone


def test_loss_fn_and_objective_are_exclusive():
    x, y = _data()
    with pytest.raises(ValueError, match="'loss_fn' or 'objective'"):
        fit(_model(), x, y, loss_fn=nn.functional.cross_entropy, objective=lambda m, a, b: m(a).sum())
