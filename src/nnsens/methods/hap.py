"""arXiv 2101.08940 — Hessian-Aware Pruning (HAP): channel importance from channel-wise Hessian traces.

HAP (Yu, Mazaheri, Jannesari, WACV 2022; code: github.com/yaozhewei/HAP, ``pruner/hessian_pruner.py``) scores each
output channel c of a conv/linear weight by its second-order saliency

    I_c = (Tr(H_c) / n_c) · ‖w_c‖²,

where Tr(H_c) is the channel's Hutchinson trace (``nnsens.measures.channel_hessian_traces``) and n_c the number of
weights of the channel, i.e. the average curvature of the channel times its squared norm (the expected loss increase
of zeroing it under a diagonal, isotropic approximation). Baselines: L1 magnitude (mean |w| over the channel, the
same per-weight normalisation) and random scores.

Only the scores live here. Selection and removal are the shared tools of :mod:`nnsens.methods.pruning`: HAP's one
global threshold over all layers with a cap on the fraction removed from any single layer is
``select_channels(scores, ratio, max_per_layer=...)``, and ``remove_channels(net, keep)`` builds the smaller
network (a :class:`nnsens.models.ConvNet` stays a ``ConvNet``); both accept the weight names used as keys here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from nnsens.methods.pruning import magnitude_scores
from nnsens.models import ConvNet


def conv_weights(net: ConvNet) -> list[str]:
    """Names of the conv weights of a :class:`ConvNet` (the layers whose output channels HAP prunes)."""
    return [f"convs.{i}.weight" for i in range(len(net.convs))]


def _channel_view(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1).double().cpu()  # (out_channels, weights per channel)


def hap_importance(model: nn.Module, traces: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HAP's score (Tr(H_c)/n_c)·‖w_c‖² of every channel of each weight in ``traces`` (name → (C,) traces)."""
    named = dict(model.named_parameters())
    out = {}
    for name, tr in traces.items():
        w = _channel_view(named[name])
        out[name] = np.asarray(tr, dtype=np.float64) / w.shape[1] * w.pow(2).sum(1).numpy()
    return out


def l1_importance(model: nn.Module, params: list[str]) -> dict[str, np.ndarray]:
    """Mean |w| over each channel (L1 norm / n_c) of :func:`~nnsens.methods.pruning.magnitude_scores`, the
    magnitude baseline."""
    return {n: _channel_view(a).mean(1).numpy() for n, a in magnitude_scores(model, params).items()}


def random_importance(model: nn.Module, params: list[str], generator: np.random.Generator) -> dict[str, np.ndarray]:
    """Uniform random scores, the random-ranking baseline."""
    named = dict(model.named_parameters())
    return {n: generator.random(named[n].shape[0]) for n in params}


__all__ = ["conv_weights", "hap_importance", "l1_importance", "random_importance"]
