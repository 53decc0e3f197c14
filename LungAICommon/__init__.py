"""Slicer-side helpers shared by the SlicerLungAI modules.

Qt-free (tested on slicer-core): ``mrml`` (the one place that turns arrays into volume, segmentation, table and
plot nodes and back), ``job`` (one run of the lungai command line: dependency gate, export, progress, cancel,
import, cleanup), ``proctree`` (stopping a process tree), ``dependencies`` (pinned package check and install).
Qt, for widgets only: ``process`` (the QProcess adapter that ``job`` drives in Slicer) and ``widget`` (the
module widget base with its parameter node).
"""
