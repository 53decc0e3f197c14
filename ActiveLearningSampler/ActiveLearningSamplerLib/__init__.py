"""Logic of the Active Learning Sampler module: Qt-free (slicer MRML, vtk, numpy, lungai)."""

from ActiveLearningSamplerLib.logic import ActiveLearningSamplerLogic

__all__ = ["ActiveLearningSamplerLogic"]
