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


def test_export_check_is_nan_proof_and_leaves_no_file(saved, tmp_path, monkeypatch):
    """max(0.0, nan) is 0.0: NaN outputs once passed the check as "max |depth diff| 0.00e+00"."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnx
    import onnxruntime

    from fusanet_core.inference import export

    _, path = saved

    class NaNSession:  # onnxruntime answering NaN where PyTorch gives numbers
        def __init__(self, *args, **kwargs):
            pass

        def run(self, _outputs, feeds):
            shape = feeds["rgb"].shape
            return [np.full((1, 1, *shape[2:]), np.nan, np.float32), np.ones((1, 1, *shape[2:]), np.float32)]

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: open(args[2], "wb").write(b"graph"))
    monkeypatch.setattr(onnx.checker, "check_model", lambda *args, **kwargs: None)
    monkeypatch.setattr(onnxruntime, "InferenceSession", NaNSession)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ValueError, match=r"non-finite depth \(NaN/inf\) on the check input \(onnxruntime\)"):
        export.export_onnx(path, out, (48, 64))
    assert not any((tmp_path / "out").iterdir())  # neither model.onnx nor its temporary file
    assert export._worst(0.0, float("nan")) != export._worst(0.0, float("nan"))  # NaN stays NaN
    assert export._worst(0.5, 0.25) == 0.5


def test_export_defaults_to_the_bundled_checkpoint_and_applies_the_size_rule(monkeypatch, tmp_path):
    from fusanet_core.checkpoint import DEFAULT_CHECKPOINT
    from fusanet_core.cli import main
    from fusanet_core.inference import export

    seen = {}

    def fake(wrapper, rgb, out, final, checkpoint, *args):
        seen.update(checkpoint=checkpoint, shape=tuple(rgb.shape))
        out.write_bytes(b"graph")
        return {"path": str(final), "height": rgb.shape[2], "width": rgb.shape[3], "max_abs_diff": 0.0,
                "max_rel_diff": 0.0}

    monkeypatch.setattr(export, "_export_and_check", fake)
    assert main(["export", "--out", str(tmp_path / "m.onnx"), "--input-size", "64", "96"]) == 0
    assert seen == {"checkpoint": DEFAULT_CHECKPOINT, "shape": (1, 3, 64, 96)}
    assert (tmp_path / "m.onnx").read_bytes() == b"graph"
    with pytest.raises(ValueError, match=r"input_size must be \[height, width\] >= 32, got \(8, 8\)"):
        export.export_onnx(None, tmp_path / "small.onnx", (8, 8))
    assert not (tmp_path / "small.onnx").exists()
