"""Active Learning Sampler: which slices to annotate next (uncertainty slice sampling, Chlebus et al. 2022).

MC-dropout predictive entropy per voxel (colour overlay), each volume's slice-uncertainty profile with the
selected slices marked, a ranked table of slices (USS, UVS, RVS, RSS), jump / annotate / mark buttons, and
retraining on the annotated slices only. Scoring and retraining run ``lungai al score`` / ``lungai al retrain``
in a subprocess through LungAICommon.job (progress, Cancel). The widget only wires: the logic lives in
ActiveLearningSamplerLib, imported only when it is needed (torch never loads with Slicer).
"""

from typing import Annotated

import slicer
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from LungAICommon.widget import LungAIModuleLogic, LungAIModuleWidget, registeredModels

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


@parameterNodeWrapper
class ActiveLearningSamplerParameterNode:
    # "ModelId" is the parameter ActiveLearningSamplerLib's logic reads and moves to each retrained version;
    # "" means its default model.
    ModelId: str = ""
    strategy: str = "uss"
    samples: Annotated[int, WithinRange(2, 200)] = 20
    budget: Annotated[int, WithinRange(1, 1000)] = 5
    steps: Annotated[int, WithinRange(1, 100000)] = 100


class ActiveLearningSamplerLogic(LungAIModuleLogic):
    parameterNodeClass = ActiveLearningSamplerParameterNode


def backendLogic():
    """The Qt-free logic on the current scene's parameter node (made per use, so it survives scene close)."""
    from ActiveLearningSamplerLib import ActiveLearningSamplerLogic as Logic

    return Logic()


def scoringJob(pool, samples):
    """(prepare, importResults) of ``lungai al score`` on the pool chosen now."""

    def prepare(workDir):
        return backendLogic().score_arguments(pool, workDir, n_samples=samples)

    def importResults(workDir):
        return backendLogic().import_scores(pool, workDir)

    return prepare, importResults


def retrainingJob(pool, segmentationNode, segmentName, steps):
    """(prepare, importResults) of ``lungai al retrain --register`` on the annotations chosen now; the result is
    the id of the new model version, which the backend published into the user's model registry (a copy of the
    weights kept outside the extension, so the temporary folder can go)."""

    def prepare(workDir):
        return backendLogic().retrain_arguments(
            pool, segmentationNode, segmentName, workDir, workDir / "retrained.pt", steps=steps
        )

    def importResults(workDir):
        return backendLogic().import_retrained(workDir / "retrained.pt")

    return prepare, importResults


