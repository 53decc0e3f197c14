"""ActiveLearningSampler logic on the headless MRML harness (real slicer-core scene, real lungai model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import vtk

from lungai.al.networks import ALUNet
from lungai.al.training import ARCHITECTURE
from lungai.checkpoint import save_checkpoint
from lungai.errors import InputError
from lungai.progress import Cancelled, CancelToken
from lungai.registry import load_registry, publish


@pytest.fixture
def tiny_registry(tmp_path, monkeypatch):
    """An empty bundled registry and a user registry holding one tiny (untrained) al_unet."""
    monkeypatch.setenv("LUNGAI_RESOURCES", str(tmp_path / "Resources"))
    torch.manual_seed(0)
    model = ALUNet(channels=(4, 8), input_size=32)
    save_checkpoint(tmp_path / "tiny.pt", model, model_name=ARCHITECTURE, config=model.config)
    return publish(tmp_path / "tiny.pt", "tiny", module="ActiveLearningSampler", licence="test").folder


@pytest.fixture
def pool(mrml_scene, chest_ct, chest_lungs):
    from LungAICommon import mrml

    ct = mrml.volume_node_from_volume(chest_ct, "chest")
    half = chest_ct.like(chest_ct.array)  # a second pool volume: a cropped copy with its own geometry
    half.array = chest_ct.array[5:25].copy()
    half.origin = tuple(np.asarray(chest_ct.origin) + chest_ct.direction[:, 2] * chest_ct.spacing[2] * 5)
    other = mrml.volume_node_from_volume(half, "chest cropped")
    return [ct, other]


def _logic(tiny_registry):
    from ActiveLearningSamplerLib import ActiveLearningSamplerLogic

    return ActiveLearningSamplerLogic(model_id="tiny")


def test_entropy_volume_table_and_profile_plot(tiny_registry, pool):
    import slicer

    logic = _logic(tiny_registry)
    scores = logic.run(pool, n_samples=4)
    for node in pool:
        entropy = scores.entropy[node.GetID()]
        assert entropy.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
        assert np.allclose(entropy.GetSpacing(), node.GetSpacing()) and np.allclose(
            entropy.GetOrigin(), node.GetOrigin()
        )
        a, b = (vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4())
        entropy.GetIJKToRASDirectionMatrix(a), node.GetIJKToRASDirectionMatrix(b)
        assert all(a.GetElement(i, j) == b.GetElement(i, j) for i in range(3) for j in range(3))
        values = slicer.util.arrayFromVolume(entropy)
        assert values.min() >= 0 and values.max() <= np.log(2) + 1e-6
        np.testing.assert_allclose(
            scores.profiles[node.GetID()], values.reshape(values.shape[0], -1).mean(1), rtol=1e-5
        )

    table, rows = logic.ranked_table(pool, scores, "uss", budget=4)
    assert table.GetNumberOfRows() == len(rows) == 4
    column = table.GetTable().GetColumnByName("uncertainty")
    values = [column.GetValue(i) for i in range(table.GetNumberOfRows())]
    assert values == sorted(values, reverse=True)
    for row in rows:
        assert row["uncertainty"] == pytest.approx(scores.profiles[row["volume_node_id"]][row["slice"]], abs=1e-6)

    chart = logic.profile_chart(pool, scores, rows)
    series = [chart.GetNthPlotSeriesNode(i) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    by_name = {s.GetYColumnName(): s for s in series}
    for node in pool:
        s = by_name[node.GetName()]
        ys = s.GetTableNode().GetTable().GetColumnByName(node.GetName())
        profile = scores.profiles[node.GetID()]
        np.testing.assert_allclose([ys.GetValue(i) for i in range(len(profile))], profile, rtol=1e-6)
    picked = (
        by_name[f"{pool[0].GetName()} selected"] if any(r["volume_node_id"] == pool[0].GetID() for r in rows) else None
    )
    if picked is not None:
        xs = picked.GetTableNode().GetTable().GetColumnByName("slice index")
        assert sorted(int(xs.GetValue(i)) for i in range(xs.GetNumberOfValues())) == sorted(
            r["slice"] for r in rows if r["volume_node_id"] == pool[0].GetID()
        )

    # rescoring updates the same entropy node instead of adding another
    again = logic.run(pool[:1], n_samples=4)
    assert again.entropy[pool[0].GetID()] is scores.entropy[pool[0].GetID()]


def test_jump_to_slice_centres_slice_views(tiny_registry, pool):
    import slicer

    logic = _logic(tiny_registry)
    slice_node = slicer.mrmlScene.AddNode(slicer.vtkMRMLSliceNode())
    slice_node.SetOrientationToAxial()
    ras = logic.jump_to_slice(pool[0], 7)
    assert ras[2] == pytest.approx(pool[0].GetOrigin()[2] + 7 * pool[0].GetSpacing()[2])
    assert slice_node.GetSliceOffset() == pytest.approx(ras[2])


def test_annotated_slices_round_trip_through_a_saved_scene(tiny_registry, pool, tmp_path):
    import slicer

    logic = _logic(tiny_registry)
    logic.set_annotated(pool[0], 3)
    logic.set_annotated(pool[0], 17)
    logic.set_annotated(pool[1], 0)
    logic.set_annotated(pool[0], 3, False)
    with pytest.raises(InputError, match="outside"):
        logic.set_annotated(pool[1], 20)
    scene_file = tmp_path / "scene.mrml"
    slicer.mrmlScene.SetURL(str(scene_file))
    assert slicer.mrmlScene.Commit()

    restored = slicer.vtkMRMLScene()
    restored.SetURL(str(scene_file))
    restored.Import()
    node = restored.GetFirstNodeByName("chest")
    from ActiveLearningSamplerLib.logic import ANNOTATED_ATTRIBUTE, PARAMETER_TAG

    assert node.GetAttribute(ANNOTATED_ATTRIBUTE) == "17"
    assert restored.GetFirstNodeByName("chest cropped").GetAttribute(ANNOTATED_ATTRIBUTE) == "0"
    assert restored.GetSingletonNode(PARAMETER_TAG, "vtkMRMLScriptedModuleNode").GetParameter("ModelId") == "tiny"
    np.testing.assert_array_equal(np.flatnonzero(logic.annotated_slices(pool[0])), [17])


def test_retrain_on_annotated_slices_and_cancel_keeps_previous_model(tiny_registry, pool, chest_lungs, tmp_path):
    from LungAICommon import mrml

    logic = _logic(tiny_registry)
    lungs, _ = chest_lungs
    segmentation = mrml.segmentation_node_from_masks([lungs.array > 0], [_lung_spec()], pool[0], "annotations")
    with pytest.raises(InputError, match="no slice is marked"):
        logic.retrain(pool[:1], segmentation, "lung", tmp_path / "v2.pt", steps=2)
    for k in (10, 20):
        logic.set_annotated(pool[0], k)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        logic.retrain(pool[:1], segmentation, "lung", tmp_path / "v2.pt", steps=2, cancel=token)
    assert logic.model_id == "tiny" and not (tmp_path / "v2.pt").exists()
    assert [e.id for e in load_registry()] == ["tiny"]

    new_id = logic.retrain(pool[:1], segmentation, "lung", tmp_path / "v2.pt", steps=2)
    assert new_id == "tiny-v2" and logic.model_id == "tiny-v2"
    entry = {e.id: e for e in load_registry()}["tiny-v2"]
    assert entry.available and entry.version == "2" and "2 annotated slices" in entry.training_data


def test_subprocess_path_gives_the_blocking_result(tiny_registry, pool, tmp_path):
    from lungai.cli import main

    logic = _logic(tiny_registry)
    arguments = logic.score_arguments(pool, tmp_path / "work", n_samples=4)
    assert main(["--progress", "none", *arguments]) == 0
    imported = logic.import_scores(pool, tmp_path / "work")
    blocking = logic.run(pool, n_samples=4)
    for node in pool:
        np.testing.assert_allclose(
            imported.profiles[node.GetID()], blocking.profiles[node.GetID()], rtol=1e-4, atol=1e-6
        )


def _lung_spec():
    from lungai.segments import SegmentSpec

    return SegmentSpec("lung", 1, (0.5, 0.7, 0.5))
