"""Neural Parametric Gaussian Avatars: model, renderers, avatar bundles."""

__version__ = "0.1.0"
