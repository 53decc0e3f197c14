"""UGS-Net Segmentation: lung nodules with a Multi-Confidence Mask (high-confidence core, low-confidence rim).

Thin Slicer module over UGSNetSegmentationLib.logic (Qt-free, tested headless). The widget gathers the CT,
the nodule points, the model and the device, runs ``lungai ugsnet segment`` in a subprocess (progress and
Cancel), then loads the results as one segmentation node and one table through the logic. The module also
registers the Segment Editor effect "UGS-Net nodule" (SegmentEditorUGSNetEffect).
"""

import os
import tempfile

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic, points_from_markups  # noqa: F401 (re-export)

DEVICES = ["auto", "cpu", "cuda", "mps"]


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
        slicer.app.connect("startupCompleted()", register_editor_effect)


def register_editor_effect():
    """Register "UGS-Net nodule" with the Segment Editor (as SegmentEditorExtraEffects does)."""
    import qSlicerSegmentationsEditorEffectsPythonQt as effects

    effect = effects.qSlicerSegmentEditorScriptedEffect(None)
    path = os.path.join(os.path.dirname(__file__), "SegmentEditorUGSNetEffect", "SegmentEditorEffect.py")
    effect.setPythonSource(path.replace("\\", "/"))
    effect.self().register()


class UGSNetSegmentationWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        widget = slicer.util.loadUI(self.resourcePath("UI/UGSNetSegmentation.ui"))
        self.layout.addWidget(widget)
        self.ui = slicer.util.childWidgetVariables(widget)
        widget.setMRMLScene(slicer.mrmlScene)
        self.logic = UGSNetSegmentationLogic()
        self.process = None
        self.workDir = None
        self.ui.deviceComboBox.addItems(DEVICES)
        self.ui.modelComboBox.addItem("Bundled UGS-Net (LIDC-IDRI demo weights)", "")
        self.ui.pointsPlaceWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.ui.pointsPlaceWidget.setCurrentNode)
        self.ui.applyButton.connect("clicked(bool)", self.onApply)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.volumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.pointsSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.updateButtons()

    def updateButtons(self, *_):
        running = self.process is not None
        self.ui.applyButton.enabled = (
            not running and bool(self.ui.volumeSelector.currentNode()) and bool(self.ui.pointsSelector.currentNode())
        )
        self.ui.cancelButton.enabled = running

    def weights(self):
        path = self.ui.weightsPathLineEdit.currentPath
        return path or None

    def onApply(self):
        from LungAICommon.process import LungAIProcess

        with slicer.util.tryWithErrorDisplay("UGS-Net could not start.", waitCursor=True):
            volume_node = self.ui.volumeSelector.currentNode()
            points = points_from_markups(self.ui.pointsSelector.currentNode())
            self.workDir = tempfile.mkdtemp(prefix="ugsnet-")
            volume_path = os.path.join(self.workDir, "ct.nrrd")
            if not slicer.util.saveNode(volume_node, volume_path):
                raise RuntimeError(f"Could not write '{volume_node.GetName()}' to {volume_path}.")
            points_path = self.logic.write_points_csv(points, os.path.join(self.workDir, "points.csv"))
            arguments = self.logic.cli_arguments(
                volume_path,
                points_path,
                os.path.join(self.workDir, "out"),
                self.weights(),
                self.ui.deviceComboBox.currentText,
            )
            self.ui.statusLabel.text = "Segmenting..."
            self.ui.progressBar.value = 0
            self.process = LungAIProcess(arguments, self.onProgress, self.onFinished)
            self.updateButtons()

    def onProgress(self, fraction, message):
        self.ui.progressBar.value = int(100 * fraction)
        self.ui.statusLabel.text = message

    def onCancel(self):
        if self.process is not None:
            self.process.cancel()

    def onFinished(self, exit_code, message):
        self.process = None
        self.updateButtons()
        if exit_code != 0:
            self.ui.statusLabel.text = message or f"lungai exited with code {exit_code}."
            return
        with slicer.util.tryWithErrorDisplay("Could not load the UGS-Net results.", waitCursor=True):
            segmentation, table = self.logic.import_cli_results(
                os.path.join(self.workDir, "out"),
                self.ui.volumeSelector.currentNode(),
                self.ui.outputSegmentationSelector.currentNode(),
                None,
            )
            self.ui.outputSegmentationSelector.setCurrentNode(segmentation)
            self.ui.progressBar.value = 100
            self.ui.statusLabel.text = f"Done: {segmentation.GetName()} and table {table.GetName()}."
            show_table(table)


def show_table(table_node):
    """Show ``table_node`` in a layout with a table view (Slicer's four-up + table layout)."""
    layout = slicer.app.layoutManager()
    if layout is None:  # --no-main-window (self-tests on build machines)
        return
    layout.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    selection = slicer.app.applicationLogic().GetSelectionNode()
    selection.SetActiveTableID(table_node.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


class UGSNetSegmentationTest(ScriptedLoadableModuleTest):
    """Self-test on the bundled sample and bundled weights only (no downloads)."""

    def runTest(self):
        self.setUp()
        self.test_segment_bundled_nodule()

    def setUp(self):
        slicer.mrmlScene.Clear(0)

    def test_segment_bundled_nodule(self):
        from lungai.ugsnet.sample import crop_volume, load_sample
        from LungAICommon import mrml

        self.delayDisplay("Segmenting a bundled LIDC-IDRI nodule")
        volume, point = crop_volume(load_sample(), 5, slices=3)
        volume_node = mrml.volume_node_from_volume(volume, "UGS-Net sample CT")
        markups = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "nodules")
        markups.AddControlPoint(*point)
        logic = UGSNetSegmentationLogic()
        segmentation, table, results = logic.segment(volume_node, points_from_markups(markups), device="cpu")
        names = [
            segmentation.GetSegmentation().GetNthSegment(i).GetName()
            for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
        ]
        self.assertEqual(names, ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"])
        self.assertTrue(results[0].masks["final"].any())
        rows = mrml.rows_from_table_node(table)
        self.assertEqual(rows[0]["nodule"], "Nodule 1")
        self.assertGreater(rows[0]["volume_final_mm3"], 0)
        show_table(table)
        self.delayDisplay("UGS-Net self-test passed")
