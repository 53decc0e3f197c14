"""One checkpoint format: round-trip, refusal of tampered, corrupt, foreign and mismatched files."""

import json
import pickle

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
    with pytest.raises(CheckpointError, match="refused for safety|not a loadable"):
        load_checkpoint(path)


def test_truncated_file_is_refused(tmp_path):
    _, path = _saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a loadable lungai checkpoint"):
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
    monkeypatch.setenv("LUNGAI_RESOURCES", str(tmp_path))
    (tmp_path / "Models").mkdir()
    _, path = _saved(tmp_path / "Models")
    entry = registry.register_model(
        {
            "id": "tiny",
            "version": "1",
            "module": "test",
            "architecture": ARCHITECTURE,
            "file": path.name,
            "licence": "test",
            "training_data": "test",
            "metrics": {"dice": 0.5},
            "timings": {},
        }
    )
    assert entry.available and registry.get_model_entry("tiny").sha256 == entry.sha256
    registry.load_registered_model("tiny")
    path.write_bytes(path.read_bytes() + b"x")
    assert not registry.get_model_entry("tiny").available
    with pytest.raises(CheckpointError, match="do not match the registry's sha256"):
        registry.load_registered_model("tiny")
    with pytest.raises(LungAIError, match="No model 'missing'"):
        registry.get_model_entry("missing")


def test_bundled_registry_entries_are_valid():
    """Every bundled model's weights exist, match their sha256 and load as the registered architecture."""
    for entry in registry.load_registry():
        assert entry.available, f"{entry.id}: {entry.path} missing or changed"
        model, header = registry.load_registered_model(entry.id)
        assert header["model_name"] == entry.architecture
