"""Slicer-side helpers shared by the SlicerLungAI modules.

``mrml`` is Qt-free (MRML, vtk, numpy, lungai) and is the one place that turns arrays into
volume, segmentation, table and plot nodes and back. ``process`` and ``dependencies`` are for
widgets only: they use Qt.
"""
