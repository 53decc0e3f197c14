"""SlicerLungAI backend: lung CT networks, training and inference without Slicer."""

__version__ = "0.1.0"
