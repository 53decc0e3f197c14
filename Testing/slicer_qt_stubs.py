"""Stand-ins for the Qt-only parts of Slicer (``qt``, ``ctk``, ``slicer.ScriptedLoadableModule``,
``slicer.parameterNodeWrapper``, ``SegmentEditorEffects``) so that module files can be imported on slicer-core,
which has MRML but no Qt. For subprocess tests only: :func:`install` changes ``sys.modules``.

The parameterNodeWrapper stand-in evaluates each wrapped class's annotations as Slicer's does
(``typing.get_type_hints``), so an annotation this Python cannot evaluate fails here too.
"""

import sys
import types
import typing


class Anything:
    def __init__(self, *args, **kwargs):
        pass


def _wrapper(cls):
    typing.get_type_hints(cls, include_extras=True)
    return cls


def _stub(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


def install() -> None:
    import slicer

    _stub("qt", QIcon=Anything, QProcess=Anything, QTimer=Anything, QLabel=Anything, QPushButton=Anything)
    _stub("ctk")
    slicer.ScriptedLoadableModule = _stub(
        "slicer.ScriptedLoadableModule",
        ScriptedLoadableModule=Anything,
        ScriptedLoadableModuleWidget=Anything,
        ScriptedLoadableModuleLogic=Anything,
        ScriptedLoadableModuleTest=Anything,
    )
    slicer.parameterNodeWrapper = _stub(
        "slicer.parameterNodeWrapper", parameterNodeWrapper=_wrapper, Choice=Anything, WithinRange=Anything
    )
    _stub("SegmentEditorEffects", AbstractScriptedSegmentEditorEffect=Anything)
