"""nnsens: a reproducible compendium of sensitivity studies in neural networks."""

__version__ = "0.1.0"
