"""Neuron merging by cosine similarity of incoming weights: a data-free, redundancy-based structured pruning.

The clustering family of the pruning survey (Vadera & Ameen, arXiv 2011.00241) removes *redundant* units rather
than small ones. Two ReLU units whose incoming weight vectors (weights and bias) point the same way compute
proportional outputs: if (w_j, b_j) = s·(w_i, b_i) with s > 0, then relu(w_j·x + b_j) = s·relu(w_i·x + b_i), so unit
j can be removed and its outgoing weights folded into unit i's, V[:, i] += s·V[:, j], without changing the
network's function (Srinivas & Babu 2015, data-free parameter pruning; Kim et al. 2020, neuron merging). With
similar but not proportional units the merge is an approximation, s = ‖(w_j, b_j)‖ / ‖(w_i, b_i)‖.

:func:`merge_plan` chooses, greedily, the most cosine-similar pair among the units still present, folds the
smaller-norm unit into the larger one, and repeats until the requested width is left. :func:`merge_neurons` applies
plans to the hidden layers of a plain chain (``MLP``) and returns a *smaller* network (via
:func:`nnsens.methods.pruning.remove_channels`). :func:`widths_for_budget` picks hidden widths whose weight count
matches a given budget (the same fraction of every hidden layer), for comparisons at equal parameter count.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from nnsens.methods.pruning import chain_pairs, remove_channels


@dataclass(frozen=True)
class MergePlan:
    """Which units of one layer survive and which were folded into which.

    Attributes
    ----------
    keep : Tensor
        Sorted indices of the surviving units (long).
    merges : tuple of (removed, into, scale)
        In merge order: unit ``removed`` was folded into unit ``into`` with factor ``scale``.
    """

    keep: torch.Tensor
    merges: tuple[tuple[int, int, float], ...]


def merge_plan(weight: torch.Tensor, bias: torch.Tensor | None, n_keep: int) -> MergePlan:
    """Greedy cosine-similarity merging of the rows of ``weight`` (out, in) (with ``bias`` appended) down to
    ``n_keep`` rows.

    A merge folds the smaller-norm row of the most similar pair into the larger one. Where a chain of merges folds
    a unit into a unit that is itself folded later, the scales compose (the plan lists the merges in order, and
    :func:`merge_neurons` applies them in that order).
    """
    fn = "merge_plan"
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"The 'weight' parameter of {fn} must be a 2-D tensor. Got "
                         f"{tuple(getattr(weight, 'shape', ()))} instead.")
    h = weight.shape[0]
    if not (isinstance(n_keep, int) and not isinstance(n_keep, bool) and 1 <= n_keep <= h):
        raise ValueError(f"The 'n_keep' parameter of {fn} must be an int in [1, {h}]. Got {n_keep!r} instead.")
    rows = weight.detach().double()
    if bias is not None:
        rows = torch.cat([rows, bias.detach().double().reshape(-1, 1)], dim=1)
    norms = rows.norm(dim=1)
    unit = rows / norms.clamp_min(1e-300).unsqueeze(1)
    sim = unit @ unit.T  # (h, h) cosine similarities
    sim.fill_diagonal_(-math.inf)
    sim[norms == 0, :] = math.inf  # a dead unit (all-zero row) is redundant with anything: scale 0
    sim[:, norms == 0] = math.inf
    sim.fill_diagonal_(-math.inf)
    alive = torch.ones(h, dtype=torch.bool)
    merges = []
    for _ in range(h - n_keep):
        flat = int(torch.argmax(sim))
        i, j = divmod(flat, h)
        if norms[i] < norms[j]:
            i, j = j, i  # fold the smaller unit j into the larger unit i
        scale = float(norms[j] / norms[i]) if norms[i] > 0 else 0.0
        merges.append((j, i, scale))
        alive[j] = False
        sim[j, :] = -math.inf
        sim[:, j] = -math.inf
    return MergePlan(torch.nonzero(alive).reshape(-1), tuple(merges))


def merge_neurons(model: nn.Module, widths: Mapping[str, int], *, pairs: Sequence[tuple[str, str]] | None = None,
                  ) -> nn.Module:
    """A smaller copy of ``model`` in which each named hidden ``nn.Linear`` keeps ``widths[name]`` units, the others
    merged into their most cosine-similar survivors (outgoing weights folded in); the original is not modified.

    Layers are merged in chain order, each plan computed on the already-updated weights. Exact (the same function)
    when the merged units are positive multiples of their survivors and the activation is ReLU.
    """
    fn = "merge_neurons"
    pairs = chain_pairs(model) if pairs is None else list(pairs)
    consumer = dict(pairs)
    unknown = [n for n in widths if n not in consumer]
    if unknown:
        raise ValueError(f"The 'widths' parameter of {fn} must name hidden layers among {sorted(consumer)}. "
                         f"Got {unknown!r} instead.")
    new = copy.deepcopy(model)
    mods = dict(new.named_modules())
    keep = {}
    with torch.no_grad():
        for prod, cons in pairs:
            if prod not in widths:
                continue
            p, c = mods[prod], mods[cons]
            if not isinstance(p, nn.Linear) or not isinstance(c, nn.Linear):
                raise ValueError(f"{fn} supports Linear → Linear pairs only. Got {prod!r} → {cons!r}.")
            plan = merge_plan(p.weight, p.bias, int(widths[prod]))
            for j, i, s in plan.merges:  # in order: a unit folded earlier has already carried its share over
                c.weight[:, i] += s * c.weight[:, j]
                c.weight[:, j] = 0.0
            keep[prod] = plan.keep
    return remove_channels(new, keep, pairs=pairs)


def widths_for_budget(sizes: Sequence[int], n_weights: int) -> tuple[int, ...]:
    """Hidden widths (h_1, ..., h_k) = round(r·sizes[1:-1]), r the largest factor whose weight count
    Σ h_l·h_(l+1) (with the fixed input and output sizes) is ≤ ``n_weights``; every width at least 1.

    Returns the new layer sizes, input and output included.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 3:
        raise ValueError(f"The 'sizes' parameter of widths_for_budget needs a hidden layer. Got {sizes!r} instead.")

    def count(r: float) -> tuple[int, tuple[int, ...]]:
        s = [sizes[0]] + [max(1, round(r * h)) for h in sizes[1:-1]] + [sizes[-1]]
        return sum(a * b for a, b in zip(s[:-1], s[1:], strict=False)), tuple(s)

    lo, hi = 0.0, 1.0
    for _ in range(60):  # bisection on r; the count is monotone in r
        mid = (lo + hi) / 2
        if count(mid)[0] <= n_weights:
            lo = mid
        else:
            hi = mid
    return count(lo)[1]


__all__ = ["MergePlan", "merge_neurons", "merge_plan", "widths_for_budget"]
