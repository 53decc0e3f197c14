"""Neoplasm NLB: neoplasm presence per CT slice and its segmentation with specialised non-local blocks.

Seed 002 (Samarin et al.): a U-Net with non-local blocks (basic, localized, symmetry-based,
symmetry-localized) scores every axial slice of a CT, or a single 2-D snapshot, for the presence of a
neoplasm and segments it on slices judged positive. The widget is thin: it runs ``lungai nlb classify`` in a
subprocess (progress, Cancel) and hands the files to :class:`NeoplasmNLBLib.logic.NeoplasmNLBLogic`.
"""

import os
import tempfile

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

try:  # the Qt-free logic lives in NeoplasmNLBLib; re-exported here as Slicer's Logic entry
    from NeoplasmNLBLib.logic import NeoplasmNLBLogic  # noqa: F401
except ImportError:  # torch or lungai not installed yet: the widget says so and offers nothing else
    NeoplasmNLBLogic = None

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


class NeoplasmNLBWidget(ScriptedLoadableModuleWidget):
    """Gathers the inputs, runs the command line in a subprocess, shows the results."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from LungAICommon.dependencies import ensure_dependencies

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/NeoplasmNLB.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.process = None
        self.outDir = None
        if not ensure_dependencies():
            self.ui.statusLabel.text = (
                "Install the Python dependencies (see the extension's README) to use this module."
            )
            self.ui.applyButton.enabled = False
            return
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic

        self.logic = NeoplasmNLBLogic()
        self.ui.modelSelector.clear()
        for model_id in self.logic.available_models():
            self.ui.modelSelector.addItem(model_id)
        self.ui.modelSelector.addItem(CUSTOM_WEIGHTS)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)
        self.ui.inputSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateApply)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.onModelChanged()

    def cleanup(self):
        if self.process is not None:
            self.process.cancel()

    def onModelChanged(self, *_):
        custom = self.ui.modelSelector.currentText == CUSTOM_WEIGHTS
        self.ui.weightsPath.enabled = custom
        self.ui.blockLabel.text = "" if custom else self.logic.block_type(self.ui.modelSelector.currentText)
        self.updateApply()

    def updateApply(self, *_):
        self.ui.applyButton.enabled = self.process is not None or self.ui.inputSelector.currentNode() is not None

    def onApply(self):
        if self.process is not None:
            self.process.cancel()
            return
        from LungAICommon.process import LungAIProcess

        node = self.ui.inputSelector.currentNode()
        custom = self.ui.modelSelector.currentText == CUSTOM_WEIGHTS
        self.outDir = tempfile.mkdtemp(prefix="NeoplasmNLB-")
        try:
            path = self.logic.write_input(node, os.path.join(self.outDir, "input.nrrd"))
        except Exception as error:  # bad input: say what is wrong, change nothing
            self.ui.statusLabel.text = str(error)
            return
        arguments = self.logic.cli_arguments(
            path,
            os.path.join(self.outDir, "results"),
            model_id=None if custom else self.ui.modelSelector.currentText,
            weights=self.ui.weightsPath.currentPath if custom else None,
            threshold=self.ui.thresholdSlider.value,
            device=self.ui.deviceSelector.currentText,
        )
        self.ui.applyButton.text = "Cancel"
        self.ui.progressBar.value = 0
        self.ui.statusLabel.text = "Running..."
        self.process = LungAIProcess(arguments, self.onProgress, self.onFinished)

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def onFinished(self, exitCode, message):
        self.process = None
        self.ui.applyButton.text = "Apply"
        if exitCode != 0:
            self.ui.statusLabel.text = message or "Cancelled."
            return
        node = self.ui.inputSelector.currentNode()
        result = self.logic.import_results(os.path.join(self.outDir, "results"), node, self.ui.thresholdSlider.value)
        self.showResults(node, result)

    def showResults(self, node, result):
        slicer.util.setSliceViewerLayers(background=node)
        result.segmentation.CreateClosedSurfaceRepresentation()
        slicer.modules.plots.logic().ShowChartInLayout(result.chart)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(result.table.GetID())
        slicer.app.applicationLogic().PropagateTableSelection()
        self.logic.jump_to_slice(node, result.most_likely_slice)
        positive = int((result.probabilities >= self.ui.thresholdSlider.value).sum())
        self.ui.progressBar.value = 100
        self.ui.statusLabel.text = (
            f"{positive} of {len(result.probabilities)} slice(s) at or above the threshold; "
            f"most likely slice {result.most_likely_slice} "
            f"(p = {result.probabilities[result.most_likely_slice]:.2f})."
        )


class NeoplasmNLBTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only: the chest CT shipped with slicerio and a bundled IQ-OTH/NCCD snapshot."""

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def runTest(self):
        self.setUp()
        self.test_chest_ct_every_slice()
        self.setUp()
        self.test_single_snapshot()

    def test_chest_ct_every_slice(self):
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic

        from lungai.sample_data import chest_ct
        from LungAICommon.mrml import rows_from_table_node, volume_node_from_volume

        ct = chest_ct()
        node = volume_node_from_volume(ct, "CTChest")
        result = NeoplasmNLBLogic().run(node, threshold=0.5, device="cpu")
        rows = rows_from_table_node(result.table)
        self.assertEqual(len(rows), ct.shape[0])
        self.assertEqual(result.chart.GetNumberOfPlotSeriesNodes(), 2)
        self.assertIsNotNone(
            result.segmentation.GetSegmentation().GetSegment(
                result.segmentation.GetSegmentation().GetSegmentIdBySegmentName("Neoplasm")
            )
        )
        self.delayDisplay(f"Chest CT scored: most likely slice {result.most_likely_slice}")

    def test_single_snapshot(self):
        from NeoplasmNLBLib.logic import NeoplasmNLBLogic

        from lungai.nlb.data import bundled_sample_dir, list_snapshots
        from lungai.nlb.pipeline import read_input
        from LungAICommon.mrml import rows_from_table_node, volume_node_from_volume

        path = [s.path for s in list_snapshots(bundled_sample_dir()) if s.category == "malignant"][0]
        node = volume_node_from_volume(read_input(path), "snapshot")
        result = NeoplasmNLBLogic().run(node, threshold=0.5, device="cpu")
        self.assertEqual(len(rows_from_table_node(result.table)), 1)
        self.delayDisplay(f"{os.path.basename(str(path))}: neoplasm probability {result.probabilities[0]:.2f}")
