"""Offline data: scikit-learn's bundled sets, mnist1d, and seeded simulators. Nothing is downloaded."""

from nnsens.data.planted import PlantedImages, evidence_patterns, planted_images
from nnsens.data.sequences import mnist1d_split
from nnsens.data.tabular import digits, digits_images

__all__ = ["PlantedImages", "digits", "digits_images", "evidence_patterns", "mnist1d_split", "planted_images"]
