"""One checkpoint format: round-trip, refusal of tampered, corrupt, foreign and mismatched files."""

import json
import pickle
import subprocess
import sys

import pytest
import torch
from tiny_lung_task import ARCHITECTURE, TinyLungNet

from lungai import registry
from lungai.checkpoint import load_checkpoint, load_model, save_checkpoint
from lungai.errors import CheckpointError, LungAIError


def _saved(tmp_path, width=4):
    model = TinyLungNet(width)
    path = save_checkpoint(
        tmp_path / "m.pt",
        model,
        model_name=ARCHITECTURE,
        config={"width": width},
        version="2",
        training_data="test",
        metrics={"dice": 0.5},
    )
    return model, path


def test_roundtrip_restores_weights_and_header(tmp_path):
    model, path = _saved(tmp_path)
    loaded, header = load_model(path, expected_model=ARCHITECTURE)
    assert header["version"] == "2" and header["metrics"] == {"dice": 0.5} and header["config"] == {"width": 4}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert not loaded.training


class Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_tampered_file_with_code_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["evil"] = Payload()
    with open(path, "wb") as handle:
        pickle.dump(payload, handle)  # torch.load reads legacy pickles too; weights_only must refuse it
    with pytest.raises(CheckpointError, match=r"refused \(lungai loads weights only\)|not a lungai checkpoint"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a lungai checkpoint"):
        load_checkpoint(path)


def test_foreign_torch_file_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a lungai checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_architecture_mismatch_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    header = json.loads(payload["header"])
    header["config"] = {"width": 8}  # the weights are for width 4
    payload["header"] = json.dumps(header)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not match architecture"):
        load_model(path)
    with pytest.raises(CheckpointError, match="but a 'ugsnet' model is needed"):
        load_model(path, expected_model="ugsnet")


def test_unknown_architecture(tmp_path):
    _, path = _saved(tmp_path)
    payload = torch.load(path, weights_only=True)
    payload["header"] = json.dumps({**json.loads(payload["header"]), "model_name": "no_such_net"})
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="Unknown architecture 'no_such_net'"):
        load_model(path)


def test_registry_checks_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGAI_USER_MODELS", str(tmp_path / "user"))
    _, path = _saved(tmp_path)
    entry = registry.publish(path, "tiny", module="test", licence="test", metrics={"dice": 0.5})
    assert entry.path == tmp_path / "user" / "tiny.pt" and entry.architecture == ARCHITECTURE
    assert entry.available and registry.get_model_entry("tiny").sha256 == entry.sha256
    assert json.loads((tmp_path / "user" / "models.json").read_text())["models"][0]["file"] == "tiny.pt"
    registry.load_registered_model("tiny")
    entry.path.write_bytes(entry.path.read_bytes() + b"x")
    assert not registry.get_model_entry("tiny").available
    with pytest.raises(CheckpointError, match="do not match the registry's sha256"):
        registry.load_registered_model("tiny")
    with pytest.raises(LungAIError, match="No model 'missing' is registered"):
        registry.get_model_entry("missing")


def test_publish_refuses_local_paths_bundled_ids_and_non_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGAI_USER_MODELS", str(tmp_path / "user"))
    _, path = _saved(tmp_path)
    with pytest.raises(LungAIError, match="names a path on this machine"):
        registry.publish(path, "tiny", module="test", training_data="/home/someone/scans")
    with pytest.raises(LungAIError, match="names a path on this machine"):
        registry.publish(path, "tiny", module="test", command="lungai al retrain --volume /home/someone/ct.nrrd")
    local = save_checkpoint(
        tmp_path / "local.pt", TinyLungNet(4), model_name=ARCHITECTURE, config={"width": 4}, training_data=str(path)
    )
    with pytest.raises(LungAIError, match="checkpoint header of the model names a path"):
        registry.publish(local, "tiny", module="test", training_data="a data set")
    bundled = registry.load_registry()[0].id
    with pytest.raises(LungAIError, match="is a bundled model"):
        registry.publish(path, bundled, module="test")
    with pytest.raises(LungAIError, match="not a usable model id"):
        registry.publish(path, "../escape", module="test")
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CheckpointError, match="not a lungai checkpoint"):
        registry.publish(tmp_path / "notes.csv", "tiny", module="test")
    assert not (tmp_path / "user" / "models.json").exists()


def test_user_and_bundled_registries_are_listed_together(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGAI_USER_MODELS", str(tmp_path / "user"))
    bundled = [e.id for e in registry.load_registry()]
    model, path = _saved(tmp_path)
    save_checkpoint(path, model, model_name=ARCHITECTURE, config={"width": 4}, training_state={"epoch": 3})
    entry = registry.publish(path, "mine", module="test")
    assert [e.id for e in registry.load_registry()] == [*bundled, "mine"]
    assert not entry.bundled and all(e.bundled for e in registry.load_registry()[:-1])
    assert load_checkpoint(entry.path).training_state is None  # weights and header only
    registry.load_registered_model("mine")


def test_bundled_registry_entries_are_valid():
    """Every bundled model's weights exist, match their sha256 and load as the registered architecture."""
    for entry in registry.load_registry():
        assert entry.available, f"{entry.id}: {entry.path} missing or changed"
        model, header = registry.load_registered_model(entry.id)
        assert header["model_name"] == entry.architecture


def test_registry_lists_models_without_torch():
    """Slicer lists the models when a module opens: reading the registry must not import torch (seconds)."""
    code = "import sys\nsys.modules['torch'] = None\nfrom lungai.registry import load_registry\n"
    code += "print(len(load_registry()))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert int(listed.stdout) >= 4
