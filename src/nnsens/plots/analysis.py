"""Figures of part V (sensitivity analysis under uncertainty), one section per study."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from nnsens.plots._base import figure

__all__ = ["figure", "np", "plt", "sns"]
