"""Logic of the UGS-Net Segmentation module: Qt-free (slicer MRML, vtk, numpy, lungai)."""
