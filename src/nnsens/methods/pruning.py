"""Pruning tools: unstructured masks from any score, structured channel removal, weight sharing, fine-tuning.

The baselines of the pruning survey (Blalock et al. / Vadera & Ameen, arXiv 2011.00241) and of the studies that
use sensitivity to prune (P03 LOBSTER, P22 HAP, P32):

- **Unstructured masks.** :func:`masks_from_scores` turns any per-entry score (``|w|`` from
  :func:`magnitude_scores`, or the loss-based scores of :mod:`nnsens.measures.loss_sensitivity`) into boolean keep
  masks at an exact sparsity, globally or layer by layer (ties broken by position, so the count is exact).
  :func:`apply_masks` zeroes pruned entries; :func:`masks_applied` keeps them at zero while the model trains (a
  ``torch.nn.utils.parametrize`` parametrization w ↦ w ⊙ m, so no optimizer, weight decay or momentum can
  revive them) and :func:`fine_tune` trains through the one loop, :func:`nnsens.training.fit`, inside it.
- **Structured removal.** :func:`remove_channels` builds a *new, smaller* model in which the chosen output
  channels (rows of a ``Linear``, filters of a ``Conv1d/2d``) are gone, together with the matching input columns
  of the next layer (for a conv followed by flatten and a ``Linear``, the block of columns of that channel).
  :func:`channel_masks` is the same operation as a mask; with ReLU (act(0) = 0) both give identical outputs.
  :func:`chain_pairs` lists the (producer, consumer) pairs of a plain chain (``MLP``, ``SmallCNN``, ``ConvNet``);
  a pruned :class:`nnsens.models.ConvNet` stays a ``ConvNet`` whose ``channels`` are the kept counts.
  :func:`select_channels` picks the channels to keep from per-channel scores (global or per layer, with a cap).
- **Weight sharing.** :func:`kmeans_share` replaces each tensor's entries by their k-means centroid (Han et al.,
  arXiv 1510.00149: k = 2^b clusters ↔ b-bit indices), with scikit-learn's KMeans, seeded.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from nnsens.models import ConvNet

Masks = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------- unstructured
def prunable(model: nn.Module, *, bias: bool = False) -> list[str]:
    """Names of the weights (and biases when ``bias``) of the model's ``Linear`` and ``Conv`` layers."""
    out = []
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            out.append(f"{mname}.weight" if mname else "weight")
            if bias and mod.bias is not None:
                out.append(f"{mname}.bias" if mname else "bias")
    return out


def magnitude_scores(model: nn.Module, params: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """|w| of each prunable weight (default: :func:`prunable`)."""
    named = dict(model.named_parameters())
    names = prunable(model) if params is None else list(params)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"The 'params' parameter of magnitude_scores must name parameters of the model. "
                         f"Got {unknown!r} instead.")
    return {n: named[n].detach().abs() for n in names}


def _check_sparsity(sparsity: object, fn: str, name: str = "sparsity") -> float:
    ok = isinstance(sparsity, (int, float)) and not isinstance(sparsity, bool) and 0.0 <= sparsity <= 1.0
    if not ok:
        raise ValueError(f"The '{name}' parameter of {fn} must be a float in [0, 1]. Got {sparsity!r} instead.")
    return float(sparsity)


