"""UGS-Net Segmentation: Nodule segmentation with a Multi-Confidence Mask: high-confidence core and low-confidence rim learned from several radiologists (UGS-Net).

Placeholder until issue 4 lands: the module loads in Slicer and says plainly that it is not
available yet. It produces no results.
"""
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class UGSNetSegmentation(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "UGS-Net Segmentation"
        self.parent.categories = ["Segmentation.Lung AI"]
        self.parent.contributors = ["SlicerLungAI developers"]
        self.parent.helpText = "Nodule segmentation with a Multi-Confidence Mask: high-confidence core and low-confidence rim learned from several radiologists (UGS-Net). Not available yet."
        self.parent.acknowledgementText = "Part of SlicerLungAI."


class UGSNetSegmentationWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.layout.addWidget(slicer.util.loadUI(self.resourcePath("UI/UGSNetSegmentation.ui")))
        self.ui = slicer.util.childWidgetVariables(self.layout.itemAt(0).widget())


class UGSNetSegmentationLogic(ScriptedLoadableModuleLogic):
    """No logic yet: see UGSNetSegmentationLib once issue 4 lands."""


class UGSNetSegmentationTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.setUp()
        self.test_says_not_available()

    def test_says_not_available(self):
        ui = slicer.util.childWidgetVariables(slicer.util.loadUI(self.resourcePath("UI/UGSNetSegmentation.ui")))
        self.assertIn("not available yet", ui.statusLabel.text)
