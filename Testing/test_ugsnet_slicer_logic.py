"""UGSNetSegmentation logic on a real headless MRML scene with the bundled weights and sample."""

import numpy as np
import pytest

from lungai.errors import InputError
from lungai.segments import TERMINOLOGY_NODULE
from lungai.ugsnet import pipeline
from lungai.ugsnet.pipeline import NODULE_COLORS, nodule_table_rows, segment_nodules
from lungai.ugsnet.sample import crop_volume, load_sample


@pytest.fixture(scope="module")
def model():
    return pipeline.load(device="cpu")


@pytest.fixture(scope="module")
def sample():
    return load_sample()


def _scene_volume(volume, name="CT"):
    from LungAICommon import mrml

    return mrml.volume_node_from_volume(volume, name)


def test_segments_geometry_and_table_match_the_backend(mrml_scene, model, sample):
    import slicer
    from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic

    from LungAICommon import mrml

    volume, point = crop_volume(sample, 5, slices=5)
    node = _scene_volume(volume)
    logic = UGSNetSegmentationLogic(lambda weights, model_id, device: model)
    seg, table, results = logic.run(node, [point])
    expected = segment_nodules(volume, [point], model.network)
    names = [
        seg.GetSegmentation().GetNthSegment(i).GetName() for i in range(seg.GetSegmentation().GetNumberOfSegments())
    ]
    assert names == ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"]
    for spec, region in zip(mrml.segment_specs(seg), ("final", "high", "low")):
        assert spec.color == pytest.approx(NODULE_COLORS[region])
        assert spec.terminology == TERMINOLOGY_NODULE
    for name, region in zip(names, ("final", "high", "low")):
        assert np.array_equal(mrml.segment_mask(seg, name, node), expected[0].full_mask(region, volume.shape))
    assert expected[0].masks["final"].any() and expected[0].masks["high"].any()
    # geometry: the segmentation is referenced to the CT and sits under the same parent in the hierarchy
    assert seg.GetNodeReference(seg.GetReferenceImageGeometryReferenceRole()) is node
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(seg)) == hierarchy.GetItemParent(
        hierarchy.GetItemByDataNode(node)
    )
    rows = mrml.rows_from_table_node(table)
    want = nodule_table_rows(volume, expected)
    assert len(rows) == 1 and rows[0]["nodule"] == "Nodule 1"
    for key, value in want[0].items():
        if isinstance(value, float):
            assert rows[0][key] == pytest.approx(value, nan_ok=True)
        elif key != "nodule":
            assert rows[0][key] == value
    assert rows[0]["slices"] == "0,1,2,3,4"  # the repeated nodule is followed through every slice
    assert "first slice" in rows[0]["warnings"]  # and reaches the volume's edge: said, not hidden
    assert rows[0]["mean_hu_low_confidence"] < rows[0]["mean_hu_high_confidence"]


def test_rerun_never_overwrites_unless_asked_and_editor_append(mrml_scene, model, sample):
    import slicer
    from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic, next_nodule_number

    volume, point = crop_volume(sample, 15)
    node = _scene_volume(volume)
    logic = UGSNetSegmentationLogic(lambda weights, model_id, device: model)
    first, table1, _ = logic.run(node, [point])
    second, table2, _ = logic.run(node, [point])
    assert first is not second and first.GetName() != second.GetName() and table1 is not table2
    count = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    again, _, _ = logic.run(node, [point], segmentation_node=first, table_node=table1)  # user-chosen output
    assert again is first and slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == count
    assert first.GetSegmentation().GetNumberOfSegments() == 3
    # the segment editor effect adds the next nodule to the segmentation being edited, keeping the user's segments
    first.GetSegmentation().AddEmptySegment("", "my correction", [1, 1, 0])
    logic.run(node, [point], segmentation_node=first, append=True)
    names = [
        first.GetSegmentation().GetNthSegment(i).GetName() for i in range(first.GetSegmentation().GetNumberOfSegments())
    ]
    assert names[:4] == ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence", "my correction"]
    assert names[4:] == ["Nodule 2", "Nodule 2 high confidence", "Nodule 2 low confidence"]
    assert next_nodule_number(first) == 3
    from LungAICommon.mrml import rows_from_table_node

    assert [r["nodule"] for r in rows_from_table_node(table1)] == ["Nodule 1", "Nodule 2"]


def test_cli_path_imports_the_same_nodes(mrml_scene, model, sample, tmp_path):
    from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic

    from lungai.io import write_volume
    from LungAICommon import mrml

    volume, point = crop_volume(sample, 2, slices=3)
    node = _scene_volume(volume)
    logic = UGSNetSegmentationLogic(lambda weights, model_id, device: model)
    args = logic.cli_arguments(tmp_path / "ct.nrrd", tmp_path / "points.csv", tmp_path / "out")
    assert args[:2] == ["ugsnet", "segment"]
    write_volume(volume, tmp_path / "ct.nrrd")
    logic.write_points_csv([point], tmp_path / "points.csv")
    from lungai.io import read_volume

    points = pipeline.read_points_csv(tmp_path / "points.csv")
    pipeline.write(pipeline.run(read_volume(tmp_path / "ct.nrrd"), model, points=points), tmp_path / "out")
    seg_cli, table_cli = logic.import_results(tmp_path / "out", node)
    seg_direct, table_direct, _ = logic.run(node, [point])
    for name in ("Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"):
        assert np.array_equal(mrml.segment_mask(seg_cli, name, node), mrml.segment_mask(seg_direct, name, node))
    cli_rows, direct_rows = mrml.rows_from_table_node(table_cli), mrml.rows_from_table_node(table_direct)
    assert cli_rows[0]["volume_final_mm3"] == pytest.approx(direct_rows[0]["volume_final_mm3"])
    assert (tmp_path / "out" / "nodule_1.png").is_file()


def test_bad_points_and_volumes(mrml_scene, model, sample):
    from UGSNetSegmentationLib.logic import UGSNetSegmentationLogic, points_from_markups

    volume, point = crop_volume(sample, 0)
    node = _scene_volume(volume)
    logic = UGSNetSegmentationLogic(lambda weights, model_id, device: model)
    with pytest.raises(InputError, match="Point 1 .* lies outside the volume"):
        logic.run(node, [point + np.array([0.0, 0.0, 50.0])])
    import slicer

    with pytest.raises(InputError, match="at least one point"):
        points_from_markups(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"))
    coarse, coarse_point = crop_volume({**sample, "pixel_spacing_mm": sample["pixel_spacing_mm"] * 3}, 0)
    with pytest.raises(InputError, match="too coarse"):
        logic.run(_scene_volume(coarse, "coarse"), [coarse_point])
    wide, wide_point = crop_volume({**sample, "pixel_spacing_mm": np.full_like(sample["pixel_spacing_mm"], 1.3)}, 0)
    _, _, results = logic.run(_scene_volume(wide, "wide"), [wide_point])
    assert any("1.30 x 1.30 mm, outside the 0.46-0.98 mm" in w for w in results[0].warnings)
    thick, thick_point = crop_volume(sample, 0, slices=3, slice_thickness_mm=8.0)
    air = thick.like(np.full(thick.shape, -1000, np.int16))
    _, _, results = logic.run(_scene_volume(air, "air"), [thick_point])
    assert any("8.0 mm thick" in w for w in results[0].warnings)
    assert any("outside the lungs" in w for w in results[0].warnings)
    assert any("no nodule was found" in w for w in results[0].warnings)
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2  # the wide and air runs
