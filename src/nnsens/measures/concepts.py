"""Concept sensitivity (TCAV): concept activation vectors per layer, directional derivatives, TCAV scores.

Kim et al. (2018), arXiv 1711.11279. A concept activation vector (CAV) v_C^l is the normal of a linear classifier
separating the layer-l activations of concept examples from those of random examples, oriented towards the concept.
The directional derivative of the class-k logit along it is S_{C,k,l}(x) = ∇_{h_l} logit_k(x) · v_C^l, and the TCAV
score is the fraction of class-k inputs with S > 0. Significance: the scores of CAVs trained against several random
sets are compared with those of random-vs-random CAVs by a two-sided t-test. Captum's ``captum.concept.TCAV`` computes
the same score from the same quantities; it is used as the cross-check in the tests (it needs CAV files on disk and
a data loader per concept, which is why the studies use these array-level functions).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nnsens.measures._checks import check_internal_batch_size, chunks, eval_mode


def _check_layers(model: nn.Module, layers: Sequence[nn.Module] | nn.Module, fn: str) -> list[nn.Module]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"The 'model' parameter of {fn} must be a torch.nn.Module. Got {type(model).__name__}.")
    layers = [layers] if isinstance(layers, nn.Module) else list(layers)
    mods = set(model.modules())
    if not layers or any(not isinstance(m, nn.Module) or m not in mods for m in layers):
        raise ValueError(f"The 'layers' parameter of {fn} must be a non-empty list of submodules of the model.")
    return layers


def _capture(model: nn.Module, inputs: torch.Tensor, layers: list[nn.Module]) -> tuple[torch.Tensor, list]:
    """Forward ``inputs``; return the logits and each layer's output (still in the graph)."""
    store: dict[int, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, i=i: store.__setitem__(i, out))
             for i, m in enumerate(layers)]
    try:
        logits = model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return logits, [store[i] for i in range(len(layers))]


def layer_activations(model: nn.Module, inputs: torch.Tensor, *, layers: Sequence[nn.Module] | nn.Module,
                      internal_batch_size: int | None = None) -> list[torch.Tensor]:
    """Flattened outputs of each module in ``layers`` on ``inputs``: a list of (N, D_l) tensors."""
    layers = _check_layers(model, layers, "layer_activations")
    bs = check_internal_batch_size(internal_batch_size, "layer_activations")
    out: list[list[torch.Tensor]] = [[] for _ in layers]
    with eval_mode(model), torch.no_grad():
        for sl in chunks(inputs.shape[0], bs):
            _, acts = _capture(model, inputs[sl], layers)
            for k, a in enumerate(acts):
                out[k].append(a.flatten(1))
    return [torch.cat(o) for o in out]


def layer_gradients(model: nn.Module, inputs: torch.Tensor, *, target: int | torch.Tensor,
                    layers: Sequence[nn.Module] | nn.Module, internal_batch_size: int | None = None,
                    create_graph: bool = False) -> list[torch.Tensor]:
    """∇_{h_l} logit_target(x) at the output of each module in ``layers``: a list of (N, D_l) tensors.

    ``target`` is one class index or an (N,) tensor of them. ``create_graph=True`` keeps the graph (to differentiate
    the gradients further, as the concept attack does); it needs ``internal_batch_size=None``.
    """
    layers = _check_layers(model, layers, "layer_gradients")
    bs = check_internal_batch_size(internal_batch_size, "layer_gradients")
    n = inputs.shape[0]
    tgt = torch.as_tensor(target, device=inputs.device).long().expand(n) if not torch.is_tensor(target) or \
        target.dim() == 0 else target.to(inputs.device).long()
    if tgt.shape != (n,):
        raise ValueError(f"The 'target' parameter of layer_gradients must be an int or a ({n},) tensor. "
                         f"Got shape {tuple(tgt.shape)} instead.")
    out: list[list[torch.Tensor]] = [[] for _ in layers]
    with eval_mode(model):
        for sl in chunks(n, bs if not create_graph else None):
            with torch.enable_grad():
                logits, acts = _capture(model, inputs[sl], layers)
                sel = logits.gather(1, tgt[sl].view(-1, 1)).sum()
                grads = torch.autograd.grad(sel, acts, create_graph=create_graph)
            for k, g in enumerate(grads):
                out[k].append(g.flatten(1) if create_graph else g.detach().flatten(1))
    return [torch.cat(o) for o in out]


