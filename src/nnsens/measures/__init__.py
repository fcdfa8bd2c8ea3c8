"""Sensitivity measures, one module per family, re-exported flat here."""

from nnsens.measures.hessian import (  # P39: curvature of the loss (HVP, Hutchinson trace, power iteration)
    HessianVectorProduct,
    TraceEstimate,
    exact_hessian,
    exact_layer_traces,
    hessian_top_eigenvalue,
    hessian_trace,
    layer_hessian_traces,
    layer_top_eigenvalues,
    make_hvp,
)
from nnsens.measures.metrics import (  # P46: faithfulness and localisation of saliency maps
    cell_scores,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    top_k_hits,
)
from nnsens.measures.perturbation import (  # P46: black-box perturbation attributions
    occlusion_cells,
    rise,
    rise_masks,
)
from nnsens.measures.quantization import (  # P39: uniform fake quantization
    quantizable_layers,
    quantization_scale,
    quantize,
    quantize_model,
)
from nnsens.measures.sobol import (  # P46: Sobol indices and Sobol attribution
    SobolIndices,
    sobol_attribution,
    sobol_indices,
)
from nnsens.measures.variance import (  # P21: variance between training runs
    SplitHalf,
    VarianceRatio,
    bootstrap_variance_ratio,
    churn,
    empirical_variance,
    independent_errors_variance,
    mean_pairwise_churn,
    split_half_correlation,
)

__all__ = [
    "HessianVectorProduct",
    "SobolIndices",
    "SplitHalf",
    "TraceEstimate",
    "VarianceRatio",
    "bootstrap_variance_ratio",
    "cell_scores",
    "churn",
    "deletion_auc",
    "deletion_curve",
    "empirical_variance",
    "exact_hessian",
    "exact_layer_traces",
    "hessian_top_eigenvalue",
    "hessian_trace",
    "independent_errors_variance",
    "insertion_auc",
    "layer_hessian_traces",
    "layer_top_eigenvalues",
    "make_hvp",
    "mean_pairwise_churn",
    "occlusion_cells",
    "quantizable_layers",
    "quantization_scale",
    "quantize",
    "quantize_model",
    "rise",
    "rise_masks",
    "sobol_attribution",
    "sobol_indices",
    "split_half_correlation",
    "top_k_hits",
]
