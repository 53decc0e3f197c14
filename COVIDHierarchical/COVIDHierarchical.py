"""COVID Hierarchical: CHS-Net lungs-then-infection segmentation with the infected share of each lung.

Seed 003 (CHS-Net): two cascaded RAIU-Nets. The first finds the lungs on each axial slice, the
second finds COVID-19 infection inside them. Results: a segmentation with "Right lung", "Left
lung" and "Infection" and a table of lung and infection volumes (mL) and the infected percentage
of each lung. The run is ``lungai covid segment`` in a subprocess (progress, Cancel) through
LungAICommon.job; the logic lives in ``COVIDHierarchicalLib`` (imported when a run starts).
"""

from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from LungAICommon.widget import DEVICES, LungAIModuleLogic, LungAIModuleWidget, showTable


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
            "use). Lung training data: CTChest4 from 3D Slicer's sample data (slicerio)."
        )


@parameterNodeWrapper
class COVIDHierarchicalParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    device: Annotated[str, Choice(DEVICES)] = "auto"


class COVIDHierarchicalLogic(LungAIModuleLogic):
    parameterNodeClass = COVIDHierarchicalParameterNode


def segmentationJob(volumeNode, segmentationNode=None, device="auto"):
    """(prepare, importResults) of one ``lungai covid segment`` run on the nodes chosen now.

    The one place that knows this module's command line and result files.
    """

    def prepare(workDir):
        from COVIDHierarchicalLib import COVIDHierarchicalLogic as Logic

        volumePath = Logic.export_volume(volumeNode, workDir / "input.nrrd")
        return Logic.cli_arguments(volumePath, workDir / "out", device=device)

    def importResults(workDir):
        from COVIDHierarchicalLib import COVIDHierarchicalLogic as Logic

        replace = segmentationNode is not None
        return Logic().import_results(workDir / "out", volumeNode, segmentationNode, overwrite=replace)

    return prepare, importResults


class COVIDHierarchicalWidget(LungAIModuleWidget):
    uiFile = "UI/COVIDHierarchical.ui"
    logicClass = COVIDHierarchicalLogic

    def setupWiring(self):
        from lungai.modules import descriptor  # light: no torch

        self.ui.modelLabel.text = (
            f"Model: bundled CHS-Net demo weights ({descriptor('covid').default_model_id}); non-commercial research "
            "use, not a medical device."
        )
        self.ui.applyButton.connect("clicked(bool)", self.onApply)

    def guiParameters(self):
        return {
            "inputVolume": self.ui.inputVolumeSelector,
            "outputSegmentation": self.ui.outputSegmentationSelector,
            "device": self.ui.deviceComboBox,
        }

    def initializeParameterNode(self):
        super().initializeParameterNode()
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def updateGUIFromParameterNode(self, caller=None, event=None):
        ready = self._parameterNode is not None and self._parameterNode.inputVolume is not None
        self.ui.applyButton.enabled = self.running or ready

    def onApply(self):
        if self.running:
            self.cancelJob()
            return
        parameters = self._parameterNode
        volumeNode, segmentationNode = parameters.inputVolume, parameters.outputSegmentation
        if segmentationNode is not None and not slicer.util.confirmOkCancelDisplay(
            f"Replace the segments of '{segmentationNode.GetName()}' with this result?"
        ):
            return

        def show(nodes):
            segmentation, table = nodes
            if self._parameterNode is not None:
                self._parameterNode.outputSegmentation = segmentation
            showTable(table)
            self.ui.statusLabel.text = "Done: segments 'Right lung', 'Left lung', 'Infection' and the burden table."

        prepare, importResults = segmentationJob(volumeNode, segmentationNode, parameters.device)
        self.startJob(self.ui.applyButton, "COVID Hierarchical", prepare, importResults, show)


class COVIDHierarchicalTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only (the slicerio chest CT, the bundled CHS-Net weights), through the same
    subprocess path as the Apply button. Skips when the Python dependencies are missing (installs nothing)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_apply_path_on_bundled_chest_ct()

    def test_apply_path_on_bundled_chest_ct(self):
        from LungAICommon.widget import skipTestWithoutDependencies

        skipTestWithoutDependencies(self)
        import numpy as np

        from lungai.sample_data import chest_ct
        from LungAICommon.job import LungAIJob, run_blocking
        from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

        volume = chest_ct()
        volumeNode = volume_node_from_volume(volume, "CTChest4")
        results, errors, fractions = [], [], []
        prepare, importResults = segmentationJob(volumeNode, device="cpu")
        job = LungAIJob(
            "COVID Hierarchical",
            prepare,
            importResults,
            lambda f, m: fractions.append(f),
            results.append,
            errors.append,
        )
        run_blocking(job)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 1)
        self.assertGreater(len(fractions), 0)
        segmentation, table = results[0]
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
        self.assertIsNone(volumeNode.GetStorageNode())  # the export did not attach a storage node
        self.delayDisplay("COVID Hierarchical self-test passed")
