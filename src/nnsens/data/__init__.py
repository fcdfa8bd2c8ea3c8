"""Offline data: scikit-learn's bundled sets, mnist1d, and seeded simulators. Nothing is downloaded."""

from nnsens.data.sequences import mnist1d_split
from nnsens.data.tabular import digits, digits_images

__all__ = ["digits", "digits_images", "mnist1d_split"]
