"""Logic of the Neoplasm NLB module: Qt-free (slicer MRML, vtk, numpy, lungai)."""
