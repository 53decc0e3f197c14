"""COVID Hierarchical: Cascaded lungs-then-infection segmentation (CHS-Net) with the infected share of each lung.

Placeholder until issue 5 lands: the module loads in Slicer and says plainly that it is not
available yet. It produces no results.
"""
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class COVIDHierarchical(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "COVID Hierarchical"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = "Cascaded lungs-then-infection segmentation (CHS-Net) with the infected share of each lung. Not available yet."
        self.parent.acknowledgementText = "Part of SlicerLungAI."


class COVIDHierarchicalWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/COVIDHierarchical.ui")))
        self.ui = slicer.util.childWidgetVariables(self.layout.itemAt(0).widget())


class COVIDHierarchicalLogic(ScriptedLoadableModuleLogic):
    """No logic yet: see COVIDHierarchicalLib once issue 5 lands."""


class COVIDHierarchicalTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_says_not_available()

    def test_says_not_available(self):
        ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/COVIDHierarchical.ui")))
        self.assertIn("not available yet", ui.statusLabel.text)