class ActiveLearningSamplerWidget(LungAIModuleWidget):
    uiFile = "UI/ActiveLearningSampler.ui"
    logicClass = ActiveLearningSamplerLogic

    def setupWiring(self):
        self.scores = None
        self.rows = []
        self.tableNode = None
        self.ui.scoreButton.connect("clicked(bool)", self.onScore)
        self.ui.jumpButton.connect("clicked(bool)", self.onJump)
        self.ui.segmentEditorButton.connect("clicked(bool)", self.onSegmentEditor)
        self.ui.markAnnotatedButton.connect("clicked(bool)", self.onMarkAnnotated)
        self.ui.retrainButton.connect("clicked(bool)", self.onRetrain)
        self.ui.modelSelector.connect("activated(int)", self.onModelChosen)
        self.ui.strategySelector.connect("activated(int)", self.onStrategyChosen)

    def guiParameters(self):
        return {"samples": self.ui.samplesSpinBox, "budget": self.ui.budgetSpinBox, "steps": self.ui.stepsSpinBox}

    def enter(self):
        if self.ui.modelSelector.count == 0:
            self.fillModels()
        super().enter()

    def fillModels(self):
        """List the registered models (on first use and after a retrain: reading the registry may load torch)."""
        self.ui.modelSelector.clear()
        for modelId, label in registeredModels("ActiveLearningSampler") or [("", "Default model")]:
            self.ui.modelSelector.addItem(label, modelId)

    def onModelChosen(self, index):
        if self._parameterNode is not None:
            self._parameterNode.ModelId = self.ui.modelSelector.itemData(index) or ""

    def onStrategyChosen(self, index):
        if self._parameterNode is not None:
            self._parameterNode.strategy = STRATEGIES[index]

    def updateGUIFromParameterNode(self, caller=None, event=None):
        for button in (self.ui.scoreButton, self.ui.retrainButton):  # one run at a time; its button cancels it
            button.enabled = not self.running or button is self._jobButton
        parameters = self._parameterNode
        if parameters is None:
            return
        index = self.ui.modelSelector.findData(parameters.ModelId)
        if index >= 0:
            self.ui.modelSelector.setCurrentIndex(index)
        self.ui.strategySelector.setCurrentIndex(STRATEGIES.index(parameters.strategy))

    def onSceneStartClose(self, caller, event):
        super().onSceneStartClose(caller, event)
        self.scores, self.rows, self.tableNode = None, [], None

    def _pool(self):
        return list(self.ui.poolSelector.checkedNodes())

    def onScore(self):
        pool, parameters = self._pool(), self._parameterNode
        strategy, budget = parameters.strategy, parameters.budget

        def show(scores):
            self.scores = scores
            self._showResults(pool, strategy, budget)

        prepare, importResults = scoringJob(pool, parameters.samples)
        self.startJob(self.ui.scoreButton, "Active learning scoring", prepare, importResults, show)

    def _showResults(self, pool, strategy, budget):
        logic = backendLogic()
        self.tableNode, self.rows = logic.ranked_table(pool, self.scores, strategy, budget, table_node=self.tableNode)
        self.ui.rankedTableView.setMRMLTableNode(self.tableNode)
        chart = logic.profile_chart(pool, self.scores, self.rows)
        slicer.modules.plots.logic().ShowChartInLayout(chart)
        first = pool[0]
        slicer.util.setSliceViewerLayers(
            background=first, foreground=self.scores.entropy[first.GetID()], foregroundOpacity=0.4
        )
        self.ui.statusLabel.text = f"{len(self.rows)} {strategy.upper()} selections; pick a row, jump, annotate, mark."
        self._showAnnotated(pool)

    def _selectedRow(self):
        index = self.ui.rankedTableView.currentIndex()
        if not self.rows or index.row() < 0:
            self.ui.statusLabel.text = "Score the pool, then select a row of the table."
            return None
        return self.rows[index.row()]

    def onJump(self):
        row = self._selectedRow()
        if row is not None:
            node = slicer.mrmlScene.GetNodeByID(row["volume_node_id"])
            slicer.util.setSliceViewerLayers(background=node, foreground=self.scores.entropy[node.GetID()])
            backendLogic().jump_to_slice(node, max(row["slice"], 0))

    def onSegmentEditor(self):
        row = self._selectedRow()
        if row is None:
            return
        self.onJump()
        node = slicer.mrmlScene.GetNodeByID(row["volume_node_id"])
        segmentation = self.ui.segmentSelector.currentNode()
        if segmentation is None:
            segmentation = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(f"{node.GetName()} annotations")
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
        logic = backendLogic()
        slices = range(node.GetImageData().GetDimensions()[2]) if row["slice"] < 0 else [row["slice"]]
        for k in slices:
            logic.set_annotated(node, k)
        self._showAnnotated(self._pool())

    def _showAnnotated(self, pool):
        logic = backendLogic()
        parts = []
        for node in pool:
            indices = [int(k) for k in logic.annotated_slices(node).nonzero()[0]]
            if indices:
                parts.append(f"{node.GetName()}: {', '.join(map(str, indices))}")
        self.ui.annotatedLabel.text = "Annotated slices: " + ("; ".join(parts) or "none")

    def onRetrain(self):
        if self.running:
            self.cancelJob()
            return
        pool, parameters = self._pool(), self._parameterNode
        segmentation, segmentName = self.ui.segmentSelector.currentNode(), self._segmentName()

        def show(newId):
            self.fillModels()
            if self._parameterNode is not None:
                self._parameterNode.ModelId = newId
            self.ui.statusLabel.text = f"Retrained: now using {newId}. Score and rank again."

        prepare, importResults = retrainingJob(pool, segmentation, segmentName, parameters.steps)
        self.startJob(self.ui.retrainButton, "Active learning retraining", prepare, importResults, show)

    def _segmentName(self):
        segmentation = self.ui.segmentSelector.currentNode()
        segmentId = self.ui.segmentSelector.currentSegmentID()
        if segmentation is None or not segmentId:
            return ""
        return segmentation.GetSegmentation().GetSegment(segmentId).GetName()


class ActiveLearningSamplerTest(ScriptedLoadableModuleTest):
    """Self-test on bundled data only (the slicerio chest CT, the bundled al_unet_lungs weights), scoring through
    the same subprocess path as the Score button. Skips when the Python dependencies are missing."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_score_rank_mark()

    def test_score_rank_mark(self):
        from LungAICommon.widget import skipTestWithoutDependencies

        skipTestWithoutDependencies(self)
        import numpy as np

        from lungai.sample_data import chest_ct
        from LungAICommon import mrml
        from LungAICommon.job import LungAIJob, run_blocking

        ct = mrml.volume_node_from_volume(chest_ct(), "CTChest4")
        results, errors = [], []
        prepare, importResults = scoringJob([ct], samples=4)
        run_blocking(LungAIJob("scoring", prepare, importResults, lambda f, m: None, results.append, errors.append))
        self.assertEqual(errors, [])
        scores = results[0]
        entropy = scores.entropy[ct.GetID()]
        self.assertEqual(entropy.GetImageData().GetDimensions(), ct.GetImageData().GetDimensions())
        logic = backendLogic()
        table, rows = logic.ranked_table([ct], scores, "uss", budget=3)
        values = [r["uncertainty"] for r in rows]
        self.assertEqual(values, sorted(values, reverse=True))
        self.assertGreater(len(rows), 0)
        chart = logic.profile_chart([ct], scores, rows)
        self.assertGreaterEqual(chart.GetNumberOfPlotSeriesNodes(), 1)
        logic.set_annotated(ct, rows[0]["slice"])
        self.assertTrue(logic.annotated_slices(ct)[rows[0]["slice"]])
        self.assertTrue(np.isfinite(scores.volume_uncertainty[ct.GetID()]))
        slicer.mrmlScene.Clear()  # File > Close Scene: the next logic still has a model
        self.assertTrue(backendLogic().model_id)
        self.delayDisplay("Active Learning Sampler self-test passed")
