"""Arrays and geometry <-> MRML nodes: the one place where lungai results become scene nodes.

Qt-free: needs only ``slicer.mrmlScene`` and the Volumes/Segmentations logic registered in
``slicer.modules`` (as in Slicer, or in the headless slicer-core harness used by the tests).
Existing nodes are never replaced: new nodes get unique names, and a node is updated only when
the caller passes it as ``node``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import slicer
import vtk

from lungai.errors import LungAIError
from lungai.segments import SegmentSpec, unpack_masks
from lungai.volume import Volume

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def unique_name(base: str) -> str:
    """``base`` if no node has that name, else ``base_1``, ``base_2`` ... (Slicer's rule)."""
    return slicer.mrmlScene.GenerateUniqueName(base)


def _vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def _numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _require_untransformed(node) -> None:
    if node.GetParentTransformNode() is not None:
        raise LungAIError(
            f"'{node.GetName()}' is under a transform; harden the transform (Data module) before running a model."
        )


def volume_node_from_volume(volume: Volume, name: str, node=None):
    """A scalar volume node showing ``volume`` (new, uniquely named, unless ``node`` is given)."""
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", unique_name(name))
    node.SetIJKToRASMatrix(_vtk_matrix(volume.ijk_to_ras()))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    node.CreateDefaultDisplayNodes()
    return node


def volume_from_node(node) -> Volume:
    """The node's voxels (copied) and geometry as a :class:`Volume` in LPS."""
    _require_untransformed(node)
    if node.GetImageData() is None:
        raise LungAIError(f"'{node.GetName()}' has no voxels; load an image into it first.")
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    lps = _LPS_TO_RAS @ _numpy_matrix(matrix)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    return Volume(np.array(slicer.util.arrayFromVolume(node)), tuple(spacing), tuple(lps[:3, 3]), lps[:3, :3] / spacing)


def place_beside(node, reference) -> None:
    """Put ``node`` in the subject hierarchy folder (study) that holds ``reference``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    if hierarchy is None:
        return
    reference_item = hierarchy.GetItemByDataNode(reference)
    if not reference_item:
        return
    parent = hierarchy.GetItemParent(reference_item)
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, parent)
    else:  # without Slicer's GUI plugins no item is made automatically
        hierarchy.CreateItem(parent, node)


def _segment_id(node, name: str) -> str:
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if segmentation.GetNthSegment(index).GetName() == name:
            return segmentation.GetNthSegmentID(index)
    return ""


def set_segments(node, masks: Sequence[np.ndarray], specs: Sequence[SegmentSpec], reference) -> list[str]:
    """Write each mask (z, y, x on ``reference``'s grid) into the segment named by its spec.

    A segment of that name is updated, otherwise added with the spec's colour and terminology.
    Returns the segment ids.
    """
    if len(masks) != len(specs):
        raise ValueError("one spec per mask is required")
    shape = tuple(reversed(reference.GetImageData().GetDimensions()))
    ids = []
    for mask, spec in zip(masks, specs):
        if mask.shape != shape:
            raise LungAIError(f"Segment '{spec.name}' has shape {mask.shape}, but the reference volume is {shape}.")
        segment_id = _segment_id(node, spec.name) or node.GetSegmentation().AddEmptySegment(
            "", spec.name, list(spec.color)
        )
        segment = node.GetSegmentation().GetSegment(segment_id)
        segment.SetColor(*spec.color)
        if spec.terminology:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), spec.terminology)
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.asarray(mask, dtype=np.uint8), node, segment_id, reference)
        ids.append(segment_id)
    return ids


def _oriented_image(mask: np.ndarray, reference) -> vtk.vtkImageData:
    """``mask`` (z, y, x on ``reference``'s grid) as a vtkOrientedImageData with the reference's IJK-to-RAS."""
    from vtk.util import numpy_support

    image = slicer.vtkOrientedImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.GetPointData().SetScalars(
        numpy_support.numpy_to_vtk(np.ascontiguousarray(mask, dtype=np.uint8).ravel(), deep=True)
    )
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    image.SetImageToWorldMatrix(matrix)
    return image


def merge_segments_in_place(node, masks: Sequence[np.ndarray], specs: Sequence[SegmentSpec], reference) -> list[str]:
    """Write each mask (z, y, x on ``reference``'s grid) into the segment named by its spec, resampled (nearest
    neighbour) into the segmentation's own geometry: the node's reference geometry, reference volume and place
    in the subject hierarchy stay as they are (the Segment Editor effect edits the user's segmentation).

    A segmentation without any geometry yet takes ``reference``'s. Returns the segment ids.
    """
    segmentation = node.GetSegmentation()
    geometry_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry = segmentation.GetConversionParameter(geometry_name)
    if not geometry:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
        geometry = segmentation.GetConversionParameter(geometry_name)
    target = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, target, False)
    shape = tuple(reversed(reference.GetImageData().GetDimensions()))
    ids = []
    for mask, spec in zip(masks, specs):
        if mask.shape != shape:
            raise LungAIError(f"Segment '{spec.name}' has shape {mask.shape}, but the reference volume is {shape}.")
        resampled = slicer.vtkOrientedImageData()
        slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
            _oriented_image(mask, reference), target, resampled, False
        )
        segment_id = _segment_id(node, spec.name) or segmentation.AddEmptySegment("", spec.name, list(spec.color))
        segment = segmentation.GetSegment(segment_id)
        segment.SetColor(*spec.color)
        if spec.terminology:
            segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), spec.terminology)
        if not slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            resampled, node, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE
        ):
            raise LungAIError(f"Could not write segment '{spec.name}' into '{node.GetName()}'.")
        ids.append(segment_id)
    return ids


def segmentation_node_from_masks(
    masks: Sequence[np.ndarray], specs: Sequence[SegmentSpec], reference, name: str, node=None
):
    """A segmentation node with one segment per mask, geometry from ``reference``, beside it in the hierarchy."""
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", unique_name(name))
        node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference.GetID())
    set_segments(node, masks, specs, reference)
    place_beside(node, reference)
    return node


def segmentation_node_from_labelmap(
    labelmap: np.ndarray, reference, specs: Sequence[SegmentSpec], name: str, node=None
):
    """Like :func:`segmentation_node_from_masks` from a labelmap (z, y, x) or layers (L, z, y, x)."""
    masks = unpack_masks(np.asarray(labelmap), specs)
    return segmentation_node_from_masks([masks[s.name] for s in specs], specs, reference, name, node)


def segment_mask(node, name: str, reference) -> np.ndarray:
    """Binary mask (z, y, x) of the segment called ``name`` on ``reference``'s grid."""
    segment_id = _segment_id(node, name)
    if not segment_id:
        raise LungAIError(f"'{node.GetName()}' has no segment named '{name}'.")
    return np.array(slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, reference)) > 0


def segment_specs(node) -> list[SegmentSpec]:
    """Name, colour and terminology of every segment, labels counting from 1 in node order."""
    segmentation = node.GetSegmentation()
    specs = []
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        tag = vtk.mutable("")
        has_tag = segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), tag)
        specs.append(
            SegmentSpec(segment.GetName(), index + 1, tuple(segment.GetColor()), str(tag) if has_tag else None)
        )
    return specs


def labelmap_from_segmentation(node, segment_names: Sequence[str], reference) -> np.ndarray:
    """Labelmap (z, y, x): value i+1 where segment ``segment_names[i]`` is (later names win)."""
    labelmap = None
    for label, name in enumerate(segment_names, start=1):
        mask = segment_mask(node, name, reference)
        labelmap = np.zeros(mask.shape, dtype=np.uint16) if labelmap is None else labelmap
        labelmap[mask] = label
    if labelmap is None:
        raise LungAIError("No segment names were given.")
    return labelmap


def _column(name: str, values: list):
    sample = next((v for v in values if v is not None), "")
    if isinstance(sample, (bool, np.bool_, int, np.integer)):
        array = vtk.vtkIntArray()
        convert = int
    elif isinstance(sample, (float, np.floating)):
        array = vtk.vtkDoubleArray()
        convert = lambda v: float("nan") if v is None else float(v)  # noqa: E731
    else:
        array = vtk.vtkStringArray()
        convert = str
    array.SetName(name)
    for value in values:
        array.InsertNextValue(convert(value))
    return array


def table_node_from_rows(rows: Sequence[Mapping], name: str, node=None):
    """A table node with typed columns (int, float or text) from rows of equal keys."""
    if not rows:
        raise LungAIError(f"No rows for table '{name}'.")
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", unique_name(name))
    table = node.GetTable()
    table.Initialize()
    for key in rows[0]:
        table.AddColumn(_column(key, [row[key] for row in rows]))
    node.Modified()
    return node


def rows_from_table_node(node) -> list[dict]:
    """The table's rows as dicts (ints, floats and strings as stored)."""
    table = node.GetTable()
    columns = [table.GetColumn(index) for index in range(table.GetNumberOfColumns())]
    rows = []
    for row in range(table.GetNumberOfRows()):
        rows.append({column.GetName(): column.GetValue(row) for column in columns})
    return rows


def plot_from_series(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    name: str,
    x_label: str,
    y_label: str,
    markers: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
):
    """A plot chart: one line per entry of ``series`` over ``x``; ``markers`` add point-only series.

    Each series' data live in a table node named after the chart; returns the chart node.
    """
    chart = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotChartNode", unique_name(name))
    chart.SetTitle(name)
    chart.SetXAxisTitle(x_label)
    chart.SetYAxisTitle(y_label)

    def add(series_name: str, xs: Sequence[float], ys: Sequence[float], line: bool) -> None:
        table = table_node_from_rows(
            [{x_label: float(a), series_name: float(b)} for a, b in zip(xs, ys)], f"{name} {series_name}"
        )
        plot = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", unique_name(f"{name} {series_name}"))
        plot.SetAndObserveTableNodeID(table.GetID())
        plot.SetXColumnName(x_label)
        plot.SetYColumnName(series_name)
        plot.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        if line:
            plot.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
        else:
            plot.SetLineStyle(slicer.vtkMRMLPlotSeriesNode.LineStyleNone)
            plot.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
        chart.AddAndObservePlotSeriesNodeID(plot.GetID())

    for series_name, ys in series.items():
        add(series_name, x, ys, line=True)
    for marker_name, (xs, ys) in (markers or {}).items():
        add(marker_name, xs, ys, line=False)
    return chart