@dataclass(frozen=True)
class CAV:
    """A concept activation vector: unit ``direction`` (D,) towards the concept, held-out ``accuracy``."""

    direction: torch.Tensor
    accuracy: float


def train_cav(concept: torch.Tensor, random: torch.Tensor, *, C: float = 1.0, test_fraction: float = 0.33,
              max_iter: int = 1000, random_state: int = 0) -> CAV:
    """Fit an L2 logistic regression (scikit-learn) of concept (label 1) against random (label 0) activations.

    Parameters
    ----------
    concept, random : Tensor, (n_c, D) and (n_r, D)
    C : inverse L2 strength of ``sklearn.linear_model.LogisticRegression``.
    test_fraction : share of each set held out to measure the CAV's accuracy (0: no hold-out, accuracy NaN);
        the direction is fitted on the rest.
    """
    from sklearn.linear_model import LogisticRegression

    if concept.dim() != 2 or random.dim() != 2 or concept.shape[1] != random.shape[1]:
        raise ValueError(f"The 'concept' and 'random' parameters of train_cav must be (n, D) tensors with the same D. "
                         f"Got {tuple(concept.shape)} and {tuple(random.shape)} instead.")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"The 'test_fraction' parameter of train_cav must be a float in [0, 1). "
                         f"Got {test_fraction!r} instead.")
    x = torch.cat([concept, random]).detach().cpu().double().numpy()
    y = np.r_[np.ones(len(concept)), np.zeros(len(random))]
    rng = np.random.default_rng(random_state)
    test = np.zeros(len(y), bool)
    for lab in (0, 1):
        idx = np.flatnonzero(y == lab)
        test[rng.permutation(idx)[: int(round(test_fraction * len(idx)))]] = True
    clf = LogisticRegression(C=C, max_iter=max_iter)
    clf.fit(x[~test], y[~test])
    acc = float(clf.score(x[test], y[test])) if test.any() else float("nan")
    w = torch.as_tensor(clf.coef_[0], dtype=concept.dtype, device=concept.device)
    return CAV(w / w.norm().clamp_min(1e-12), acc)


def directional_derivatives(gradients: torch.Tensor, cavs: torch.Tensor) -> torch.Tensor:
    """S = ∇h logit · v for every input and CAV: gradients (N, D), cavs (R, D) or (D,) → (N, R) or (N,)."""
    if gradients.dim() != 2 or cavs.shape[-1] != gradients.shape[1]:
        raise ValueError(f"directional_derivatives needs gradients (N, D) and cavs (R, D) or (D,). "
                         f"Got {tuple(gradients.shape)} and {tuple(cavs.shape)} instead.")
    return gradients @ (cavs.mT if cavs.dim() == 2 else cavs)


def tcav_scores(gradients: torch.Tensor, cavs: torch.Tensor) -> torch.Tensor:
    """TCAV score (fraction of inputs with a positive directional derivative) of each CAV: (R,) or a scalar."""
    return (directional_derivatives(gradients, cavs) > 0).float().mean(0)


def tcav_significance(scores: Sequence[float] | np.ndarray, null_scores: Sequence[float] | np.ndarray
                      ) -> tuple[float, float]:
    """Two-sided Student t-test (``scipy.stats.ttest_ind``, as Kim et al.) of concept-vs-random scores against
    random-vs-random scores: ``(t, p)``.

    Two constant samples give ``(0, 1)`` when equal and ``(±inf, 0)`` when not, rather than NaN.
    """
    from scipy.stats import ttest_ind

    a, b = np.asarray(scores, float), np.asarray(null_scores, float)
    if a.size < 2 or b.size < 2:
        raise ValueError(f"tcav_significance needs at least 2 scores on each side. Got {a.size} and {b.size}.")
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return (0.0, 1.0) if a[0] == b[0] else (float(np.sign(a[0] - b[0]) * np.inf), 0.0)
    with warnings.catch_warnings():  # near-identical samples: scipy warns about precision, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_ind(a, b)
    return float(res.statistic), float(res.pvalue)
