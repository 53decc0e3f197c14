"""LungAICommon.mrml writing into a user's segmentation (the Segment Editor effect's path), on real MRML:
the segmentation's geometry, reference volume and subject-hierarchy place stay as the user made them."""

import numpy as np
import slicer

from lungai.segments import SegmentSpec
from LungAICommon import mrml


def _coarse_copy(chest_ct):
    """The CT on a grid with half the in-plane resolution (a segmentation made on another volume)."""
    coarse = chest_ct.like(chest_ct.array)
    coarse.array = chest_ct.array[:, ::2, ::2].copy()
    coarse.spacing = (chest_ct.spacing[0] * 2, chest_ct.spacing[1] * 2, chest_ct.spacing[2])
    return coarse


def test_masks_are_resampled_into_the_existing_geometry(mrml_scene, chest_ct):
    ct = mrml.volume_node_from_volume(chest_ct, "CT")
    coarse = mrml.volume_node_from_volume(_coarse_copy(chest_ct), "coarse")
    segmentation = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "user segmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(coarse)
    segmentation.GetSegmentation().AddEmptySegment("", "user segment", [1.0, 1.0, 0.0])
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "my study")
    hierarchy.CreateItem(folder, segmentation)
    ct_study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "CT study")
    hierarchy.CreateItem(ct_study, ct)
    geometry_name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry_before = segmentation.GetSegmentation().GetConversionParameter(geometry_name)
    reference_before = segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole())

    mask = np.zeros(chest_ct.shape, bool)
    mask[10:20, 40:60, 50:70] = True  # 10 slices of 20 x 20 CT voxels = 10 x 10 coarse voxels
    ids = mrml.merge_segments_in_place(segmentation, [mask], [SegmentSpec("Nodule 1", 1, (0.0, 1.0, 0.0))], ct)

    assert segmentation.GetSegmentation().GetConversionParameter(geometry_name) == geometry_before
    assert segmentation.GetNodeReferenceID(segmentation.GetReferenceImageGeometryReferenceRole()) == reference_before
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation)) == folder
    names = [segmentation.GetSegmentation().GetNthSegment(i).GetName() for i in range(2)]
    assert names == ["user segment", "Nodule 1"]
    on_coarse = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, ids[0], coarse)
    assert on_coarse.shape == (chest_ct.shape[0], chest_ct.shape[1] // 2, chest_ct.shape[2] // 2)
    assert int(np.count_nonzero(on_coarse)) == 10 * 10 * 10
    assert np.array_equal(np.argwhere(on_coarse).min(axis=0), [10, 20, 25])


def test_a_segmentation_without_geometry_takes_the_reference(mrml_scene, chest_ct):
    ct = mrml.volume_node_from_volume(chest_ct, "CT")
    segmentation = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    mask = np.zeros(chest_ct.shape, bool)
    mask[5:8, 30:40, 30:40] = True
    ids = mrml.merge_segments_in_place(segmentation, [mask], [SegmentSpec("Nodule 1", 1, (0.0, 1.0, 0.0))], ct)
    assert np.array_equal(slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, ids[0], ct) > 0, mask)


def test_unique_names_follow_slicer(mrml_scene):
    assert mrml.unique_name("Lungs") == "Lungs"
    mrml_scene.AddNewNodeByClass("vtkMRMLTableNode", "Lungs")
    assert mrml.unique_name("Lungs") == "Lungs_1"
