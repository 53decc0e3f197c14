"""Neoplasm NLB: neoplasm presence per CT slice and its segmentation with specialised non-local blocks.

Seed 002 (Samarin et al.): a U-Net with non-local blocks (basic, localized, symmetry-based,
symmetry-localized) scores every axial slice of a CT, or a single 2-D snapshot, for the presence of a
neoplasm and segments it on slices judged positive. The widget is thin: it runs ``lungai nlb classify`` in a
subprocess through LungAICommon.job (progress, Cancel) and hands the files to
:class:`NeoplasmNLBLib.logic.NeoplasmNLBLogic` (imported only when a run starts).
"""

import os
from typing import Annotated

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from LungAICommon.widget import DEVICES, LungAIModuleLogic, LungAIModuleWidget, registeredModels

CUSTOM_WEIGHTS = "Weights file..."


class NeoplasmNLB(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Neoplasm NLB"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.dependencies = []
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = (
            "Scores every axial slice of a CT (HU) or a single 8-bit snapshot for the presence of a lung neoplasm "
            "with a U-Net with specialised non-local blocks, and segments the neoplasm on slices whose probability "
            "reaches the threshold. Outputs: a table (slice, probability, decision), a plot of probability against "
            "slice, and a segmentation; the views jump to the most likely slice. HU is shown to the network through "
            "the window (-600, 400) HU. Research use only, not for diagnosis."
        )
        self.parent.acknowledgementText = (
            "Method: Samarin et al., Specialized Non-local Blocks for Recognizing Tumors on CT Snapshots of Human "
            "Lungs. Weights trained on IQ-OTH/NCCD (CC BY 4.0) and LIDC-IDRI (CC BY 3.0). Part of SlicerLungAI."
        )


@parameterNodeWrapper
class NeoplasmNLBParameterNode:
    inputVolume: vtkMRMLScalarVolumeNode  # vector (colour) volumes are scalar volume nodes too
    modelId: str = ""  # "" = the backend's default model
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    device: Annotated[str, Choice(DEVICES)] = "auto"


class NeoplasmNLBLogic(LungAIModuleLogic):
    parameterNodeClass = NeoplasmNLBParameterNode


def classificationJob(inputNode, modelId=None, weights=None, threshold=0.5, device="auto"):
    """(prepare, importResults) of one ``lungai nlb classify`` run on what was chosen now: the one place that
    knows the module's command line and result files."""

    def prepare(workDir):
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic as Logic

        path = Logic.export_volume(inputNode, workDir / "input.nrrd")
        return Logic.cli_arguments(
            path, workDir / "results", model_id=modelId, weights=weights, threshold=threshold, device=device
        )

    def importResults(workDir):
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic as Logic

        return Logic().import_results(workDir / "results", inputNode, threshold)

    return prepare, importResults


class NeoplasmNLBWidget(LungAIModuleWidget):
    """Gathers the inputs when Apply is pressed, runs the command line in a subprocess, shows the results."""

    uiFile = "UI/NeoplasmNLB.ui"
    logicClass = NeoplasmNLBLogic

    def setupWiring(self):
        self.ui.modelSelector.connect("activated(int)", self.onModelChosen)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)

    def guiParameters(self):
        return {
            "inputVolume": self.ui.inputSelector,
            "threshold": self.ui.thresholdSlider,
            "device": self.ui.deviceSelector,
        }

    def enter(self):
        if self.ui.modelSelector.count == 0:  # listed on first use: reading the registry may load torch
            for modelId, label in registeredModels("NeoplasmNLB") or [("", "Default model")]:
                self.ui.modelSelector.addItem(label, modelId)
            self.ui.modelSelector.addItem(CUSTOM_WEIGHTS, CUSTOM_WEIGHTS)
        super().enter()

    _shownModel = None

    def currentModel(self):
        return self.ui.modelSelector.itemData(self.ui.modelSelector.currentIndex)

    def onModelChosen(self, index):
        if self._parameterNode is not None:
            self._parameterNode.modelId = self.ui.modelSelector.itemData(index) or ""

    def updateGUIFromParameterNode(self, caller=None, event=None):
        parameters = self._parameterNode
        if parameters is not None:
            index = self.ui.modelSelector.findData(parameters.modelId)
            if index >= 0:
                self.ui.modelSelector.setCurrentIndex(index)
            elif self.ui.modelSelector.count > 0:  # a model that is not listed (any more): the first one
                parameters.modelId = self.currentModel()
                return
        model = self.currentModel()
        self.ui.weightsPath.enabled = model == CUSTOM_WEIGHTS
        if model != self._shownModel:  # reading the block type loads the checkpoint: once per choice
            self._shownModel = model
            self.ui.blockLabel.text = "" if model == CUSTOM_WEIGHTS else blockType(model)
        ready = parameters is not None and parameters.inputVolume is not None
        self.ui.applyButton.enabled = self.running or ready

    def onApply(self):
        if self.running:
            self.cancelJob()
            return
        parameters = self._parameterNode
        node, threshold = parameters.inputVolume, parameters.threshold
        custom = self.currentModel() == CUSTOM_WEIGHTS
        prepare, importResults = classificationJob(
            node,
            modelId=None if custom else (parameters.modelId or None),
            weights=self.ui.weightsPath.currentPath if custom else None,
            threshold=threshold,
            device=parameters.device,
        )
        self.startJob(
            self.ui.applyButton, "Neoplasm NLB", prepare, importResults, lambda r: self.showResults(node, r, threshold)
        )

    def showResults(self, node, result, threshold):
        slicer.util.setSliceViewerLayers(background=node)
        result.segmentation.CreateClosedSurfaceRepresentation()
        slicer.modules.plots.logic().ShowChartInLayout(result.chart)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(result.table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic as Logic

        Logic().jump_to_slice(node, result.most_likely_slice)
        positive = int((result.probabilities >= threshold).sum())
        self.ui.statusLabel.text = (
            f"{positive} of {len(result.probabilities)} slice(s) at or above the threshold; "
            f"most likely slice {result.most_likely_slice} "
            f"(p = {result.probabilities[result.most_likely_slice]:.2f})."
        )


def blockType(modelId):
    """The non-local block type of a registered model ("" when it cannot be read yet)."""
    if not modelId:
        return ""
    try:
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic as Logic

        return Logic.block_type(modelId)
    except Exception:  # noqa: BLE001 - dependencies not installed yet, or an unreadable checkpoint
        return ""


class NeoplasmNLBTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only (the chest CT shipped with slicerio and a bundled IQ-OTH/NCCD snapshot),
    through the same subprocess path as Apply. Skips when the Python dependencies are missing."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_chest_ct_every_slice()
        self.setUp()
        self.test_single_snapshot()

    def _run(self, node):
        from LungAICommon.job import LungAIJob, run_blocking

        results, errors = [], []
        prepare, importResults = classificationJob(node, threshold=0.5, device="cpu")
        run_blocking(
            LungAIJob("Neoplasm NLB", prepare, importResults, lambda f, m: None, results.append, errors.append)
        )
        self.assertEqual(errors, [])
        return results[0]

    def test_chest_ct_every_slice(self):
        from LungAICommon.widget import skipTestWithoutDependencies

        skipTestWithoutDependencies(self)
        from lungai.sample_data import chest_ct
        from LungAICommon.mrml import rows_from_table_node, volume_node_from_volume

        ct = chest_ct()
        node = volume_node_from_volume(ct, "CTChest")
        result = self._run(node)
        rows = rows_from_table_node(result.table)
        self.assertEqual(len(rows), ct.shape[0])
        self.assertEqual(result.chart.GetNumberOfPlotSeriesNodes(), 2)
        segmentation = result.segmentation.GetSegmentation()
        self.assertIsNotNone(segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Neoplasm")))
        self.delayDisplay(f"Chest CT scored: most likely slice {result.most_likely_slice}")

    def test_single_snapshot(self):
        from LungAICommon.widget import skipTestWithoutDependencies

        skipTestWithoutDependencies(self)
        from lungai.nlb.data import bundled_sample_dir, list_snapshots
        from lungai.nlb.pipeline import read_input
        from LungAICommon.mrml import rows_from_table_node, volume_node_from_volume

        path = [s.path for s in list_snapshots(bundled_sample_dir()) if s.category == "malignant"][0]
        node = volume_node_from_volume(read_input(path), "snapshot")
        result = self._run(node)
        self.assertEqual(len(rows_from_table_node(result.table)), 1)
        self.delayDisplay(f"{os.path.basename(str(path))}: neoplasm probability {result.probabilities[0]:.2f}")
