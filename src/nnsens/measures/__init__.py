"""Sensitivity measures, one module per family, re-exported flat here."""
