"""Neoplasm NLB: Per-slice neoplasm presence and segmentation with specialized non-local blocks.

Placeholder until issue 6 lands: the module loads in Slicer and says plainly that it is not
available yet. It produces no results.
"""
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class NeoplasmNLB(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Neoplasm NLB"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = "Per-slice neoplasm presence and segmentation with specialized non-local blocks. Not available yet."
        self.parent.acknowledgementText = "Part of SlicerLungAI."


class NeoplasmNLBWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/NeoplasmNLB.ui")))
        self.ui = slicer.util.childWidgetVariables(self.layout.itemAt(0).widget())


class NeoplasmNLBLogic(ScriptedLoadableModuleLogic):
    """No logic yet: see NeoplasmNLBLib once issue 6 lands."""


class NeoplasmNLBTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_says_not_available()

    def test_says_not_available(self):
        ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/NeoplasmNLB.ui")))
        self.assertIn("not available yet", ui.statusLabel.text)
