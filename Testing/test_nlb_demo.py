"""The NeoplasmNLB demo section and self-test inputs run on bundled data and the bundled weights only."""

from lungai.io import read_table_csv
from lungai.nlb.demo import run_demo
from lungai.nlb.pipeline import DEFAULT_MODEL_ID
from lungai.registry import get_model_entry


def test_bundled_weights_are_registered_and_intact():
    entry = get_model_entry(DEFAULT_MODEL_ID)
    assert entry.available and entry.module == "NeoplasmNLB" and entry.architecture == "nlb_unet"
    assert 0 < entry.metrics["held_out_f1"] <= 1 and "nlb train" in entry.command


def test_demo_section_scores_the_chest_ct_and_the_bundled_snapshots(tmp_path):
    section = run_demo(tmp_path, device="cpu")
    assert all(p.is_file() and p.stat().st_size > 0 for p in section.images + section.files + section.tables)
    slices = read_table_csv(tmp_path / "neoplasm_nlb" / "slices.csv")
    assert len(slices) == 34 and all(0 <= float(r["probability"]) <= 1 for r in slices)
    predictions = read_table_csv(tmp_path / "neoplasm_nlb" / "snapshots" / "predictions.csv")
    assert len(predictions) == 5
    assert "most likely" in section.text
