"""``lungai ugsnet evaluate | segment`` on bundled data with the bundled weights, and their bad-input errors."""

import json

import numpy as np
import pytest

from lungai.cli import main
from lungai.io import read_segmentation, read_table_csv, write_volume
from lungai.ugsnet.pipeline import load, read_points_csv
from lungai.ugsnet.sample import crop_volume, load_sample, sample_path


def test_evaluate_writes_metrics_for_any_multireader_file(tmp_path):
    assert (
        main(["--progress", "none", "ugsnet", "evaluate", "--data", str(sample_path()), "--out", str(tmp_path / "e")])
        == 0
    )
    result = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert result["crops"] == 16
    for ref in ("label1", "union", "intersection"):
        for metric in ("dice", "iou", "nsd"):
            assert 0.3 < result["scores_of_final"][f"{metric}_{ref}"] <= 1.0
    hu = result["hu"]
    assert hu["mean_hu_predicted_lc"] < hu["mean_hu_predicted_hc"] and hu["mean_hu_real_lc"] < hu["mean_hu_real_hc"]
    assert (tmp_path / "e" / "hu_density.png").is_file() and (tmp_path / "e" / "mcm_overlays.png").is_file()
    # never overwrite results
    assert (
        main(["--progress", "none", "ugsnet", "evaluate", "--data", str(sample_path()), "--out", str(tmp_path / "e")])
        == 2
    )


def test_segment_writes_segments_table_and_pictures(tmp_path):
    volume, point = crop_volume(load_sample(), 15, slices=3)
    write_volume(volume, tmp_path / "ct.nrrd")
    (tmp_path / "points.csv").write_text("label,r,a,s\nn1,{:.3f},{:.3f},{:.3f}\n".format(*point))
    args = [
        "--progress",
        "none",
        "ugsnet",
        "segment",
        "--volume",
        str(tmp_path / "ct.nrrd"),
        "--points",
        str(tmp_path / "points.csv"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    labelmap, specs = read_segmentation(tmp_path / "out" / "nodules.seg.nrrd")
    assert [s.name for s in specs] == ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"]
    assert np.allclose(labelmap.spacing, volume.spacing) and np.allclose(labelmap.origin, volume.origin)
    rows = read_table_csv(tmp_path / "out" / "nodules.csv")
    assert rows[0]["nodule"] == "Nodule 1" and float(rows[0]["volume_final_mm3"]) > 0
    assert main(args) == 2  # existing outputs are not overwritten
    assert main(args + ["--overwrite"]) == 0


def test_points_csv_errors(tmp_path):
    (tmp_path / "plain.csv").write_text("1,2,3\n4,5,6\n")
    assert read_points_csv(tmp_path / "plain.csv").tolist() == [[1, 2, 3], [4, 5, 6]]
    (tmp_path / "bad.csv").write_text("r,a,s\n1,x,3\n")
    from lungai.errors import InputError

    with pytest.raises(InputError, match="cannot read RAS points"):
        read_points_csv(tmp_path / "bad.csv")
    with pytest.raises(InputError, match="not found"):
        read_points_csv(tmp_path / "missing.csv")


def test_bundled_model_intersection_head_stays_inside_union_head():
    """MCM semantics of the trained heads (not only of the thresholded regions, which hold by construction):
    on the bundled held-out crops at most 5 % of the raw intersection-head pixels fall outside the union head."""
    from lungai.ugsnet.data import prepare_crops
    from lungai.ugsnet.inference import confidence_masks, predict_probabilities

    crops = prepare_crops(load_sample())
    probabilities = predict_probabilities(load(device="cpu").network, crops.image_hu)
    union, inter = probabilities["union"] > 0.5, probabilities["intersection"] > 0.5
    assert inter.sum() > 0
    assert (inter & ~union).sum() <= 0.05 * inter.sum()
    regions = confidence_masks(probabilities)
    assert not (regions.high & ~regions.union).any()
    assert regions.low.sum() > 0
