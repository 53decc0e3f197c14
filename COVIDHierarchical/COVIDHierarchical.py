"""COVID Hierarchical: CHS-Net lungs-then-infection segmentation with the infected share of each lung.

Seed 003 (CHS-Net): two cascaded RAIU-Nets. The first finds the lungs on each axial slice, the
second finds COVID-19 infection inside them. Results: a segmentation with "Right lung", "Left
lung" and "Infection" and a table of lung and infection volumes (mL) and the infected percentage
of each lung. The work runs in a ``lungai`` subprocess (progress, Cancel); the logic lives in
``COVIDHierarchicalLib`` (Qt-free).
"""

import shutil
import tempfile
from pathlib import Path

import slicer
from COVIDHierarchicalLib import COVIDHierarchicalLogic as _Logic
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin


class COVIDHierarchical(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "COVID Hierarchical"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = (
            "CHS-Net (Punn and Agarwal): lungs, then COVID-19 infection inside them, on every axial slice of a chest "
            "CT. Gives 'Right lung', 'Left lung' and 'Infection' segments and a table of volumes and the infected "
            "share of each lung. The bundled weights are small demo weights for non-commercial research use, not a "
            "medical device."
        )
        self.parent.acknowledgementText = (
            "Part of SlicerLungAI. Infection training data: MedSeg COVID-19 CT segmentation (non-commercial research "
            "use). "
            "Lung training data: CTChest4 from 3D Slicer's sample data (slicerio)."
        )


@parameterNodeWrapper
class COVIDHierarchicalParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode


class COVIDHierarchicalLogic(_Logic, ScriptedLoadableModuleLogic):
    """Slicer module logic: the Qt-free :class:`COVIDHierarchicalLib.COVIDHierarchicalLogic`."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return COVIDHierarchicalParameterNode(super().getParameterNode())


class COVIDHierarchicalWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._process = None
        self._workDir = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/COVIDHierarchical.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = COVIDHierarchicalLogic()
        self.ui.deviceComboBox.addItems(["auto", "cpu", "cuda", "mps"])
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelLabel.text = self._modelDescription()
        self.initializeParameterNode()

    @staticmethod
    def _modelDescription():
        try:
            from lungai.modules import descriptor
            from lungai.registry import get_model_entry

            entry = get_model_entry(descriptor("covid").default_model_id)
            state = "present" if entry.available else "MISSING: reinstall the extension"
            return f"Model {entry.id} v{entry.version} ({state}). {entry.licence}"
        except Exception as error:  # noqa: BLE001 - shown to the user, never fatal for the GUI
            return f"Model registry unavailable: {error}"

    def cleanup(self):
        self.onCancel()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def _setRunning(self, running):
        self.ui.applyButton.enabled = not running
        self.ui.cancelButton.enabled = running
        self.ui.progressBar.visible = running

    def onApply(self):
        volumeNode = self._parameterNode.inputVolume
        if volumeNode is None:
            self.ui.statusLabel.text = "Choose a CT volume first."
            return
        segmentationNode = self._parameterNode.outputSegmentation
        if segmentationNode is not None and not slicer.util.confirmOkCancelDisplay(
            f"Replace the segments of '{segmentationNode.GetName()}' with this result?"
        ):
            return
        self._workDir = Path(tempfile.mkdtemp(prefix="lungai-covid-"))
        try:
            volumePath = self.logic.export_volume(volumeNode, self._workDir / "input.nrrd")
        except Exception as error:  # noqa: BLE001 - reported in the GUI
            self.ui.statusLabel.text = f"Cannot export the volume: {error}"
            shutil.rmtree(self._workDir, ignore_errors=True)
            return
        from LungAICommon.process import LungAIProcess

        arguments = self.logic.cli_arguments(
            volumePath, self._workDir / "out", device=self.ui.deviceComboBox.currentText
        )
        self._setRunning(True)
        self.ui.statusLabel.text = "Segmenting lungs and infection..."
        self._process = LungAIProcess(
            arguments,
            self.onProgress,
            lambda code, message: self.onFinished(code, message, volumeNode, segmentationNode),
        )

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onCancel(self):
        if self._process is not None and self._process.running:
            self._process.cancel()

    def onFinished(self, exitCode, message, volumeNode, segmentationNode):
        self._setRunning(False)
        self._process = None
        try:
            if exitCode == 0:
                segmentation, table = self.logic.import_results(
                    self._workDir / "out", volumeNode, segmentationNode, overwrite=segmentationNode is not None
                )
                self._parameterNode.outputSegmentation = segmentation
                self._showTable(table)
                self.ui.statusLabel.text = "Done: segments 'Right lung', 'Left lung', 'Infection' and the burden table."
            else:
                self.ui.statusLabel.text = message or "Cancelled: the scene is unchanged."
        except Exception as error:  # noqa: BLE001 - reported in the GUI
            self.ui.statusLabel.text = f"Could not import the result: {error}"
        finally:
            shutil.rmtree(self._workDir, ignore_errors=True)

    @staticmethod
    def _showTable(table):
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


class COVIDHierarchicalTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only: the slicerio chest CT and the bundled CHS-Net weights."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_bundled_chest_ct()

    def test_bundled_chest_ct(self):
        import numpy as np

        from lungai.sample_data import chest_ct
        from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

        volume = chest_ct()
        volumeNode = volume_node_from_volume(volume, "CTChest4")
        segmentation, table = COVIDHierarchicalLogic().run(volumeNode, device="cpu")
        names = [
            segmentation.GetSegmentation().GetNthSegment(i).GetName()
            for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
        ]
        self.assertEqual(names, ["Right lung", "Left lung", "Infection"])
        rows = rows_from_table_node(table)
        milliliters = volume.voxel_volume_mm3 / 1000.0
        for row, name in zip(rows[:2], ("Right lung", "Left lung")):
            mask = segment_mask(segmentation, name, volumeNode)
            self.assertGreater(int(np.count_nonzero(mask)), 0)
            self.assertAlmostEqual(row["Lung volume (mL)"], np.count_nonzero(mask) * milliliters, places=2)
        self.delayDisplay("COVID Hierarchical self-test passed")
