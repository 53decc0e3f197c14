"""UGS-Net nodule segmentation for Slicer scenes, without Qt (slicer MRML, vtk, numpy, lungai only).

Two paths, one result: ``run`` runs the module contract (:mod:`lungai.ugsnet.pipeline`) in this process
(scripts, tests); ``cli_arguments`` + ``import_results`` let the widget and the segment editor effect run
``lungai ugsnet segment`` in a subprocess and load what it wrote (``pipeline.read``). Both build the nodes through
LungAICommon.mrml: one segmentation node per run with "Nodule N" (green), "Nodule N high confidence" (red)
and "Nodule N low confidence" (blue) per nodule, and one table row per nodule, beside the CT in its study.
Nodes are created only at the end (cancel leaves the scene unchanged); an existing node is changed only when
passed as ``segmentation_node`` / ``table_node``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lungai.errors import InputError
from LungAICommon import mrml

# lungai.ugsnet.pipeline (torch) is imported when first used, not when Slicer loads the module

_NODULE_NAME = re.compile(r"^Nodule (\d+)$")
TABLE_REFERENCE = "UGSNetNoduleTable"


def points_from_markups(markups_node) -> np.ndarray:
    """World (RAS) positions of the control points of a markups node, (P, 3)."""
    if markups_node is None or markups_node.GetNumberOfControlPoints() == 0:
        raise InputError("Place at least one point on a nodule (one point per nodule).")
    points = np.zeros((markups_node.GetNumberOfControlPoints(), 3))
    for index in range(len(points)):
        markups_node.GetNthControlPointPositionWorld(index, points[index])
    return points


def next_nodule_number(segmentation_node) -> int:
    """1 + the largest N of the "Nodule N" segments already in ``segmentation_node`` (1 when none)."""
    if segmentation_node is None:
        return 1
    segmentation = segmentation_node.GetSegmentation()
    numbers = [
        int(m.group(1))
        for i in range(segmentation.GetNumberOfSegments())
        if (m := _NODULE_NAME.match(segmentation.GetNthSegment(i).GetName()))
    ]
    return max(numbers, default=0) + 1


def _pipeline():
    from lungai.ugsnet import pipeline

    return pipeline


class UGSNetSegmentationLogic:
    """Segment nodules at points of a CT volume node.

    ``model_loader(weights, model_id, device) -> LoadedModel`` (default: ``lungai.ugsnet.pipeline.load``).
    """

    def __init__(self, model_loader=None):
        self._model_loader = model_loader
        self._cache: dict[tuple, object] = {}

    def model(self, weights: str | None = None, device: str = "auto", model_id: str | None = None):
        """The loaded model (a :class:`lungai.contract.LoadedModel`), cached for the last choice."""
        key = (weights, model_id, str(device))
        if key not in self._cache:
            loader = self._model_loader or _pipeline().load
            self._cache = {key: loader(weights, model_id, device)}
        return self._cache[key]

    def run(
        self,
        volume_node,
        points_ras,
        *,
        weights: str | None = None,
        model_id: str | None = None,
        device: str = "auto",
        segmentation_node=None,
        table_node=None,
        append: bool = False,
        progress=None,
        cancel=None,
    ):
        """Blocking run. Returns (segmentation node, table node, list of NoduleResult).

        ``device``: "auto" picks CUDA, then MPS, then CPU (resolved once when the model is loaded).
        ``append`` numbers the new nodules after those already in ``segmentation_node`` (segment editor effect);
        otherwise they are numbered from 1 and a given node's segments of the same names are updated.
        """
        volume = mrml.volume_from_node(volume_node)
        model = self.model(weights, device, model_id)
        results = _pipeline().run(volume, model, points=points_ras, progress=progress, cancel=cancel).nodules
        first = next_nodule_number(segmentation_node) if append else 1
        if append and table_node is None and segmentation_node is not None:
            table_node = segmentation_node.GetNodeReference(TABLE_REFERENCE)
        nodes = self.add_results(volume_node, volume, results, segmentation_node, table_node, first, append_rows=append)
        return (*nodes, results)

    def add_results(
        self,
        volume_node,
        volume,
        results: list,
        segmentation_node=None,
        table_node=None,
        first_number: int = 1,
        append_rows: bool = False,
    ):
        """Nodes from backend results (the one place where UGS-Net results enter the scene)."""
        pipeline = _pipeline()
        masks, specs = pipeline.nodule_segments(results, volume.shape, first_number)
        rows = pipeline.nodule_table_rows(volume, results)
        for offset, row in enumerate(rows):
            row["nodule"] = f"Nodule {first_number + offset}"
        if append_rows and table_node is not None:
            rows = mrml.rows_from_table_node(table_node) + rows
        return self._build_nodes(volume_node, masks, specs, rows, segmentation_node, table_node)

    def _build_nodes(self, volume_node, masks, specs, rows, segmentation_node, table_node):
        base = f"{volume_node.GetName()} UGS-Net nodules"
        segmentation_node = mrml.segmentation_node_from_masks(masks, specs, volume_node, base, node=segmentation_node)
        table_node = mrml.table_node_from_rows(rows, f"{base} table", node=table_node)
        mrml.place_beside(table_node, volume_node)
        segmentation_node.SetNodeReferenceID(TABLE_REFERENCE, table_node.GetID())
        return segmentation_node, table_node

    @staticmethod
    def cli_arguments(
        volume_path: str | Path,
        points_path: str | Path,
        out_dir: str | Path,
        weights: str | None = None,
        device: str = "auto",
        model_id: str | None = None,
    ) -> list[str]:
        """Arguments of ``lungai`` for the subprocess path (the widget prepends nothing else)."""
        arguments = [
            "ugsnet",
            "segment",
            "--volume",
            str(volume_path),
            "--points",
            str(points_path),
            "--out",
            str(out_dir),
            "--device",
            device,
        ]
        if weights:
            arguments += ["--weights", str(weights)]
        elif model_id:
            arguments += ["--model", model_id]
        return arguments

    @staticmethod
    def write_points_csv(points_ras, path: str | Path) -> Path:
        path = Path(path)
        lines = ["r,a,s"] + [",".join(f"{v:.4f}" for v in p) for p in np.asarray(points_ras, float).reshape(-1, 3)]
        path.write_text("\n".join(lines) + "\n")
        return path

    def import_results(self, out_dir: str | Path, volume_node, segmentation_node=None, table_node=None):
        """Load ``nodules.seg.nrrd`` and ``nodules.csv`` written by ``lungai ugsnet segment``."""
        pipeline = _pipeline()
        saved = pipeline.read(out_dir)
        reference = mrml.volume_from_node(volume_node)
        shape = saved.volumes["segmentation"].array.shape[-3:]
        if shape != reference.shape:
            name = volume_node.GetName()
            raise InputError(f"The results in {out_dir} ({shape}) do not match the volume '{name}' {reference.shape}.")
        rows = [_typed(row) for row in saved.tables[pipeline.TABLE]]
        masks = [saved.masks[s.name] for s in saved.specs]
        return self._build_nodes(volume_node, masks, saved.specs, rows, segmentation_node, table_node)


def _typed(row: dict[str, str]) -> dict:
    """CSV strings back to numbers where they are numbers (text columns stay text)."""
    out = {}
    for key, value in row.items():
        if key in ("nodule", "slices", "warnings"):
            out[key] = value
        else:
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
    return out
