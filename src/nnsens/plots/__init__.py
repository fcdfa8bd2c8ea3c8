"""The book's figures: one style (``_base``) and one module per part, each with a section per study.

Notebooks import a study's figures from its part module (``from nnsens.plots.parameter import p53_accuracy``); the
shared helpers and the earlier studies' figures are re-exported here.
"""

from nnsens.plots._base import figure, sweep_curves
from nnsens.plots.attribution import P46_LABELS, p46_budget, p46_deletion_curves, p46_ishigami, p46_maps
from nnsens.plots.parameter import (
    P53_LABELS,
    p03_accuracy,
    p03_training,
    p03_zeroing,
    p22_accuracy,
    p22_channel_traces,
    p22_kept_channels,
    p39_layer_traces,
    p39_omega_scatter,
    p39_pareto,
    p40_forward_error,
    p40_knees,
    p45_named_formats,
    p45_ptq_curves,
    p45_training,
    p53_accuracy,
    p53_prediction,
)
from nnsens.plots.training import p21_chaos, p21_variance

__all__ = [
    "figure", "sweep_curves", "P46_LABELS", "p46_budget", "p46_deletion_curves", "p46_ishigami", "p46_maps",
    "P53_LABELS", "p03_accuracy", "p03_training", "p03_zeroing", "p22_accuracy", "p22_channel_traces",
    "p22_kept_channels", "p39_layer_traces", "p39_omega_scatter", "p39_pareto", "p40_forward_error", "p40_knees",
    "p45_named_formats", "p45_ptq_curves", "p45_training", "p53_accuracy", "p53_prediction", "p21_chaos",
    "p21_variance",
]
