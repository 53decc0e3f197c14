"""Segment Editor effect "UGS-Net nodule": click a nodule in a slice view to add UGS-Net's final,
high-confidence and low-confidence segments to the segmentation being edited.

The click's RAS position goes to UGSNetSegmentationLogic.segment (the module's own logic) with the
segmentation being edited as output and ``append=True``: new segments are numbered after the existing
"Nodule N" ones, the user's segments are kept, and the state is saved for undo first. The user then
corrects the result with the usual effects.
"""

import os

import slicer
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect
from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "UGS-Net nodule"
        scriptedEffect.perSegment = False
        scriptedEffect.requireSegments = False
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.logic = UGSNetSegmentationLogic()

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        cloned = effects.qSlicerSegmentEditorScriptedEffect(None)
        cloned.setPythonSource(__file__.replace("\\", "/"))
        return cloned

    def icon(self):
        import qt

        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons", "UGSNetSegmentation.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return (
            "<html>Click the centre of a lung nodule in a slice view. UGS-Net adds <b>Nodule N</b> (final, green), "
            "<b>Nodule N high confidence</b> (red: all radiologists would agree) and <b>Nodule N low confidence</b> "
            "(blue: radiologists would disagree) to this segmentation; a table lists volumes and HU. "
            "Bundled demo weights; correct the result with the other effects.</html>"
        )

    def setupOptionsFrame(self):
        import qt

        self.statusLabel = qt.QLabel("Click a nodule in a slice view.")
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if eventId != vtk.vtkCommand.LeftButtonPressEvent or viewWidget.className() != "qMRMLSliceWidget":
            return False
        parameters = self.scriptedEffect.parameterSetNode()
        segmentation_node = parameters.GetSegmentationNode()
        volume_node = (
            parameters.GetSourceVolumeNode()
            if hasattr(parameters, "GetSourceVolumeNode")
            else parameters.GetMasterVolumeNode()
        )
        if segmentation_node is None or volume_node is None:
            self.statusLabel.text = "Select a segmentation and its CT volume first."
            return True
        ras = self.xyToRas(callerInteractor.GetEventPosition(), viewWidget)
        self.scriptedEffect.saveStateForUndo()
        with slicer.util.tryWithErrorDisplay("UGS-Net could not segment this nodule.", waitCursor=True):
            _, _, results = self.logic.segment(
                volume_node, [list(ras)], segmentation_node=segmentation_node, append=True, device="auto"
            )
            warnings = "; ".join(results[0].warnings)
            self.statusLabel.text = f"Added slices {results[0].slices}." + (f" Note: {warnings}" if warnings else "")
        return True
