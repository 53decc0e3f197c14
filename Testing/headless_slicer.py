"""A real MRML scene with Slicer's application and module logic, without Qt (pip ``slicer-core``).

Set up the way Slicer's own application does it: one ``vtkMRMLScene``, a
``vtkSlicerApplicationLogic``, and the Colors, Volumes, Segmentations, Tables, Terminologies,
SubjectHierarchy and Plots logic registered with it. ``slicer.mrmlScene`` and
``slicer.modules.<name>.logic()`` then resolve as they do inside Slicer, so ``slicer.util``
array helpers and the modules' Lib logic run for real.
"""

from __future__ import annotations

import types

import slicer

_LOGIC_CLASSES = {
    "colors": ("Colors", "vtkSlicerColorLogic"),
    "volumes": ("Volumes", "vtkSlicerVolumesLogic"),
    "segmentations": ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    "tables": ("Tables", "vtkSlicerTablesLogic"),
    "terminologies": ("Terminologies", "vtkSlicerTerminologiesModuleLogic"),
    "subjecthierarchy": ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    "plots": ("Plots", "vtkSlicerPlotsLogic"),
}


class _Module(types.SimpleNamespace):
    def logic(self):
        return self._logic


def start_scene() -> slicer.vtkMRMLScene:
    """Create a scene with application logic and module logic; make it ``slicer.mrmlScene``."""
    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    modules = types.SimpleNamespace()
    for attribute, (name, class_name) in _LOGIC_CLASSES.items():
        logic = getattr(slicer, class_name)()
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        if attribute == "colors":
            logic.AddDefaultColorNodes()
        setattr(modules, attribute, _Module(_logic=logic, name=name))
    slicer.mrmlScene = scene
    slicer.app_logic = app_logic
    slicer.modules = modules
    return scene


def stop_scene(scene: slicer.vtkMRMLScene) -> None:
    scene.Clear(True)
