"""arXiv 2011.09905 — LOBSTER: LOss-Based SensiTivity rEgulaRization for sparse networks (Tartaglione et al.).

The method, as the official code (github.com/EIDOSLAB/LOBSTER) runs it:

- **Regularised update.** After each SGD step, every parameter of the Linear/Conv layers (weights and biases) is
  shrunk in proportion to its *insensitivity*: w ← w − λ·w·ReLU(1 − |∂L/∂w|), with ∂L/∂w the minibatch gradient
  of that step (:class:`Lobster`). A parameter the loss is sensitive to (|∂L/∂w| ≥ 1) is left alone; an
  insensitive one decays towards 0, like decoupled weight decay of strength λ.
- **Pruning schedule.** After each epoch the validation loss feeds a plateau detector (:class:`Plateau`: an
  epoch is "bad" when the loss has not improved on the best by 1 % (relative), as P03's design states; the
  repository's own comparison, bad only when ≥ 1 % *above* the best, is ``rule="repo"``; after ``pwe`` bad
  epochs the best weights are restored). At a plateau, :func:`bisect_threshold` finds the largest magnitude
  threshold T whose pruned model's validation loss stays ≤ (1 + twt) × the restored model's, and every
  parameter with |w| < T is set to 0 and stays 0 (entries that are zero at the start of an epoch are masked
  after every update).
- :func:`train_sparse` runs this, or its comparisons (plain SGD; L2 + iterative magnitude pruning; LOBSTER with
  the sensitivities shuffled across parameters at every step), through :func:`nnsens.training.fit`, one epoch
  per call (plain SGD without momentum keeps no optimizer state, so per-epoch calls equal one long run).

Differences from the repository: no ReduceLROnPlateau on the learning rate (constant lr); a cap of 60 bisection
steps; an optional ``target`` sparsity at which the first pruning step that reaches it prunes to exactly the target
(by magnitude) and freezes the mask, so that methods can be compared at matched sparsity (P03's claim 2).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nnsens.measures._checks import check_float
from nnsens.methods.pruning import magnitude_scores, masks_from_scores, prunable
from nnsens.training import evaluate, fit

METHODS = ("dense", "lobster", "shuffled", "l2_imp")


class Lobster:
    """The LOBSTER regulariser: call :meth:`step` right after an optimizer step, while ``p.grad`` holds that
    step's gradient.

    Parameters
    ----------
    model : nn.Module
    lmbda : float
        λ ≥ 0, the shrinkage per step of a fully insensitive parameter (relative).
    params : sequence of str, optional
        Regularised parameters (default: weights and biases of all Linear/Conv layers, as the repository).
    shuffle : bool
        Ablation: permute the sensitivities |∂L/∂w| across all regularised entries at every step.
    generator : torch.Generator or int, optional
        Draws the permutations of the ablation.
    """

    def __init__(
        self,
        model: nn.Module,
        lmbda: float,
        *,
        params: Sequence[str] | None = None,
        shuffle: bool = False,
        generator: torch.Generator | int | None = None,
    ) -> None:
        self.lmbda = check_float(lmbda, "lmbda", "Lobster", low_open=False)
        named = dict(model.named_parameters())
        names = prunable(model, bias=True) if params is None else list(params)
        unknown = [n for n in names if n not in named]
        if unknown:
            raise ValueError(f"The 'params' parameter of Lobster must name parameters of the model. Got {unknown!r}.")
        self.names = names
        self.params = [named[n] for n in names]
        self.shuffle = bool(shuffle)
        self.gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(
            int(generator or 0))
        self._n_small: torch.Tensor | int = 0  # updates whose insensitivity ReLU(1 − |g|) is < 0.99 (a tensor:
        self._n_updates: torch.Tensor | int = 0  # no device sync per step)

    @property
    def n_small(self) -> int:
        return int(self._n_small)

    @property
    def n_updates(self) -> int:
        return int(self._n_updates)

    @torch.no_grad()
    def step(self, masks: dict[str, torch.Tensor] | None = None) -> None:
        """w ← w − λ·w·ReLU(1 − |∂L/∂w|), then w ← w ⊙ mask (masked entries count as no update)."""
        grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in self.params]
        sens = [g.abs() for g in grads]
        if self.shuffle:  # one permutation across all regularised entries
            flat = torch.cat([s.reshape(-1) for s in sens])
            perm = torch.randperm(flat.numel(), generator=self.gen).to(flat.device)
            flat = flat[perm]
            sens, i = [], 0
            for p in self.params:
                sens.append(flat[i : i + p.numel()].reshape(p.shape))
                i += p.numel()
        for name, p, s in zip(self.names, self.params, sens, strict=True):
            insens = (1.0 - s).clamp_(min=0.0)  # ReLU(1 − |g|)
            p.addcmul_(p, insens, value=-self.lmbda)  # w ← w − λ·w·ReLU(1 − |g|)
            small = insens < 0.99
            m = None if masks is None else masks.get(name)
            if m is not None:
                p.mul_(m)
                small &= m.bool()
                self._n_updates += m.sum()
            else:
                self._n_updates += p.numel()
            self._n_small += small.sum()

    @property
    def small_fraction(self) -> float:
        """Fraction of (unmasked) updates where ReLU(1 − |∂L/∂w|) < 0.99, i.e. where sensitivity mattered."""
        return self.n_small / self.n_updates if self.n_updates else float("nan")


class Plateau:
    """Plateau detector: after ``pwe`` consecutive bad epochs the best model seen since the last plateau is
    restored and :meth:`step` returns True.

    ``rule="improve"`` (P03's pre-registered design): an epoch is bad unless the loss improves on the best by
    more than ``tolerance`` (relative), ``loss < (1 − tolerance)·best``. ``rule="repo"``: the official code's
    comparison, where an epoch is bad only when ``loss ≥ (1 + tolerance)·best`` (so pruning waits for the
    validation loss to *rise*).
    """

    def __init__(self, pwe: int, tolerance: float = 0.01, rule: str = "improve") -> None:
        if not (isinstance(pwe, int) and pwe >= 1):
            raise ValueError(f"The 'pwe' parameter of Plateau must be an int in [1, inf). Got {pwe!r} instead.")
        if rule not in ("improve", "repo"):
            raise ValueError(f"The 'rule' parameter of Plateau must be one of 'improve', 'repo'. Got {rule!r}.")
        self.pwe, self.tolerance, self.rule = pwe, tolerance, rule
        self._reset()

    def _reset(self) -> None:
        self.best, self.best_state, self.bad = math.inf, None, 0

    def step(self, loss: float, model: nn.Module) -> bool:
        good = loss < self.best * (1 - self.tolerance) if self.rule == "improve" else \
            loss < self.best * (1 + self.tolerance)
        if loss < self.best:
            self.best, self.best_state = loss, copy.deepcopy(model.state_dict())
        if good:
            self.bad = 0
        else:
            self.bad += 1
        if self.bad >= self.pwe:
            model.load_state_dict(self.best_state)
            self._reset()
            return True
        return False


@torch.no_grad()
def magnitude_threshold(model: nn.Module, names: Sequence[str], threshold: float) -> None:
    """Set every entry with |w| < threshold to 0, in place."""
    named = dict(model.named_parameters())
    for n in names:
        p = named[n]
        p.masked_fill_(p.abs() < threshold, 0.0)


def bisect_threshold(
    model: nn.Module, names: Sequence[str], loss_of: Callable[[nn.Module], float], twt: float,
    *, delta: float = 0.05, max_iter: int = 60,
) -> float:
    """The largest magnitude threshold T whose pruned model has loss ≤ (1 + twt) × the current model's (the
    repository's bisection, started from the mean nonzero |w| of the weight tensors; stops when the losses at the
    two ends differ by less than ``delta`` × the bound). The model is left unchanged."""
    named = dict(model.named_parameters())
    weights = [named[n].detach().abs() for n in names if n.endswith("weight")]
    nz = [w[w != 0] for w in weights if (w != 0).any()]
    if not nz:
        return 0.0
    state = copy.deepcopy(model.state_dict())
    base = loss_of(model)
    bound = base * (1 + twt)

    def pruned_loss(t: float) -> float:
        magnitude_threshold(model, names, t)
        out = loss_of(model)
        model.load_state_dict(state)
        return out

    mean_t = float(sum(float(w.mean()) for w in nz) / len(nz))
    loss_mean = pruned_loss(mean_t)
    if loss_mean < bound:
        a, loss_a, b, loss_b = mean_t, loss_mean, max(float(w.max()) for w in nz), math.inf
    else:
        a, loss_a, b, loss_b = min(float(w.min()) for w in nz), base, mean_t, loss_mean
    prev = math.inf
    for _ in range(max_iter):
        if abs(loss_a - loss_b) < bound * delta:
            return (a + b) / 2
        c = (a + b) / 2
        if abs(prev - c) <= 1e-10:
            return a
        prev = c
        loss_c = pruned_loss(c)
        if loss_c <= bound:
            a, loss_a = c, loss_c
        else:
            b, loss_b = c, loss_c
    return a


@dataclass
class SparseRun:
    """What :func:`train_sparse` records."""

    method: str
    sparsity: list[float] = field(default_factory=list)  # after each epoch, over the regularised parameters
    val_loss: list[float] = field(default_factory=list)
    prune_epochs: list[int] = field(default_factory=list)
    reached_epoch: int = -1  # epoch at which ``target`` was reached (-1: never, or no target)
    small_fraction: float = float("nan")  # LOBSTER: fraction of updates with ReLU(1 − |g|) < 0.99
    snapshot: tuple | None = None  # see ``train_sparse(snapshot_at=...)``


def _sparsity(model: nn.Module, names: Sequence[str]) -> float:
    named = dict(model.named_parameters())
    return sum(int((named[n] == 0).sum()) for n in names) / sum(named[n].numel() for n in names)


def _zero_masks(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters())
    return {n: (named[n] != 0).to(named[n].dtype) for n in names}


def prune_to(model: nn.Module, names: Sequence[str], sparsity: float) -> None:
    """Global magnitude pruning of ``names`` to exactly ``sparsity`` (already-zero entries go first)."""
    masks = masks_from_scores(magnitude_scores(model, names), sparsity)
    named = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            named[n].mul_(m.to(named[n].dtype))


def train_sparse(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    method: str = "lobster",
    epochs: int = 30,
    lr: float = 0.1,
    lmbda: float = 1e-4,
    weight_decay: float = 0.0,
    twt: float = 0.05,
    pwe: int = 20,
    plateau_rule: str = "improve",
    batch_size: int = 100,
    target: float | None = None,
    imp_rounds: int = 5,
    freeze: bool = False,
    snapshot_at: float | None = None,
    generator: torch.Generator | int | None = None,
) -> SparseRun:
    """Train ``model`` in place with ``method`` for ``epochs`` epochs of plain SGD (``lr``, no momentum).

    Parameters
    ----------
    method : {"dense", "lobster", "shuffled", "l2_imp"}
        ``"dense"``: SGD with ``weight_decay``, no pruning. ``"lobster"``: the LOBSTER update after every step and
        the plateau/bisection pruning schedule. ``"shuffled"``: the same with sensitivities permuted across
        parameters at every step. ``"l2_imp"``: SGD with L2 ``weight_decay`` and iterative global magnitude pruning
        (Han et al.): ``imp_rounds`` prunings at evenly spaced epochs, the kept fraction shrinking geometrically
        to ``1 − target``, then training to the budget with the mask held.
    plateau_rule : {"improve", "repo"}
        See :class:`Plateau`.
    target : float, optional
        Matched-sparsity mode (needed by ``"l2_imp"``): the first pruning step that would reach ``target``
        prunes to exactly ``target`` instead and the mask is frozen (no more pruning); a run whose schedule never
        reaches it is pruned to ``target`` by magnitude after the last epoch (``reached_epoch`` stays -1).
    freeze : bool
        Hold the current zeros as the mask from the start and never prune (continuing a matched run).
    snapshot_at : float, optional
        Record in ``run.snapshot`` the state at the first pruning step whose threshold reaches this sparsity,
        just before it prunes: ``(epoch, model state, data-order generator state)``. Continuing from it with
        ``prune_to(target)`` and ``freeze=True`` for the remaining epochs reproduces ``target`` mode exactly,
        so one run serves both LOBSTER's own schedule and the matched comparison.
    generator : torch.Generator or int, optional
        Data order (and the ablation's permutations).
    """
    fn = "train_sparse"
    if method not in METHODS:
        raise ValueError(f"The 'method' parameter of {fn} must be one of {', '.join(map(repr, METHODS))}. "
                         f"Got {method!r} instead.")
    if target is not None and not (isinstance(target, (int, float)) and 0.0 < target < 1.0):
        raise ValueError(f"The 'target' parameter of {fn} must be a float in (0, 1) or None. Got {target!r}.")
    if method == "l2_imp" and target is None:
        raise ValueError(f"The 'target' parameter of {fn} is required for method='l2_imp'.")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"The 'epochs' parameter of {fn} must be an int in [1, inf). Got {epochs!r} instead.")
    lmbda, twt = check_float(lmbda, "lmbda", fn, low_open=False), check_float(twt, "twt", fn, low_open=False)
    gen = generator if isinstance(generator, torch.Generator) else torch.Generator().manual_seed(int(generator or 0))
    names = prunable(model, bias=True)
    run = SparseRun(method)
    perm_gen = torch.Generator().manual_seed(gen.initial_seed() ^ 0x5EED)  # the ablation's own stream
    reg = Lobster(model, lmbda, params=names, shuffle=method == "shuffled", generator=perm_gen) \
        if method in ("lobster", "shuffled") else None
    plateau = Plateau(pwe, rule=plateau_rule) if method in ("lobster", "shuffled") else None
    imp_at = {max(1, round(r * epochs / (imp_rounds + 1))): r for r in range(1, imp_rounds + 1)}
    frozen = bool(freeze)
    val_loss = lambda m: evaluate(m, x_val, y_val)["loss"]  # noqa: E731

    for epoch in range(epochs):
        masks = _zero_masks(model, names) if (run.prune_epochs or frozen) else None

        def after(m: nn.Module, step: int, masks=masks) -> None:
            if step == 0:  # the previous epoch's last update was handled when that fit returned
                return
            _post_update(m, reg, masks, names)

        fit(model, x, y, epochs=1, batch_size=batch_size, lr=lr, optimizer="sgd", momentum=0.0,
            weight_decay=weight_decay if reg is None else 0.0, generator=gen, on_step=after)
        _post_update(model, reg, masks, names)  # the last step of the epoch
        loss = val_loss(model)
        if method == "l2_imp" and epoch + 1 in imp_at and not frozen:
            r = imp_at[epoch + 1]
            prune_to(model, names, 1.0 - (1.0 - target) ** (r / imp_rounds))
            run.prune_epochs.append(epoch)
            if r == imp_rounds:
                frozen, run.reached_epoch = True, epoch
        elif plateau is not None and not frozen and plateau.step(loss, model):
            t = bisect_threshold(model, names, val_loss, twt)
            state = copy.deepcopy(model.state_dict())
            gen_state = gen.get_state()
            magnitude_threshold(model, names, t)
            if snapshot_at is not None and run.snapshot is None and _sparsity(model, names) >= snapshot_at:
                run.snapshot = (epoch, state, gen_state)
            if target is not None and _sparsity(model, names) >= target:
                model.load_state_dict(state)
                prune_to(model, names, target)
                frozen, run.reached_epoch = True, epoch
            run.prune_epochs.append(epoch)
            loss = val_loss(model)
        run.sparsity.append(_sparsity(model, names))
        run.val_loss.append(loss)
    if target is not None and not frozen:  # the schedule never got there: prune to the target at the end
        prune_to(model, names, target)
        run.sparsity[-1], run.val_loss[-1] = _sparsity(model, names), val_loss(model)
    if reg is not None:
        run.small_fraction = reg.small_fraction
    return run


def matched_from_snapshot(
    model: nn.Module,
    free: SparseRun,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    *,
    target: float,
    epochs: int,
    **kwargs,
) -> SparseRun:
    """The ``target``-mode LOBSTER run rebuilt from a free run made with ``snapshot_at=target``: ``model`` (the
    same architecture; overwritten) is loaded from the snapshot, pruned to exactly ``target`` and trained with
    the mask frozen for the rest of the ``epochs`` budget. Without a snapshot (the schedule never reached the
    target) ``model`` must hold the free run's final weights; it is pruned to ``target`` and not trained."""
    names = prunable(model, bias=True)
    out = SparseRun("lobster")
    if free.snapshot is None:
        prune_to(model, names, target)
        out.sparsity = [*free.sparsity[:-1], _sparsity(model, names)]
        out.val_loss = [*free.val_loss[:-1], evaluate(model, x_val, y_val)["loss"]]
        out.prune_epochs = list(free.prune_epochs)
        return out
    epoch, state, gen_state = free.snapshot
    model.load_state_dict(state)
    gen = torch.Generator()
    gen.set_state(gen_state)
    prune_to(model, names, target)
    out.sparsity = [*free.sparsity[:epoch], _sparsity(model, names)]
    out.val_loss = [*free.val_loss[:epoch], evaluate(model, x_val, y_val)["loss"]]
    out.prune_epochs = [e for e in free.prune_epochs if e < epoch] + [epoch]
    out.reached_epoch = epoch
    if epochs - epoch - 1 > 0:
        rest = train_sparse(model, x, y, x_val, y_val, method="lobster", epochs=epochs - epoch - 1, freeze=True,
                            generator=gen, **kwargs)
        out.sparsity += rest.sparsity
        out.val_loss += rest.val_loss
    return out


@torch.no_grad()
def _post_update(model: nn.Module, reg: Lobster | None, masks: dict[str, torch.Tensor] | None, names) -> None:
    if reg is not None:
        reg.step(masks)
    elif masks is not None:
        named = dict(model.named_parameters())
        for n in names:
            named[n].mul_(masks[n])


__all__ = [
    "METHODS",
    "Lobster",
    "Plateau",
    "SparseRun",
    "bisect_threshold",
    "magnitude_threshold",
    "matched_from_snapshot",
    "prune_to",
    "train_sparse",
]
