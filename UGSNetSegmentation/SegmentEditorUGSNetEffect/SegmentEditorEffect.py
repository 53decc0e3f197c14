"""Segment Editor effect "UGS-Net nodule": click a nodule in a slice view to add UGS-Net's final,
high-confidence and low-confidence segments to the segmentation being edited.

The click starts ``lungai ugsnet segment`` for that point in a subprocess (LungAICommon.job: progress bar,
Cancel, the GUI stays responsive). On success the segments "Nodule N", "Nodule N high confidence" and
"Nodule N low confidence" (N after the existing "Nodule" segments) are resampled into the segmentation's own
geometry: its reference geometry, reference volume, other segments and place in the subject hierarchy stay
as they are, and the state is saved for undo first. The user then corrects the result with the usual effects.
"""

import dataclasses
import os

import qt
import vtk
from SegmentEditorEffects import AbstractScriptedSegmentEditorEffect

from LungAICommon.dependencies import ensure_dependencies
from LungAICommon.job import LungAIJob


def importIntoSegmentation(outDir, segmentationNode, volumeNode):
    """Add the nodule segments written by ``lungai ugsnet segment`` to ``segmentationNode`` without changing
    its geometry or place; returns the new segment names."""
    from UGSNetSegmentationLib.logic import next_nodule_number

    from lungai.io import read_segmentation
    from lungai.segments import unpack_masks
    from LungAICommon.mrml import merge_segments_in_place

    labelmap, specs = read_segmentation(outDir / "nodules.seg.nrrd")
    masks = unpack_masks(labelmap.array, specs)
    number = next_nodule_number(segmentationNode)
    renamed = [dataclasses.replace(s, name=s.name.replace("Nodule 1", f"Nodule {number}", 1)) for s in specs]
    merge_segments_in_place(segmentationNode, [masks[s.name] for s in specs], renamed, volumeNode)
    return [s.name for s in renamed]


class SegmentEditorEffect(AbstractScriptedSegmentEditorEffect):
    def __init__(self, scriptedEffect):
        scriptedEffect.name = "UGS-Net nodule"
        scriptedEffect.perSegment = False
        scriptedEffect.requireSegments = False
        AbstractScriptedSegmentEditorEffect.__init__(self, scriptedEffect)
        self.job = None

    def clone(self):
        import qSlicerSegmentationsEditorEffectsPythonQt as effects

        cloned = effects.qSlicerSegmentEditorScriptedEffect(None)
        cloned.setPythonSource(__file__.replace("\\", "/"))
        return cloned

    def icon(self):
        path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "Resources", "Icons", "UGSNetSegmentation.png")
        return qt.QIcon(path) if os.path.exists(path) else qt.QIcon()

    def helpText(self):
        return (
            "<html>Click the centre of a lung nodule in a slice view. UGS-Net adds <b>Nodule N</b> (final, green), "
            "<b>Nodule N high confidence</b> (red: all radiologists would agree) and <b>Nodule N low confidence</b> "
            "(blue: radiologists would disagree) to this segmentation, in its own geometry. Bundled demo weights; "
            "the UGS-Net Segmentation module also gives a table of volumes and HU.</html>"
        )

    def setupOptionsFrame(self):
        self.progressBar = qt.QProgressBar()
        self.progressBar.value = 0
        self.scriptedEffect.addOptionsWidget(self.progressBar)
        self.cancelButton = qt.QPushButton("Cancel")
        self.cancelButton.enabled = False
        self.cancelButton.connect("clicked(bool)", self.onCancel)
        self.scriptedEffect.addOptionsWidget(self.cancelButton)
        self.statusLabel = qt.QLabel("Click a nodule in a slice view.")
        self.statusLabel.wordWrap = True
        self.scriptedEffect.addOptionsWidget(self.statusLabel)

    def onCancel(self, *_):
        if self.job is not None and self.job.running:
            self.statusLabel.text = "Cancelling..."
            self.job.cancel()

    def processInteractionEvents(self, callerInteractor, eventId, viewWidget):
        if eventId != vtk.vtkCommand.LeftButtonPressEvent or viewWidget.className() != "qMRMLSliceWidget":
            return False
        if self.job is not None and self.job.running:
            self.statusLabel.text = "UGS-Net is still running; wait or press Cancel."
            return True
        parameters = self.scriptedEffect.parameterSetNode()
        segmentationNode = parameters.GetSegmentationNode()
        volumeNode = parameters.GetSourceVolumeNode()
        if segmentationNode is None or volumeNode is None:
            self.statusLabel.text = "Select a segmentation and its CT volume first."
            return True
        ras = list(self.xyToRas(callerInteractor.GetEventPosition(), viewWidget))

        def prepare(workDir):
            from UGSNetSegmentation import exportInputs

            return exportInputs(workDir, volumeNode, [ras])

        def importResults(workDir):
            self.scriptedEffect.saveStateForUndo()
            return importIntoSegmentation(workDir / "out", segmentationNode, volumeNode)

        def finished(names):
            self.cancelButton.enabled = False
            self.progressBar.value = 100
            self.statusLabel.text = f"Added {', '.join(names)}."

        def failed(message):
            self.cancelButton.enabled = False
            self.statusLabel.text = message

        def progress(fraction, message):
            self.progressBar.value = int(round(100 * fraction))
            self.statusLabel.text = message

        self.progressBar.value = 0
        self.cancelButton.enabled = True
        self.statusLabel.text = "UGS-Net: starting..."
        self.job = LungAIJob(
            "UGS-Net", prepare, importResults, progress, finished, failed, dependency_gate=ensure_dependencies
        )
        self.job.start()
        return True
