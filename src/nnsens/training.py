"""The one training loop: fit and evaluate any classifier, device-agnostic and seeded."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 1e-3,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    objective: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | int | None | Sequence[torch.Generator | int] = None,
    on_step: Callable[[nn.Module, int], None] | None = None,
    before_step: Callable[[nn.Module, int], None] | None = None,
    after_step: Callable[[nn.Module, int], None] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``(x, y)`` with minibatches drawn by ``generator``; return per-epoch mean loss.

    Parameters
    ----------
    optimizer : {"adam", "sgd"}
    schedule : {"constant", "linear"}
        ``"linear"`` decays the learning rate linearly to 0 over all steps.
    generator : torch.Generator or int, optional
        Controls the data order only (initialization is the caller's business), so data-order and init seeds can
        be varied independently.

        A list or tuple of ``R`` generators (or ints) switches on *batched* training of ``R`` independent members
        (e.g. :class:`nnsens.models.BatchedMLP`): member ``r`` draws its own order from ``generator[r]``; the model
        gets inputs of shape (R, B, d) and must return (R, B, C); the default loss is the *sum over members* of
        each member's mean cross-entropy, so each member's gradient is exactly its own, as if trained alone (a
        custom ``loss_fn`` receives the (R, B, C) logits and (R, B) targets and must keep that property). The
        returned history is then the per-epoch loss averaged over members.
    objective : callable, optional
        ``objective(model, x_batch, y_batch) -> scalar loss``, in place of ``loss_fn(model(x_batch), y_batch)``, for
        losses that need more than one forward pass or the model itself (penalties on interventions, per-sample
        gradients). Give ``loss_fn`` or ``objective``, not both.
    on_step : callable, optional
        Called as ``on_step(model, step)`` before each optimizer step's forward pass (e.g. P21's weight poke).
    before_step : callable, optional
        Called as ``before_step(model, step)`` after the backward pass, before the optimizer step, with the gradients
        in ``p.grad``: the place to transform them (clipping and noise of private training).
    after_step : callable, optional
        Called as ``after_step(model, step)`` right after each optimizer step (e.g. storing the weights in a
        low-precision format, :func:`nnsens.measures.precision.weight_rounding_hook`).
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"The 'optimizer' parameter of fit must be one of 'adam', 'sgd'. Got {optimizer!r} instead.")
    if schedule not in ("constant", "linear"):
        raise ValueError(f"The 'schedule' parameter of fit must be one of 'constant', 'linear'. Got {schedule!r}.")
    if loss_fn is not None and objective is not None:
        raise ValueError("fit takes 'loss_fn' or 'objective', not both.")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"fit needs epochs >= 0 and batch_size >= 1. Got epochs={epochs}, batch_size={batch_size}.")
    batched = isinstance(generator, (list, tuple))
    if batched:
        if len(generator) < 1:
            raise ValueError("The 'generator' parameter of fit, given as a sequence, needs at least 1 entry. Got 0.")
        gens = [g if isinstance(g, torch.Generator) else torch.Generator().manual_seed(int(g)) for g in generator]
        n_members = len(gens)
        loss_fn = loss_fn or _member_sum_cross_entropy
    else:
        gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(
            int(generator or 0)
        )
        n_members = 1
        loss_fn = loss_fn or nn.functional.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = x.shape[0]
    steps_per_epoch = (n + batch_size - 1) // batch_size
    total = max(1, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 1.0 - s / total) if schedule == "linear" else (lambda s: 1.0)
    )
    history, step = [], 0
    model.train()
    for _ in range(epochs):
        if batched:  # (R, n): one permutation per member
            order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(x.device)
        else:
            order = torch.randperm(n, generator=gen).to(x.device)
        total_loss = 0.0
        for i in range(0, n, batch_size):
            idx = order[..., i : i + batch_size]  # (B,) or (R, B); x[idx] is (B, d) or (R, B, d)
            if on_step is not None:
                on_step(model, step)
            xb, yb = x[idx], y[idx]
            loss = objective(model, xb, yb) if objective is not None else loss_fn(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step(model, step)
            opt.step()
            if after_step is not None:
                after_step(model, step)
            sched.step()
            total_loss += loss.item() * idx.shape[-1] / n_members
            step += 1
        history.append(total_loss / n)
    model.eval()
    return history


def _member_sum_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Sum over members of each member's mean cross-entropy: logits (R, B, C), targets (R, B) -> scalar."""
    r, b, c = logits.shape
    per_example = nn.functional.cross_entropy(logits.reshape(r * b, c), y.reshape(r * b), reduction="none")
    return per_example.view(r, b).mean(dim=1).sum()


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, *, batch_size: int = 4096, dim: int = 0) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, in chunks of ``x``'s rows; restores the model's training flag.

    ``dim`` is the output dimension that indexes the examples (1 for a batched model returning (R, B, C)).
    """
    was = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)], dim=dim)
    model.train(was)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    return (predict(model, x).argmax(1) == y).float().mean().item()


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Cross-entropy loss and accuracy on ``(x, y)``."""
    logits = predict(model, x)
    return {
        "loss": nn.functional.cross_entropy(logits, y).item(),
        "accuracy": (logits.argmax(1) == y).float().mean().item(),
    }
