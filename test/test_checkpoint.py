"""Checkpoint round trip and one clear error for each kind of bad file."""

import pickle
import zipfile

import pytest
import torch

from fusanet_core import build_model, preset_config
from fusanet_core.checkpoint import CheckpointError, load_model, save_checkpoint


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    return model, save_checkpoint(tmp_path / "ckpt.pt", model, preset_config("tiny"), epoch=3)


def test_round_trip_restores_config_and_outputs(saved):
    model, path = saved
    loaded, cfg = load_model(path)
    assert cfg.preset == "tiny" and cfg.model == model.cfg
    rgb = torch.rand(1, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(model(rgb)["depth"][0], loaded(rgb)["depth"][0])
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_fp16_checkpoint_loads_into_fp32_model(saved, tmp_path):
    model, _ = saved
    path = save_checkpoint(tmp_path / "half.pt", model, preset_config("tiny"), half=True)
    loaded, _ = load_model(path)
    assert next(loaded.parameters()).dtype == torch.float32
    with torch.no_grad():
        rgb = torch.rand(1, 3, 32, 32)
        assert torch.allclose(model(rgb)["depth"][0], loaded(rgb)["depth"][0], atol=0.05)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")


def test_truncated_file(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_model(cut)


def test_random_bytes_and_malicious_pickle_are_refused(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_model(junk)

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "x", "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="not a safe torch file"):
        load_model(evil)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_model(raw)


def test_foreign_checkpoint(tmp_path):
    foreign = tmp_path / "resnet.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), foreign)
    with pytest.raises(CheckpointError, match="not a FuSaNet checkpoint"):
        load_model(foreign)


def test_mismatched_weights_name_the_keys(saved, tmp_path):
    model, _ = saved
    wrong = tmp_path / "wrong.pt"
    save_checkpoint(wrong, model, preset_config("small"))  # tiny weights under a small config
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_model(wrong)
    payload = torch.load(saved[1], weights_only=True)
    del payload["model"]["fusion_net.stem.nconv1.raw_weight"]
    payload["model"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match=r"missing keys fusion_net.stem.nconv1.raw_weight; unexpected keys extra.weight"):
        load_model(wrong)


def test_not_a_zip(tmp_path):
    path = tmp_path / "a.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError):
        load_model(path)
