"""Active Learning Sampler: which slices to annotate next (uncertainty slice sampling, Chlebus et al. 2022).

MC-dropout predictive entropy per voxel (colour overlay), each volume's slice-uncertainty profile with the
selected slices marked, a ranked table of slices (USS, UVS, RVS, RSS), jump / annotate / mark buttons, and
retraining on the annotated slices only. The widget only wires: the logic lives in ActiveLearningSamplerLib.
"""

import tempfile
from pathlib import Path

import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)

try:
    from ActiveLearningSamplerLib import ActiveLearningSamplerLogic  # noqa: F401  (the module's logic)
except ImportError:  # torch or lungai not installed yet: the widget offers to install them
    ActiveLearningSamplerLogic = None

STRATEGIES = ["uss", "uvs", "rvs", "rss"]


class ActiveLearningSampler(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Active Learning Sampler"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = (
            "Scores CT volumes with MC-dropout predictive entropy, ranks the slices to annotate next (uncertainty "
            "slice sampling: local maxima of each volume's slice-uncertainty profile, at least 5 slices apart), "
            "and retrains the model on the slices you annotated (weighted soft Dice)."
        )
        self.parent.acknowledgementText = (
            "Part of SlicerLungAI. Method: G. Chlebus et al., Robust segmentation models using an uncertainty "
            "slice sampling-based annotation workflow, IEEE Access 10 (2022)."
        )


class ActiveLearningSamplerWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        from LungAICommon.dependencies import ensure_dependencies

        if not ensure_dependencies():
            self.layout.addWidget(
                qt.QLabel(
                    "Active Learning Sampler needs PyTorch and the lungai backend; "
                    "reload the module after installing them."
                )
            )
            return
        from ActiveLearningSamplerLib import ActiveLearningSamplerLogic

        uiWidget = slicer.util.loadUI(self.resourcePath("UI/ActiveLearningSampler.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = ActiveLearningSamplerLogic()
        self.process = None
        self.scores = None
        self.rows = []
        self.tableNode = None
        self._fillModels()
        self.ui.scoreButton.connect("clicked(bool)", self.onScore)
        self.ui.jumpButton.connect("clicked(bool)", self.onJump)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditor)
        self.ui.markAnnotatedButton.connect("clicked(bool)", self.onMarkAnnotated)
        self.ui.retrainButton.connect("clicked(bool)", self.onRetrain)
        self.ui.modelSelector.connect("currentIndexChanged(int)", self.onModelChanged)

    def _fillModels(self):
        from lungai.registry import load_registry

        self.ui.modelSelector.clear()
        for entry in load_registry():
            if entry.module == "ActiveLearningSampler":
                self.ui.modelSelector.addItem(f"{entry.id} (v{entry.version})", entry.id)
        index = self.ui.modelSelector.findData(self.logic.model_id)
        self.ui.modelSelector.setCurrentIndex(max(index, 0))

    def onModelChanged(self, index):
        if index >= 0:
            self.logic.parameter_node().SetParameter("ModelId", self.ui.modelSelector.itemData(index))

    def _pool(self):
        return list(self.ui.poolSelector.checkedNodes())

    def _run(self, arguments, on_success, button, label):
        from LungAICommon.process import LungAIProcess

        if self.process is not None and self.process.running:
            self.process.cancel()
            return

        def progress(fraction, message):
            self.ui.progressBar.setValue(int(100 * fraction))
            self.ui.statusLabel.setText(message)

        def finished(exitCode, message):
            self.process = None
            button.setText(label)
            if exitCode == 0:
                try:
                    on_success()
                except Exception as error:  # a user-facing LungAIError from importing the results
                    self.ui.statusLabel.setText(f"Error: {error}")
            else:
                self.ui.statusLabel.setText(message or f"Failed (exit code {exitCode}).")

        button.setText("Cancel")
        self.process = LungAIProcess(arguments, progress, finished)

    def onScore(self):
        pool = self._pool()
        workDir = Path(tempfile.mkdtemp(prefix="lungai-al-"))
        try:
            arguments = self.logic.score_arguments(pool, workDir, n_samples=self.ui.samplesSpinBox.value)
        except Exception as error:
            self.ui.statusLabel.setText(f"Error: {error}")
            return

        def imported():
            self.scores = self.logic.import_scores(pool, workDir)
            self._showResults(pool)

        self._run(arguments, imported, self.ui.scoreButton, "Score and rank")

    def _showResults(self, pool):
        strategy = STRATEGIES[self.ui.strategySelector.currentIndex]
        self.tableNode, self.rows = self.logic.ranked_table(
            pool, self.scores, strategy, self.ui.budgetSpinBox.value, table_node=self.tableNode
        )
        self.ui.rankedTableView.setMRMLTableNode(self.tableNode)
        chart = self.logic.profile_chart(pool, self.scores, self.rows)
        slicer.modules.plots.logic().ShowChartInLayout(chart)
        first = pool[0]
        slicer.util.setSliceViewerLayers(
            background=first, foreground=self.scores.entropy[first.GetID()], foregroundOpacity=0.4
        )
        self.ui.statusLabel.setText(
            f"{len(self.rows)} {strategy.upper()} selections; pick a row, jump, annotate, mark."
        )
        self._showAnnotated(pool)

    def _selectedRow(self):
        index = self.ui.rankedTableView.currentIndex()
        if not self.rows or index.row() < 0:
            self.ui.statusLabel.setText("Select a row of the table first.")
            return None
        return self.rows[index.row()]

    def onJump(self):
        row = self._selectedRow()
        if row is not None:
            node = slicer.mrmlScene.GetNodeByID(row["volume_node_id"])
            slicer.util.setSliceViewerLayers(background=node, foreground=self.scores.entropy[node.GetID()])
            self.logic.jump_to_slice(node, max(row["slice"], 0))

    def onSegmentEditor(self):
        row = self._selectedRow()
        if row is None:
            return
        self.onJump()
        node = slicer.mrmlScene.GetNodeByID(row["volume_node_id"])
        segmentation = self.ui.segmentSelector.currentNode()
        if segmentation is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", f"{node.GetName()} annotations"
            )
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(node)
            segmentation.GetSegmentation().AddEmptySegment("lung")
            self.ui.segmentSelector.setCurrentNode(segmentation)
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(segmentation)
        editor.setSourceVolumeNode(node)

    def onMarkAnnotated(self):
        row = self._selectedRow()
        if row is None:
            return
        node = slicer.mrmlScene.GetNodeByID(row["volume_node_id"])
        slices = range(node.GetImageData().GetDimensions()[2]) if row["slice"] < 0 else [row["slice"]]
        for k in slices:
            self.logic.set_annotated(node, k)
        self._showAnnotated(self._pool())

    def _showAnnotated(self, pool):
        parts = []
        for node in pool:
            indices = [int(k) for k in self.logic.annotated_slices(node).nonzero()[0]]
            if indices:
                parts.append(f"{node.GetName()}: {', '.join(map(str, indices))}")
        self.ui.annotatedLabel.setText("Annotated slices: " + ("; ".join(parts) or "none"))

    def onRetrain(self):
        pool = self._pool()
        workDir = Path(tempfile.mkdtemp(prefix="lungai-al-retrain-"))
        modelsDir = Path(slicer.app.slicerUserSettingsFilePath).parent / "SlicerLungAI" / "models"
        modelsDir.mkdir(parents=True, exist_ok=True)
        outPath = Path(tempfile.mkstemp(prefix=f"{self.logic.model_id}-", suffix=".pt", dir=modelsDir)[1])
        outPath.unlink()
        try:
            arguments = self.logic.retrain_arguments(
                pool,
                self.ui.segmentSelector.currentNode(),
                self._segmentName(),
                workDir,
                outPath,
                steps=self.ui.stepsSpinBox.value,
            )
        except Exception as error:
            self.ui.statusLabel.setText(f"Error: {error}")
            return

        def imported():
            newId = self.logic.import_retrained(outPath)
            self._fillModels()
            self.ui.statusLabel.setText(f"Retrained: now using {newId}. Score and rank again.")

        self._run(arguments, imported, self.ui.retrainButton, "Retrain on annotated slices")

    def _segmentName(self):
        segmentation = self.ui.segmentSelector.currentNode()
        segmentId = self.ui.segmentSelector.currentSegmentID()
        if segmentation is None or not segmentId:
            return ""
        return segmentation.GetSegmentation().GetSegment(segmentId).GetName()

    def cleanup(self):
        if getattr(self, "process", None) is not None:
            self.process.cancel()


class ActiveLearningSamplerTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only: the slicerio chest CT and the bundled al_unet_lungs weights."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_score_rank_mark()

    def test_score_rank_mark(self):
        import numpy as np
        from ActiveLearningSamplerLib import ActiveLearningSamplerLogic

        from lungai.sample_data import chest_ct
        from LungAICommon import mrml

        ct = mrml.volume_node_from_volume(chest_ct(), "CTChest4")
        logic = ActiveLearningSamplerLogic()
        scores = logic.score([ct], n_samples=4)
        entropy = scores.entropy[ct.GetID()]
        self.assertEqual(entropy.GetImageData().GetDimensions(), ct.GetImageData().GetDimensions())
        table, rows = logic.ranked_table([ct], scores, "uss", budget=3)
        values = [r["uncertainty"] for r in rows]
        self.assertEqual(values, sorted(values, reverse=True))
        self.assertGreater(len(rows), 0)
        chart = logic.profile_chart([ct], scores, rows)
        self.assertGreaterEqual(chart.GetNumberOfPlotSeriesNodes(), 1)
        logic.jump_to_slice(ct, rows[0]["slice"])
        logic.set_annotated(ct, rows[0]["slice"])
        self.assertTrue(logic.annotated_slices(ct)[rows[0]["slice"]])
        self.assertTrue(np.isfinite(scores.volume_uncertainty[ct.GetID()]))
        self.delayDisplay("Active Learning Sampler self-test passed")
