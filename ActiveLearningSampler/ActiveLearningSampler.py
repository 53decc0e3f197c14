"""Active Learning Sampler: MC-dropout uncertainty per slice and the slices to annotate next (uncertainty slice sampling), with retraining on partially annotated volumes.

Placeholder until issue 7 lands: the module loads in Slicer and says plainly that it is not
available yet. It produces no results.
"""
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class ActiveLearningSampler(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Active Learning Sampler"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = "MC-dropout uncertainty per slice and the slices to annotate next (uncertainty slice sampling), with retraining on partially annotated volumes. Not available yet."
        self.parent.acknowledgementText = "Part of SlicerLungAI."


class ActiveLearningSamplerWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/ActiveLearningSampler.ui")))
        self.ui = slicer.util.childWidgetVariables(self.layout.itemAt(0).widget())


class ActiveLearningSamplerLogic(ScriptedLoadableModuleLogic):
    """No logic yet: see ActiveLearningSamplerLib once issue 7 lands."""


class ActiveLearningSamplerTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_says_not_available()

    def test_says_not_available(self):
        ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/ActiveLearningSampler.ui")))
        self.assertIn("not available yet", ui.statusLabel.text)
