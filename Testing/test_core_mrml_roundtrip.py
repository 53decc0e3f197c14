"""Bundled CT -> volume node -> segmentation node -> .seg.nrrd -> slicerio: nothing changes on the way."""

import numpy as np
import pytest
import slicer
import slicerio
import vtk

from lungai.segments import unpack_masks
from LungAICommon import mrml


def test_volume_node_keeps_voxels_and_geometry(mrml_scene, chest_ct):
    node = mrml.volume_node_from_volume(chest_ct, "CT")
    back = mrml.volume_from_node(node)
    assert np.array_equal(back.array, chest_ct.array)
    assert np.allclose(back.spacing, chest_ct.spacing)
    assert np.allclose(back.origin, chest_ct.origin)
    assert np.allclose(back.direction, chest_ct.direction)
    # Slicer's own matrix is RAS: the first two axes flip sign against LPS.
    ras = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(ras)
    assert ras.GetElement(0, 3) == pytest.approx(-chest_ct.origin[0])
    assert ras.GetElement(2, 3) == pytest.approx(chest_ct.origin[2])


def test_segmentation_roundtrip_through_seg_nrrd(mrml_scene, chest_ct, chest_lungs, tmp_path):
    labelmap, specs = chest_lungs
    ct_node = mrml.volume_node_from_volume(chest_ct, "CT")
    seg_node = mrml.segmentation_node_from_labelmap(labelmap.array, ct_node, specs, "Lungs")
    assert seg_node.GetSegmentation().GetNumberOfSegments() == 2
    for spec in specs:
        assert np.array_equal(mrml.segment_mask(seg_node, spec.name, ct_node), labelmap.array == spec.label)

    storage = slicer.vtkMRMLSegmentationStorageNode()
    mrml_scene.AddNode(storage)
    path = tmp_path / "lungs.seg.nrrd"
    storage.SetFileName(str(path))
    assert storage.WriteData(seg_node)

    written = slicerio.read_segmentation(str(path))
    names = [segment["name"] for segment in written["segments"]]
    assert names == [spec.name for spec in specs]
    assert np.allclose(np.asarray(written["ijkToLPS"]), chest_ct.ijk_to_lps(), atol=1e-4)
    for spec in specs:
        segment = slicerio.segment_from_name(written, spec.name)
        mask = slicerio.extract_segments(written, [(segment["name"], 1)])["voxels"].transpose(2, 1, 0) == 1
        assert np.array_equal(mask, labelmap.array == spec.label), spec.name
        assert np.allclose(segment["color"], spec.color, atol=1e-3)
        assert segment["terminology"]["type"][1] == "39607008"  # SNOMED lung


def test_overlapping_segments_and_existing_names(mrml_scene, chest_ct, chest_lungs):
    labelmap, specs = chest_lungs
    ct_node = mrml.volume_node_from_volume(chest_ct, "CT")
    both = labelmap.array > 0
    first = mrml.segmentation_node_from_masks([both, labelmap.array == 1], [specs[0], specs[1]], ct_node, "Overlap")
    second = mrml.segmentation_node_from_masks([both], [specs[0]], ct_node, "Overlap")
    assert first.GetName() == "Overlap" and second.GetName() != "Overlap"  # never replaced
    assert np.array_equal(mrml.segment_mask(first, specs[0].name, ct_node), both)
    assert np.array_equal(mrml.segment_mask(first, specs[1].name, ct_node), labelmap.array == 1)
    # Updating a named segment in a given node replaces its voxels, not the node's other segments.
    mrml.segmentation_node_from_masks([labelmap.array == 2], [specs[0]], ct_node, "ignored", node=first)
    assert first.GetSegmentation().GetNumberOfSegments() == 2
    assert np.array_equal(mrml.segment_mask(first, specs[0].name, ct_node), labelmap.array == 2)
    relabelled = mrml.labelmap_from_segmentation(first, [specs[0].name, specs[1].name], ct_node)
    assert set(np.unique(relabelled)) == {0, 1, 2}


def test_segmentation_is_placed_beside_its_volume(mrml_scene, chest_ct, chest_lungs):
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    study = hierarchy.CreateStudyItem(hierarchy.GetSceneItemID(), "Study")
    ct_node = mrml.volume_node_from_volume(chest_ct, "CT")
    if hierarchy.GetItemByDataNode(ct_node):
        hierarchy.SetItemParent(hierarchy.GetItemByDataNode(ct_node), study)
    else:
        hierarchy.CreateItem(study, ct_node)
    labelmap, specs = chest_lungs
    seg_node = mrml.segmentation_node_from_labelmap(labelmap.array, ct_node, specs, "Lungs")
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg_node)) == study


def test_table_and_plot_nodes(mrml_scene):
    rows = [{"slice": 0, "score": 0.25, "label": "a"}, {"slice": 1, "score": 0.75, "label": "b"}]
    table = mrml.table_node_from_rows(rows, "Scores")
    assert mrml.rows_from_table_node(table) == rows
    chart = mrml.plot_from_series(
        [0, 1, 2], {"profile": [0.1, 0.3, 0.2]}, "Profile", "slice", "entropy", markers={"selected": ([1], [0.3])}
    )
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(0)
    values = slicer.util.arrayFromTableColumn(series.GetTableNode(), "profile")
    assert np.allclose(values, [0.1, 0.3, 0.2])


def test_segments_unpack_matches_packing():
    from lungai.segments import SegmentSpec, pack_masks

    a = np.zeros((1, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros_like(a)
    b[0, 1:3] = True  # overlaps a on row 1
    c = np.zeros_like(a)
    c[0, 3] = True
    layers, specs = pack_masks([a, b, c], [SegmentSpec(n, 0, (1, 0, 0)) for n in "abc"])
    assert layers.shape[0] == 2 and [s.layer for s in specs] == [0, 1, 0]
    masks = unpack_masks(layers, specs)
    assert all(np.array_equal(masks[n], m) for n, m in zip("abc", [a, b, c]))
