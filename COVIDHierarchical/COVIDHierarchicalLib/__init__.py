"""Logic of the COVID Hierarchical module: Qt-free (slicer MRML, vtk, numpy, lungai)."""

from COVIDHierarchicalLib.logic import COVIDHierarchicalLogic

__all__ = ["COVIDHierarchicalLogic"]
