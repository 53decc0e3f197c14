"""NeoplasmNLB Lib logic on the headless MRML harness: table, plot, segmentation geometry, both run paths."""

import numpy as np
import pytest
import torch

from lungai.checkpoint import load_model, save_checkpoint
from lungai.nlb.networks import build_nlb_unet
from lungai.nlb.pipeline import score_volume
from lungai.volume import Volume

TINY = {"block_type": "symmetry_localized", "widths": [4, 8, 8], "attention_levels": [1, 2], "grid": 2}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Untrained tiny model; its segmentation head marks every pixel (bias +4 instead of the 1 % prior) so that the
    segmentation the Lib imports is decided by the pipeline's restriction to the lungs."""
    torch.manual_seed(0)
    model = build_nlb_unet(**TINY)
    with torch.no_grad():  # leave the identity start so the blocks take part in the result
        for block in model.blocks:
            if hasattr(block, "gate"):
                block.gate.fill_(0.5)
        model.seg_head.bias.fill_(4.0)
    path = tmp_path_factory.mktemp("nlb") / "tiny.pt"
    return save_checkpoint(path, model, model_name="nlb_unet", config=TINY)


def test_blocking_run_builds_table_plot_and_segmentation_on_the_ct_grid(mrml_scene, chest_ct, tiny_weights):
    from NeoplasmNLBLib.logic import NeoplasmNLBLogic

    from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

    node = volume_node_from_volume(chest_ct, "chest")
    result = NeoplasmNLBLogic().run(node, weights=str(tiny_weights), threshold=0.0, device="cpu")
    rows = rows_from_table_node(result.table)
    assert len(rows) == chest_ct.shape[0] == 34
    expected = score_volume(load_model(tiny_weights)[0], chest_ct, threshold=0.0)
    # threshold 0: exactly the slices that show lung are positive (findings only inside the lungs)
    assert [r["slice"] for r in rows] == list(range(34))
    assert [r["decision"] for r in rows] == expected.decisions.astype(int).tolist()
    assert result.chart.GetNumberOfPlotSeriesNodes() == 2
    series = result.chart.GetNthPlotSeriesNode(0)
    assert series.GetTableNode().GetTable().GetNumberOfRows() == 34

    assert np.allclose([r["probability"] for r in rows], expected.probabilities, atol=1e-5)
    mask = segment_mask(result.segmentation, "Neoplasm", node)
    assert mask.shape == chest_ct.shape
    assert np.array_equal(mask, expected.labelmap > 0) and mask.any()
    assert result.most_likely_slice == expected.most_likely_slice  # the most probable reported slice
    assert expected.decisions[result.most_likely_slice] or not expected.decisions.any()
    assert mrml_scene.GetFirstNodeByName("chest neoplasm") is result.segmentation


def test_subprocess_path_gives_the_same_nodes_and_never_overwrites(mrml_scene, chest_ct, tiny_weights, tmp_path):
    from NeoplasmNLBLib.logic import NeoplasmNLBLogic

    from lungai.cli import main
    from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

    logic = NeoplasmNLBLogic()
    node = volume_node_from_volume(chest_ct, "chest")
    first = logic.run(node, weights=str(tiny_weights), threshold=0.5, device="cpu")
    path = logic.export_volume(node, tmp_path / "input.nrrd")
    arguments = logic.cli_arguments(path, tmp_path / "out", weights=str(tiny_weights), threshold=0.5, device="cpu")
    assert main(["--progress", "none", *arguments]) == 0
    second = logic.import_results(tmp_path / "out", node, threshold=0.5)
    assert second.table is not first.table and second.segmentation.GetName() != first.segmentation.GetName()
    a, b = rows_from_table_node(first.table), rows_from_table_node(second.table)
    assert [r["decision"] for r in a] == [r["decision"] for r in b]
    assert np.allclose([r["probability"] for r in a], [r["probability"] for r in b], atol=1e-5)
    assert np.array_equal(
        segment_mask(first.segmentation, "Neoplasm", node), segment_mask(second.segmentation, "Neoplasm", node)
    )


def test_jump_centres_slice_views_on_the_most_likely_slice(mrml_scene, chest_ct):
    from NeoplasmNLBLib.logic import NeoplasmNLBLogic

    from LungAICommon.mrml import volume_node_from_volume

    node = volume_node_from_volume(chest_ct, "chest")
    slice_node = mrml_scene.AddNewNodeByClass("vtkMRMLSliceNode", "Red")
    slice_node.SetLayoutName("Red")
    slice_node.SetOrientationToAxial()
    point = NeoplasmNLBLogic().jump_to_slice(node, 20)
    expected_s = chest_ct.ijk_to_ras() @ np.array([63.5, 63.5, 20, 1.0])
    assert np.allclose(point, expected_s[:3])
    assert slice_node.GetSliceOffset() == pytest.approx(point[2])


def test_single_eight_bit_image_gives_one_row(mrml_scene, tiny_weights):
    from NeoplasmNLBLib.logic import NeoplasmNLBLogic

    from lungai.errors import InputError
    from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

    image = np.zeros((1, 64, 80), dtype=np.uint8)
    image[0, 20:40, 30:50] = 200
    node = volume_node_from_volume(Volume(image), "snapshot")
    result = NeoplasmNLBLogic().run(node, weights=str(tiny_weights), threshold=0.0, device="cpu")
    assert len(rows_from_table_node(result.table)) == 1
    assert segment_mask(result.segmentation, "Neoplasm", node).shape == (1, 64, 80)
    tiny = volume_node_from_volume(Volume(np.zeros((1, 8, 8), dtype=np.uint8)), "tiny")
    with pytest.raises(InputError, match="too small"):
        NeoplasmNLBLogic().run(tiny, weights=str(tiny_weights), device="cpu")
