"""Checkpoint round trip and one clear error for each kind of bad file."""

import pickle
import re
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
    with pytest.raises(CheckpointError,
                       match=r"missing keys fusion_net.stem.nconv1.raw_weight; unexpected keys extra.weight"):
        load_model(wrong)


def test_not_a_zip(tmp_path):
    path = tmp_path / "a.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointError):
        load_model(path)


def test_non_finite_weights_are_refused_naming_the_tensor(saved, tmp_path):
    model, _ = saved
    state = model.state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    with torch.no_grad():
        state[name].view(-1)[:2] = torch.tensor([float("nan"), float("inf")])
    model.load_state_dict(state)
    bad = save_checkpoint(tmp_path / "nan_weights.pt", model, preset_config("tiny"))
    with pytest.raises(CheckpointError,
                       match=rf"nan_weights.pt has non-finite weights: {re.escape(name)} holds 2 NaN/inf"):
        load_model(bad)


# ---------------------------------------------------------------------------------- atomic_write
def test_atomic_write_replaces_the_file_only_when_the_block_succeeds(tmp_path):
    from fusanet_core.checkpoint import atomic_write

    path = tmp_path / "report.json"
    path.write_text("old")
    with atomic_write(path) as tmp:
        assert tmp.parent == path.parent and tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"  # nothing visible under the final name before the block ends
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o644  # readable by a node's user too
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_write(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left


def test_remove_temp_files_takes_only_what_a_killed_atomic_write_left(tmp_path):
    from fusanet_core.checkpoint import remove_temp_files

    left = tmp_path / "last.ptab_cd123.tmp"  # "<name><8 random characters>.tmp"
    left.write_bytes(b"half")
    kept = [tmp_path / "last.pt", tmp_path / "last.pt.tmp", tmp_path / "other.ptab_cd123.tmp"]
    for p in kept:
        p.write_bytes(b"x")
    assert remove_temp_files(tmp_path, ["last.pt"]) == [left]
    assert all(p.exists() for p in kept) and not left.exists()


def test_default_checkpoint_is_the_bundled_file_and_the_package_exports_it():
    import fusanet_core
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT, default_checkpoint, file_sha256

    if not DEFAULT_CHECKPOINT.is_file():
        pytest.skip("no bundled checkpoint")
    assert default_checkpoint() == DEFAULT_CHECKPOINT == fusanet_core.default_checkpoint()
    assert re.fullmatch(r"[0-9a-f]{64}", file_sha256(DEFAULT_CHECKPOINT))
