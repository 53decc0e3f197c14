"""Logic of the COVID Hierarchical module: Qt-free (slicer MRML, vtk, numpy, lungai)."""
