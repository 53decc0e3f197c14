"""UGS-Net Segmentation: lung nodules with a Multi-Confidence Mask (high-confidence core, low-confidence rim).

Thin Slicer module over UGSNetSegmentationLib.logic (Qt-free, tested headless, imported only when a run
starts). The widget takes the CT, the nodule points, the weights and the device when Apply is pressed, runs
``lungai ugsnet segment`` in a subprocess through LungAICommon.job (progress, Cancel), then loads the results as
one segmentation node and one table. The module also registers the Segment Editor effect "UGS-Net nodule"
(SegmentEditorUGSNetEffect), which adds the segments to the segmentation being edited.
"""

import os
from typing import Annotated

import slicer
from slicer import vtkMRMLMarkupsFiducialNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from LungAICommon.widget import DEVICES, LungAIModuleLogic, LungAIModuleWidget, showTable


class UGSNetSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UGS-Net Segmentation"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = (
            "Lung nodule segmentation with the Multi-Confidence Mask of UGS-Net (Yang, Wang et al.): for each "
            "point on a nodule, a final segment (green), a high-confidence core (red, where radiologists agree) and "
            "a low-confidence rim (blue, where they disagree), plus a table of volumes, diameter and HU. "
            "Also available as the Segment Editor effect 'UGS-Net nodule'."
        )
        self.parent.acknowledgementText = (
            "Part of SlicerLungAI. Demo weights trained on LIDC-IDRI (TCIA, CC BY 3.0); "
            "method: UGS-Net, IEEE journal version and MICCAI 2022."
        )
        slicer.app.connect("startupCompleted()", registerEditorEffect)


def registerEditorEffect():
    """Register "UGS-Net nodule" with the Segment Editor (as SegmentEditorExtraEffects does)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    effect = effects.qSlicerSegmentEditorScriptedEffect(None)
    path = os.path.join(os.path.dirname(__file__), "SegmentEditorUGSNetEffect", "SegmentEditorEffect.py")
    effect.setPythonSource(path.replace("\\", "/"))
    effect.self().register()


@parameterNodeWrapper
class UGSNetSegmentationParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    points: vtkMRMLMarkupsFiducialNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(DEVICES)] = "auto"


class UGSNetSegmentationLogic(LungAIModuleLogic):
    parameterNodeClass = UGSNetSegmentationParameterNode


def exportInputs(workDir, volumeNode, pointsRas, weights=None, device="auto"):
    """Write the CT and the points into ``workDir`` (lungai's writers; the user's nodes and their storage are
    untouched) and return the ``lungai ugsnet segment`` arguments that write into ``workDir / "out"``."""
    from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic as Logic

    from lungai.io import write_volume
    from LungAICommon.mrml import volume_from_node

    volumePath = write_volume(volume_from_node(volumeNode), workDir / "ct.nrrd", overwrite=True)
    pointsPath = Logic.write_points_csv(pointsRas, workDir / "points.csv")
    return Logic.cli_arguments(volumePath, pointsPath, workDir / "out", weights, device)


def segmentationJob(volumeNode, markupsNode, segmentationNode=None, weights=None, device="auto"):
    """(prepare, importResults) of one run on the nodes chosen now: the one place that knows the module's
    command line and result files. The points are read when the run starts."""

    def prepare(workDir):
        from UGSNetSegmentationLib.logic import points_from_markups

        return exportInputs(workDir, volumeNode, points_from_markups(markupsNode), weights, device)

    def importResults(workDir):
        from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic as Logic

        return Logic().import_results(workDir / "out", volumeNode, segmentationNode, None)

    return prepare, importResults


class UGSNetSegmentationWidget(LungAIModuleWidget):
    uiFile = "UI/UGSNetSegmentation.ui"
    logicClass = UGSNetSegmentationLogic

    def setupWiring(self):
        self.ui.modelComboBox.addItem("Bundled UGS-Net (LIDC-IDRI demo weights)", "")
        self.ui.pointsPlaceWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.pointsPlaceWidget.setCurrentNode)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)

    def guiParameters(self):
        return {
            "inputVolume": self.ui.volumeSelector,
            "points": self.ui.pointsSelector,
            "outputSegmentation": self.ui.outputSegmentationSelector,
            "device": self.ui.deviceComboBox,
        }

    def updateGUIFromParameterNode(self, caller=None, event=None):
        parameters = self._parameterNode
        ready = parameters is not None and parameters.inputVolume is not None and parameters.points is not None
        self.ui.applyButton.enabled = self.running or ready

    def onApply(self):
        if self.running:
            self.cancelJob()
            return
        parameters = self._parameterNode
        prepare, importResults = segmentationJob(
            parameters.inputVolume,
            parameters.points,
            parameters.outputSegmentation,
            self.ui.weightsPathLineEdit.currentPath or None,
            parameters.device,
        )

        def show(nodes):
            segmentation, table = nodes
            if self._parameterNode is not None:
                self._parameterNode.outputSegmentation = segmentation
            showTable(table)
            self.ui.statusLabel.text = f"Done: {segmentation.GetName()} and table {table.GetName()}."

        self.startJob(self.ui.applyButton, "UGS-Net", prepare, importResults, show)


class UGSNetSegmentationTest(ScriptedLoadableModuleTest):
    """Self-test on the bundled sample and bundled weights only (no downloads), through the same subprocess
    path as the Apply button. Skips when the Python dependencies are missing (installs nothing)."""

    def runTest(self):
        self.setUp()
        self.test_apply_path_on_bundled_nodule()

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def test_apply_path_on_bundled_nodule(self):
        from LungAICommon.widget import skipTestWithoutDependencies

        skipTestWithoutDependencies(self)
        from lungai.ugsnet.sample import crop_volume, load_sample
        from LungAICommon import mrml
        from LungAICommon.job import LungAIJob, run_blocking

        self.delayDisplay("Segmenting a bundled LIDC-IDRI nodule through lungai ugsnet segment")
        volume, point = crop_volume(load_sample(), 5, slices=3)
        volumeNode = mrml.volume_node_from_volume(volume, "UGS-Net sample CT")
        markups = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "nodules")
        markups.AddControlPoint(*point)
        results, errors = [], []
        prepare, importResults = segmentationJob(volumeNode, markups, device="cpu")
        run_blocking(LungAIJob("UGS-Net", prepare, importResults, lambda f, m: None, results.append, errors.append))
        self.assertEqual(errors, [])
        segmentation, table = results[0]
        names = [
            segmentation.GetSegmentation().GetNthSegment(i).GetName()
            for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
        ]
        self.assertEqual(names, ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"])
        rows = mrml.rows_from_table_node(table)
        self.assertEqual(rows[0]["nodule"], "Nodule 1")
        self.assertGreater(rows[0]["volume_final_mm3"], 0)
        self.assertIsNone(volumeNode.GetStorageNode())  # the export did not attach a storage node
        showTable(table)
        self.delayDisplay("UGS-Net self-test passed")