def _lowest(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep mask of a 1-D score vector with exactly its ``k`` lowest entries False (stable order)."""
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        order = torch.argsort(flat, stable=True)
        keep[order[:k]] = False
    return keep


def masks_from_scores(
    scores: Mapping[str, torch.Tensor], sparsity: float, *, scope: str = "global"
) -> Masks:
    """Keep masks that prune the lowest-scoring entries, exactly ``round(sparsity · n)`` of them.

    Parameters
    ----------
    scores : dict[str, Tensor]
        One score per entry (higher = more important), shaped like the parameter.
    sparsity : float in [0, 1]
        Fraction of entries to prune.
    scope : {"global", "layerwise"}
        One ranking across all tensors, or each tensor pruned to ``sparsity`` on its own.

    Returns
    -------
    dict[str, Tensor]
        Boolean masks (True = kept), shaped like the scores.
    """
    fn = "masks_from_scores"
    sparsity = _check_sparsity(sparsity, fn)
    if scope not in ("global", "layerwise"):
        raise ValueError(f"The 'scope' parameter of {fn} must be one of 'global', 'layerwise'. Got {scope!r}.")
    if not scores:
        raise ValueError(f"The 'scores' parameter of {fn} must be a non-empty dict. Got {scores!r} instead.")
    bad = [n for n, s in scores.items() if not torch.isfinite(s).all()]
    if bad:
        raise ValueError(f"The 'scores' parameter of {fn} must be finite. Got non-finite scores for {bad!r}.")
    if scope == "layerwise":
        return {n: _lowest(s.reshape(-1), round(sparsity * s.numel())).reshape(s.shape) for n, s in scores.items()}
    flat = torch.cat([s.reshape(-1).to(torch.float64).cpu() for s in scores.values()])
    keep = _lowest(flat, round(sparsity * flat.numel()))
    out, i = {}, 0
    for n, s in scores.items():
        out[n] = keep[i : i + s.numel()].reshape(s.shape).to(s.device)
        i += s.numel()
    return out


def sparsity_of(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of pruned (False) entries over all masks."""
    total = sum(m.numel() for m in masks.values())
    return 1.0 - sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def model_sparsity(model: nn.Module, params: Sequence[str] | None = None) -> float:
    """Fraction of exactly-zero entries among ``params`` (default: the prunable weights)."""
    named = dict(model.named_parameters())
    names = prunable(model) if params is None else list(params)
    total = sum(named[n].numel() for n in names)
    return sum(int((named[n] == 0).sum()) for n in names) / max(total, 1)


def _check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], fn: str) -> dict[str, nn.Parameter]:
    named = dict(model.named_parameters())
    for n, m in masks.items():
        if n not in named:
            raise ValueError(f"The 'masks' parameter of {fn} must name parameters of the model. Got {n!r}.")
        if tuple(m.shape) != tuple(named[n].shape):
            raise ValueError(f"The 'masks' parameter of {fn} must match the parameters' shapes: {n!r} is "
                             f"{tuple(named[n].shape)}, its mask {tuple(m.shape)}.")
    return named


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned entries in place; returns the model."""
    named = _check_masks(model, masks, "apply_masks")
    for n, m in masks.items():
        named[n].mul_(m.to(named[n]))
    return model


class _Mask(nn.Module):
    """Parametrization w ↦ w ⊙ m (m a fixed buffer)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    mod_name, _, attr = name.rpartition(".")
    return (model.get_submodule(mod_name) if mod_name else model), attr


