"""NeoplasmNLB logic: score every slice of a volume node, show a table, a plot and a segmentation.

Qt-free (slicer MRML, vtk, numpy, lungai only) so pytest runs it on slicer-core. Two paths build the same
nodes through :mod:`LungAICommon.mrml`:

* blocking: :meth:`NeoplasmNLBLogic.run` calls the module contract (:mod:`lungai.nlb.pipeline`) in this process;
* subprocess (the widget): :meth:`NeoplasmNLBLogic.cli_arguments` for ``lungai nlb classify`` on a volume
  written by :meth:`NeoplasmNLBLogic.export_volume`, then :meth:`NeoplasmNLBLogic.import_results` (``pipeline.read``).

Nodes are created only at the end, so a cancelled run leaves the scene unchanged; existing nodes are never
overwritten (new nodes get unique names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer
import vtk

from lungai.io import write_volume
from lungai.modules import descriptor
from lungai.progress import CancelToken, ProgressCallback
from LungAICommon.mrml import plot_from_series, segmentation_node_from_labelmap, table_node_from_rows, volume_from_node

DESCRIPTOR = descriptor("nlb")


def _pipeline():
    """lungai.nlb.pipeline (torch), imported when first used rather than when Slicer loads the module."""
    from lungai.nlb import pipeline

    return pipeline


@dataclass
class NeoplasmNLBResult:
    table: object  # vtkMRMLTableNode, one row per slice
    chart: object  # vtkMRMLPlotChartNode, probability against slice index
    segmentation: object  # vtkMRMLSegmentationNode with the "Neoplasm" segment
    most_likely_slice: int
    probabilities: np.ndarray


class NeoplasmNLBLogic:
    """Per-slice neoplasm probability and segmentation for a scalar volume node (CT in HU or 8-bit image)."""

    @staticmethod
    def available_models() -> list[str]:
        """Ids of the registered NeoplasmNLB models whose weights are present."""
        from lungai.registry import load_registry

        return [e.id for e in load_registry() if e.module == DESCRIPTOR.slicer_module and e.available]

    @staticmethod
    def block_type(model_id: str) -> str:
        """The non-local block type of a registered model (read from its checkpoint header)."""
        from lungai.checkpoint import load_checkpoint
        from lungai.registry import get_model_entry

        return load_checkpoint(get_model_entry(model_id).path).header["config"].get("block_type", "")

    def run(
        self,
        input_node,
        *,
        model_id: str | None = None,
        weights: str | None = None,
        threshold: float = 0.5,
        device: str = "auto",
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> NeoplasmNLBResult:
        """Blocking path: score ``input_node`` with a registered model (or a weights file) and add the results."""
        pipeline = _pipeline()
        model = pipeline.load(weights, model_id, device)
        result = pipeline.run(
            volume_from_node(input_node), model, threshold=threshold, progress=progress, cancel=cancel
        )
        return self.add_results(input_node, result.scores.rows(), result.scores.labelmap, threshold)

    @staticmethod
    def export_volume(input_node, path: str | Path) -> Path:
        """Write the input volume for the subprocess path (overwrites ``path``, a temporary file)."""
        return write_volume(volume_from_node(input_node), path, overwrite=True)

    @staticmethod
    def cli_arguments(
        input_path: str | Path,
        out_dir: str | Path,
        *,
        model_id: str | None = None,
        weights: str | None = None,
        threshold: float = 0.5,
        device: str = "auto",
    ) -> list[str]:
        """Arguments after ``python -m lungai --progress lines`` for the subprocess path."""
        arguments = [
            "--device",
            device,
            "nlb",
            "classify",
            "--volume",
            str(input_path),
            "--out",
            str(out_dir),
            "--threshold",
            f"{threshold:g}",
            "--overwrite",
        ]
        if weights:
            arguments += ["--weights", str(weights)]
        else:
            arguments += ["--model", model_id or DESCRIPTOR.default_model_id]
        return arguments

    def import_results(self, out_dir: str | Path, input_node, threshold: float = 0.5) -> NeoplasmNLBResult:
        """Add the nodes for the files written by ``lungai nlb classify --out out_dir``."""
        pipeline = _pipeline()
        saved = pipeline.read(out_dir)
        rows = [
            {"slice": int(r["slice"]), "probability": float(r["probability"]), "decision": int(r["decision"])}
            for r in saved.tables[pipeline.SLICES_CSV]
        ]
        return self.add_results(input_node, rows, saved.volumes["segmentation"].array, threshold)

    def add_results(self, input_node, rows: list[dict], labelmap: np.ndarray, threshold: float) -> NeoplasmNLBResult:
        """Table, plot and segmentation nodes named after the input, beside it in the subject hierarchy."""
        name = input_node.GetName()
        slices = [r["slice"] for r in rows]
        probabilities = np.array([r["probability"] for r in rows], dtype=float)
        table = table_node_from_rows(rows, f"{name} neoplasm per slice")
        chart = plot_from_series(
            slices,
            {"neoplasm probability": probabilities, "threshold": [threshold] * len(slices)},
            f"{name} neoplasm probability",
            "slice",
            "probability",
        )
        segment = _pipeline().NEOPLASM_SEGMENT
        segmentation = segmentation_node_from_labelmap(labelmap, input_node, [segment], f"{name} neoplasm")
        decisions = np.array([r["decision"] for r in rows], dtype=bool)
        most_likely = _pipeline().most_likely_slice(probabilities, decisions)
        return NeoplasmNLBResult(table, chart, segmentation, most_likely, probabilities)

    @staticmethod
    def slice_center_ras(input_node, slice_index: int) -> tuple[float, float, float]:
        """RAS position of the centre of axial slice ``slice_index`` (array index k)."""
        dims = input_node.GetImageData().GetDimensions()
        ijk = [(dims[0] - 1) / 2.0, (dims[1] - 1) / 2.0, float(slice_index), 1.0]
        matrix = vtk.vtkMatrix4x4()
        input_node.GetIJKToRASMatrix(matrix)
        return tuple(matrix.MultiplyPoint(ijk)[:3])

    def jump_to_slice(self, input_node, slice_index: int) -> tuple[float, float, float]:
        """Centre every slice view on ``slice_index`` (the most likely slice); returns the RAS point."""
        point = self.slice_center_ras(input_node, slice_index)
        slicer.vtkMRMLSliceNode.JumpAllSlices(slicer.mrmlScene, *point, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        return point
