"""genserve: SLO-aware co-serving of text-to-image and text-to-video diffusion models."""

__version__ = "0.1.0"
