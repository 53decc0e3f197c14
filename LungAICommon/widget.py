"""What every SlicerLungAI module widget shares, so each widget keeps only its wiring (widgets only: Qt).

- State lives in a ``parameterNodeWrapper`` parameter node (saved with the scene, recreated after File >
  Close Scene), bound to the GUI through :meth:`LungAIModuleWidget.guiParameters`.
- A run is a :class:`LungAICommon.job.LungAIJob`: the button that started it turns into Cancel, progress and
  messages go to ``ui.progressBar`` and ``ui.statusLabel``, the dependency check runs when the button is
  pressed (never when the module opens).
- Closing the scene or the application cancels a running job.
"""

from __future__ import annotations

import logging

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from LungAICommon.dependencies import ensure_dependencies
from LungAICommon.job import LungAIJob

DEVICES = ["auto", "cpu", "cuda", "mps"]


class LungAIModuleLogic(ScriptedLoadableModuleLogic):
    """Slicer's logic entry of a module: its typed parameter node. The computation lives in the module's Lib,
    imported only when a run starts (torch never loads with Slicer)."""

    parameterNodeClass = None  # a @parameterNodeWrapper class

    def getParameterNode(self):
        return self.parameterNodeClass(super().getParameterNode())


class LungAIModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    uiFile = ""  # e.g. "UI/COVIDHierarchical.ui"
    logicClass = LungAIModuleLogic

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.job = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobButton = None
        self._jobButtonText = ""

    # --- setup and parameter node (as Slicer's scripted module template) -----------------------------
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath(self.uiFile))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = self.logicClass()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.setupWiring()
        self.initializeParameterNode()

    def setupWiring(self):
        """Connect the module's buttons (subclasses)."""

    def guiParameters(self) -> dict:
        """Parameter name -> widget, bound by ``connectParametersToGui`` (subclasses)."""
        return {}

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
        self._parameterNode = parameterNode
        if self._parameterNode is not None:
            self._parameterNodeGuiTag = self._parameterNode.connectParametersToGui(self.guiParameters())
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def updateGUIFromParameterNode(self, caller=None, event=None):
        """Enable buttons etc. from the parameter node (subclasses)."""

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGUIFromParameterNode)
            self._parameterNodeGuiTag = None
            self._parameterNode = None

    def onSceneStartClose(self, caller, event):
        self.cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def cleanup(self):
        self.cancelJob()
        self.setParameterNode(None)
        self.removeObservers()

    # --- runs ---------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def startJob(self, button, name, prepare, importResults, onSuccess) -> None:
        """Start a run from ``button`` (which becomes Cancel until the run ends); a second press cancels.

        ``prepare(work_dir) -> lungai arguments`` and ``importResults(work_dir) -> result`` must use only what
        was selected when the button was pressed; ``onSuccess(result)`` shows the result.
        """
        if self.running:
            self.cancelJob()
            return

        def finished(result):
            self._endJob()
            try:
                onSuccess(result)
            except Exception as error:  # noqa: BLE001 - shown to the user, never raised into Qt
                logging.exception("SlicerLungAI: showing the results failed")
                self.ui.statusLabel.text = f"Could not show the results: {error}"
                return
            self.ui.progressBar.value = 100

        def failed(message):
            self._endJob()
            logging.warning(f"SlicerLungAI {name}: {message}")
            self.ui.statusLabel.text = message

        self._jobButton, self._jobButtonText = button, button.text
        button.text = "Cancel"
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = f"{name}: starting..."
        self.job = LungAIJob(
            name, prepare, importResults, self.onProgress, finished, failed, dependency_gate=ensure_dependencies
        )
        if self.job.start():
            self.updateGUIFromParameterNode()

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def cancelJob(self):
        if self.running:
            self.ui.statusLabel.text = "Cancelling..."
            self.job.cancel()

    def _endJob(self):
        if self._jobButton is not None:
            self._jobButton.text = self._jobButtonText
            self._jobButton = None
        self.job = None
        self.updateGUIFromParameterNode()


def registeredModels(moduleName) -> list:
    """(id, label) of the module's registered models whose weights are present; [] when the registry cannot
    be read yet (dependencies not installed: the backend's default model is used)."""
    try:
        from lungai.registry import load_registry

        entries = load_registry()
    except Exception as error:  # noqa: BLE001 - never fatal for the GUI; Apply checks the dependencies
        logging.info(f"SlicerLungAI: model registry not readable yet ({error})")
        return []
    return [(e.id, f"{e.id} (v{e.version})") for e in entries if e.module == moduleName and e.available]


def showTable(tableNode):
    """Show ``tableNode`` in Slicer's four-up + table layout (nothing without a main window)."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


def skipTestWithoutDependencies(testCase) -> None:
    """Self-tests: skip with the reason (never install anything) when the backend's packages are missing."""
    from LungAICommon.dependencies import missing_description

    missing = missing_description()
    if missing is not None:
        testCase.delayDisplay(f"Skipped: {missing}")
        testCase.skipTest(missing)