@contextlib.contextmanager
def masks_applied(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Within the block, every masked parameter is computed as w ⊙ m, so pruned entries are exactly zero in every
    forward pass and get zero gradient whatever the optimizer does; on exit the parametrization is removed and
    the masked values are written back (pruned entries = 0, parameter names as before)."""
    _check_masks(model, masks, "masks_applied")
    done = []
    try:
        for n, m in masks.items():
            mod, attr = _owner(model, n)
            p = getattr(mod, attr)
            order = list(mod._parameters)  # removal re-registers the tensor last: restore the order after
            parametrize.register_parametrization(mod, attr, _Mask(m.to(device=p.device, dtype=p.dtype)))
            done.append((mod, attr, order))
        yield model
    finally:
        for mod, attr, order in reversed(done):
            parametrize.remove_parametrizations(mod, attr, leave_parametrized=True)
            items = dict(mod._parameters)
            mod._parameters.clear()
            mod._parameters.update({k: items[k] for k in order if k in items})


def fine_tune(
    model: nn.Module, masks: Mapping[str, torch.Tensor] | None, x: torch.Tensor, y: torch.Tensor, **fit_kwargs: Any
) -> list[float]:
    """Fine-tune ``model`` in place with :func:`nnsens.training.fit`, pruned entries held at zero; returns the
    per-epoch losses. ``fit_kwargs`` go to ``fit`` unchanged."""
    from nnsens.training import fit

    if masks is None:
        return fit(model, x, y, **fit_kwargs)
    with masks_applied(model, masks):
        return fit(model, x, y, **fit_kwargs)


# ----------------------------------------------------------------------------------------------- structured
_CHANNEL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def chain_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(producer, consumer) pairs of consecutive Linear/Conv layers in registration order.

    Valid for plain chains whose layers are applied in the order they are registered with only elementwise
    activations, per-channel pooling (max, average, global average) or flattening between them (``MLP``,
    ``SmallCNN``, ``ConvNet``); not for residual networks.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, _CHANNEL_LAYERS)]
    return list(zip(names[:-1], names[1:], strict=False))


def _out_dim(mod: nn.Module) -> int:
    return mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels


def _in_dim(mod: nn.Module) -> int:
    return mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels


def _consumer_columns(prod: nn.Module, cons: nn.Module, keep: torch.Tensor) -> torch.Tensor:
    """Input indices of ``cons`` fed by the kept channels of ``prod`` (a flattened conv map feeds blocks)."""
    c_out, c_in = _out_dim(prod), _in_dim(cons)
    if c_in % c_out:
        raise ValueError(f"remove_channels: the consumer's input size {c_in} is not a multiple of the producer's "
                         f"{c_out} output channels.")
    block = c_in // c_out  # spatial positions per channel after flatten (1 when no flatten)
    return (keep[:, None] * block + torch.arange(block, device=keep.device)[None, :]).reshape(-1)


def _check_keep(model: nn.Module, pairs: Sequence[tuple[str, str]], keep: Mapping[str, torch.Tensor], fn: str):
    mods = dict(model.named_modules())
    producers = {p: c for p, c in pairs}
    for p, c in pairs:
        for n in (p, c):
            if n not in mods or not isinstance(mods[n], _CHANNEL_LAYERS):
                raise ValueError(f"The 'pairs' parameter of {fn} must name Linear/Conv1d/Conv2d modules. Got {n!r}.")
    out = {}
    for n, idx in keep.items():
        if n not in producers and n.endswith(".weight") and n[: -len(".weight")] in producers:
            n = n[: -len(".weight")]  # a producer's weight name stands for the producer
        if n not in producers:
            raise ValueError(f"The 'keep' parameter of {fn} must name producers among {sorted(producers)}. "
                             f"Got {n!r}.")
        idx = torch.as_tensor(idx, dtype=torch.long).reshape(-1)
        c = _out_dim(mods[n])
        if idx.numel() < 1 or idx.unique().numel() != idx.numel() or idx.min() < 0 or idx.max() >= c:
            raise ValueError(f"The 'keep' parameter of {fn} must give, for {n!r}, at least one distinct index "
                             f"in [0, {c}). Got {idx.tolist()!r} instead.")
        if n in out:
            raise ValueError(f"The 'keep' parameter of {fn} names {n!r} twice (as a module and as its weight).")
        out[n] = idx.sort().values
    return mods, producers, out


@torch.no_grad()
def _slice(mod: nn.Module, out_idx: torch.Tensor | None, in_idx: torch.Tensor | None) -> nn.Module:
    w = mod.weight
    if out_idx is not None:
        w = w.index_select(0, out_idx.to(w.device))
    if in_idx is not None:
        w = w.index_select(1, in_idx.to(w.device))
    b = None if mod.bias is None else (mod.bias if out_idx is None else mod.bias.index_select(0, out_idx.to(w.device)))
    with torch.random.fork_rng(devices=[]):  # the fresh init is overwritten: leave the global RNG alone
        if isinstance(mod, nn.Linear):
            new: nn.Module = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        else:
            cls = type(mod)
            new = cls(w.shape[1] * mod.groups, w.shape[0], mod.kernel_size, stride=mod.stride, padding=mod.padding,
                      dilation=mod.dilation, groups=mod.groups, bias=b is not None, padding_mode=mod.padding_mode)
    new = new.to(device=w.device, dtype=w.dtype)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new


def remove_channels(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor | Sequence[int]],
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> nn.Module:
    """A new model with only the ``keep`` output channels of each named producer (and the matching inputs of its
    consumer); the original is not modified. Its function equals the original's with the dropped channels' weights
    and biases zeroed (:func:`channel_masks`) whenever act(0) = 0 between the layers (ReLU).

    Parameters
    ----------
    keep : dict[str, index tensor]
        For each producer module name (or its weight's name, ``"convs.0.weight"``), the output channels
        (rows / filters) to keep; producers not named keep all their channels.
    pairs : list of (producer, consumer), optional
        Which layer reads which layer's output (default: :func:`chain_pairs`).

    Returns
    -------
    nn.Module
        A pruned deep copy; a :class:`nnsens.models.ConvNet` comes back as a ``ConvNet`` with updated ``channels``.
    """
    pairs = chain_pairs(model) if pairs is None else list(pairs)
    mods, producers, keep = _check_keep(model, pairs, keep, "remove_channels")
    if any(getattr(mods[n], "groups", 1) != 1 for n in mods if isinstance(mods[n], (nn.Conv1d, nn.Conv2d))):
        raise ValueError("remove_channels supports ungrouped convolutions only (groups=1).")
    new = copy.deepcopy(model)
    in_cols = {producers[p]: _consumer_columns(mods[p], mods[producers[p]], idx) for p, idx in keep.items()}
    for name in set(keep) | set(in_cols):
        parent, attr = _owner(new, name)
        setattr(parent, attr, _slice(mods[name], keep.get(name), in_cols.get(name)))
    if isinstance(new, ConvNet):  # keep its bookkeeping in step with the layers
        new.channels = tuple(conv.out_channels for conv in new.convs)
    return new


def channel_masks(
    model: nn.Module,
    keep: Mapping[str, torch.Tensor | Sequence[int]],
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
) -> Masks:
    """Masks equivalent to :func:`remove_channels`: the dropped channels' weight rows and biases are zeroed."""
    pairs = chain_pairs(model) if pairs is None else list(pairs)
    mods, _, keep = _check_keep(model, pairs, keep, "channel_masks")
    out = {}
    for name, idx in keep.items():
        mod = mods[name]
        row = torch.zeros(_out_dim(mod), dtype=torch.bool, device=mod.weight.device)
        row[idx.to(row.device)] = True
        out[f"{name}.weight"] = row.reshape((-1,) + (1,) * (mod.weight.dim() - 1)).expand_as(mod.weight).clone()
        if mod.bias is not None:
            out[f"{name}.bias"] = row.clone()
    return out


def select_channels(
    scores: Mapping[str, torch.Tensor], ratio: float, *, scope: str = "global", max_per_layer: float = 0.9
) -> dict[str, torch.Tensor]:
    """Channels to keep given one score per output channel: the ``round(ratio · total)`` lowest are removed.

    ``scope="global"`` ranks all channels together (one threshold; ties broken by layer order, then channel index)
    but never removes more than ``floor(max_per_layer · C_l)`` of a layer's channels (nor all of them): once a layer
    hits its cap the next-lowest channels elsewhere are removed instead, so the count stays exact whenever the caps
    allow it. ``scope="layerwise"`` removes ``round(ratio · C_l)`` in each layer.

    Parameters
    ----------
    scores : dict[str, Tensor or ndarray]
        One score per output channel (higher = more important), keyed by layer (module or weight name: the
        keys come back unchanged and :func:`remove_channels` accepts either).
    ratio : float in [0, 1]
        Fraction of all channels to remove.

    Returns
    -------
    dict[str, Tensor]
        The sorted indices of the kept channels of each layer.
    """
    fn = "select_channels"
    ratio = _check_sparsity(ratio, fn, "ratio")
    if scope not in ("global", "layerwise"):
        raise ValueError(f"The 'scope' parameter of {fn} must be one of 'global', 'layerwise'. Got {scope!r}.")
    if not (isinstance(max_per_layer, (int, float)) and 0.0 <= max_per_layer <= 1.0):
        raise ValueError(f"The 'max_per_layer' parameter of {fn} must be a float in [0, 1]. "
                         f"Got {max_per_layer!r} instead.")
    scores = {n: (s.detach() if isinstance(s, torch.Tensor) else torch.from_numpy(np.asarray(s, dtype=np.float64)))
              .reshape(-1) for n, s in scores.items()}
    caps = {n: min(int(np.floor(max_per_layer * s.numel() + 1e-9)), s.numel() - 1) for n, s in scores.items()}
    removed: dict[str, list[int]] = {n: [] for n in scores}
    if scope == "layerwise":
        for n, s in scores.items():
            k = min(round(ratio * s.numel()), caps[n])
            removed[n] = torch.argsort(s.reshape(-1).cpu(), stable=True)[:k].tolist()
    else:
        entries = sorted(((float(v), n, i) for n, s in scores.items() for i, v in enumerate(s.reshape(-1).tolist())),
                         key=lambda t: t[0])
        target = round(ratio * sum(s.numel() for s in scores.values()))
        for _, n, i in entries:
            if sum(len(r) for r in removed.values()) >= target:
                break
            if len(removed[n]) < caps[n]:
                removed[n].append(i)
    out = {}
    for n, s in scores.items():
        mask = torch.ones(s.numel(), dtype=torch.bool)
        mask[removed[n]] = False
        out[n] = torch.nonzero(mask).reshape(-1)
    return out


# ---------------------------------------------------------------------------------------------- weight sharing
@torch.no_grad()
def kmeans_share(
    model: nn.Module,
    n_clusters: int,
    *,
    params: Sequence[str] | None = None,
    generator: int | None = 0,
    keep_zeros: bool = True,
) -> nn.Module:
    """A copy of ``model`` whose chosen tensors (default: the prunable weights) hold at most ``n_clusters`` distinct
    values each: every entry replaced by its 1-D k-means centroid (scikit-learn, k-means++ seeded by
    ``generator``, 4 restarts). With ``keep_zeros`` pruned zeros stay zero and are not clustered (Deep
    Compression shares the surviving weights only)."""
    from sklearn.cluster import KMeans

    if not (isinstance(n_clusters, int) and not isinstance(n_clusters, bool) and n_clusters >= 1):
        raise ValueError(f"The 'n_clusters' parameter of kmeans_share must be an int in [1, inf). "
                         f"Got {n_clusters!r} instead.")
    new = copy.deepcopy(model)
    named = dict(new.named_parameters())
    names = prunable(new) if params is None else list(params)
    unknown = [n for n in names if n not in named]
    if unknown:
        raise ValueError(f"The 'params' parameter of kmeans_share must name parameters of the model. Got {unknown!r}.")
    for n in names:
        w = named[n]
        flat = w.detach().reshape(-1).cpu().double().numpy()
        live = flat != 0 if keep_zeros else np.ones_like(flat, dtype=bool)
        values = flat[live]
        k = min(n_clusters, np.unique(values).size)
        if k < 1:
            continue
        km = KMeans(n_clusters=k, n_init=4, random_state=generator).fit(values.reshape(-1, 1))
        shared = flat.copy()
        shared[live] = km.cluster_centers_[km.labels_, 0]
        w.copy_(torch.from_numpy(shared).reshape(w.shape).to(w))
    return new


__all__ = [
    "apply_masks",
    "chain_pairs",
    "channel_masks",
    "fine_tune",
    "kmeans_share",
    "magnitude_scores",
    "masks_applied",
    "masks_from_scores",
    "model_sparsity",
    "prunable",
    "remove_channels",
    "select_channels",
    "sparsity_of",
]
