"""Logic of the Active Learning Sampler module: Qt-free (slicer MRML, vtk, numpy, lungai)."""
