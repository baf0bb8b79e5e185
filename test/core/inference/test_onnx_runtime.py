"""The Predictor's onnxruntime backend.

The same results as torch (1e-4 relative), with and without points, a checked cache, the provider
rule and a clear error without onnxruntime.
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from fusanet_core import build_model, preset_config  # noqa: E402
from fusanet_core.checkpoint import file_sha256, save_checkpoint  # noqa: E402
from fusanet_core.inference import export, onnx_graph, onnx_runtime  # noqa: E402
from fusanet_core.inference.predictor import Predictor  # noqa: E402

TOL = 1e-4


def rel(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-6), initial=0.0))


def assert_agree(onnx_out: dict, torch_out: dict) -> dict[str, float]:
    diffs = {key: rel(onnx_out[key], torch_out[key])
             for key in ("depth", "confidence", "salient_points", "salient_scores")}
    assert onnx_out["points_used"] == torch_out["points_used"]
    assert all(d <= TOL for d in diffs.values()), diffs
    return diffs


def known_points(frame: dict, count: int = 300, seed: int = 0) -> np.ndarray:
    depth = frame["depth"]
    rng = np.random.default_rng(seed)
    rows, cols = rng.integers(0, depth.shape[0], count), rng.integers(0, depth.shape[1], count)
    return np.stack([cols, rows, depth[rows, cols]], 1).astype(np.float32)  # some have no depth (0): dropped


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx_cache")
    onnx = Predictor.from_checkpoint(None, "cpu", backend="onnxruntime", cache_dir=cache)
    onnx.onnx_sessions()
    return Predictor.from_checkpoint(None, "cpu"), onnx, cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    cfg = preset_config("tiny")
    cfg.inference.input_size = (64, 96)
    model = build_model(cfg)
    cache = tmp_path_factory.mktemp("onnx_tiny")
    onnx = Predictor(copy.deepcopy(model), cfg, "cpu", backend="onnxruntime", max_points=16, cache_dir=cache)
    return Predictor(model, cfg, "cpu"), onnx, cache


@pytest.mark.parametrize("case", ["no_points", "points", "points_and_intrinsics", "empty_points", "no_valid_point"])
def test_bundled_checkpoint_agrees_with_torch(bundled, sample_frame, case):
    torch_p, onnx_p, _ = bundled
    kwargs = {
        "no_points": {},
        "points": {"points": known_points(sample_frame)},
        "points_and_intrinsics": {"points": known_points(sample_frame, 40, 1),
                                  "intrinsics": sample_frame["intrinsics"]},
        "empty_points": {"points": np.zeros((0, 3), np.float32)},
        "no_valid_point": {"points": np.array([[5000.0, 10.0, 1.0], [10.0, 10.0, -1.0], [5.0, 5.0, np.nan]])},
    }[case]
    out, ref = onnx_p.predict(sample_frame["rgb"], **kwargs), torch_p.predict(sample_frame["rgb"], **kwargs)
    assert_agree(out, ref)
    assert len(out["salient_points"]) == 200 and out["depth"].shape == sample_frame["rgb"].shape[:2]
    if case.startswith("points"):
        assert out["points_used"] > 0 and not np.allclose(out["depth"], onnx_p.predict(sample_frame["rgb"])["depth"])


@pytest.mark.parametrize("with_points", [False, True])
def test_tiny_preset_agrees_with_torch(tiny, with_points):
    torch_p, onnx_p, _ = tiny
    rgb = np.random.default_rng(3).integers(0, 255, (120, 200, 3), dtype=np.uint8)
    pts = np.array([[10, 20, 1.5], [100, 50, 2.0], [150, 110, 3.0], [199, 0, 0.7]], np.float32) if with_points else None
    assert_agree(onnx_p.predict(rgb, (150.0, 150.0, 100.0, 60.0), pts),
                 torch_p.predict(rgb, (150.0, 150.0, 100.0, 60.0), pts))


def test_points_graph_with_padding_anywhere_and_no_valid_point_matches_eager(tiny):
    """The P-row graph itself (frames with points use it) gives the eager model's results.

    So do padding rows mixed with real ones in any order, and all rows invalid.
    """
    _, onnx_p, _ = tiny
    session = onnx_p.onnx_sessions()[16]
    graph = onnx_graph.InferenceGraph(onnx_p.model, 16).eval()
    rgb = export.sample_input(64, 96, seed=4)
    k = onnx_graph.default_intrinsics_array(64, 96)
    for valid_rows in (0, 5, 16):
        points, valid = export.sample_points(64, 96, 16, valid_rows, seed=valid_rows)
        outs = onnx_runtime.run(session, rgb.numpy(), points.numpy(), valid.numpy(), k)
        with torch.no_grad():
            # eager reference: only the real points, in their order, no padding
            real = points[valid].unsqueeze(0)
            ref = graph(rgb, real, torch.ones(real.shape[:2], dtype=torch.bool), torch.from_numpy(k))
        for got, want in zip(outs, ref):
            assert rel(got, want.numpy()) <= TOL


def test_configured_input_size_and_cli_backend(tmp_path, monkeypatch, sample_frame):
    from fusanet_core.cli import main

    torch.manual_seed(1)
    cfg = preset_config("tiny")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model(cfg), cfg)
    cache = tmp_path / "cache"
    onnx_p = Predictor.from_checkpoint(ckpt, "cpu", input_size=(48, 80), backend="onnxruntime", max_points=32,
                                       cache_dir=cache)
    torch_p = Predictor.from_checkpoint(ckpt, "cpu", input_size=(48, 80))
    pts = known_points(sample_frame, 30)
    assert_agree(onnx_p.predict(sample_frame["rgb"], points=pts), torch_p.predict(sample_frame["rgb"], points=pts))
    sha = file_sha256(ckpt)
    assert sorted(p.name for p in cache.glob("*.onnx")) == [f"{sha}-48x80-0.onnx", f"{sha}-48x80-32.onnx"]

    import cv2

    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(sample_frame["rgb"], cv2.COLOR_RGB2BGR))
    monkeypatch.setenv("FUSANET_CACHE_DIR", str(tmp_path / "cli_cache"))
    argv = ["predict", str(tmp_path / "frame.png"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "out"),
            "--device", "cpu", "--input-size", "48", "80", "--backend", "onnxruntime"]
    assert main(argv) == 0
    assert (tmp_path / "out" / "frame_depth.png").is_file() and any((tmp_path / "cli_cache").glob("*-48x80-512.onnx"))


def test_cache_is_reused_and_a_mismatching_or_damaged_file_is_rebuilt(tiny, monkeypatch):
    torch_p, onnx_p, cache = tiny
    rgb = np.random.default_rng(5).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    want = onnx_p.predict(rgb)
    calls = []
    real_export = export.export_model
    monkeypatch.setattr(export, "export_model", lambda *a, **k: calls.append(a[1]) or real_export(*a, **k))

    again = Predictor(copy.deepcopy(torch_p.model), torch_p.cfg, "cpu", backend="onnxruntime", max_points=16,
                      cache_dir=cache)
    np.testing.assert_array_equal(again.predict(rgb)["depth"], want["depth"])
    assert calls == []  # both graphs came from the cache

    import onnx

    path = again._graphs.path(16)
    graph = onnx.load(str(path))
    for prop in graph.metadata_props:
        if prop.key == "fusanet.checkpoint_sha256":
            prop.value = "0" * 64  # made from another checkpoint
    onnx.save(graph, str(path))
    again._graphs.path(0).write_bytes(b"not an onnx file")
    third = Predictor(copy.deepcopy(torch_p.model), torch_p.cfg, "cpu", backend="onnxruntime", max_points=16,
                      cache_dir=cache)
    np.testing.assert_array_equal(third.predict(rgb)["depth"], want["depth"])
    assert sorted(calls) == sorted([again._graphs.path(0), again._graphs.path(16)])
    assert onnx_p._graphs._mismatch(path, onnx_graph.graph_metadata(onnx_p._graphs.sha256, 64, 96, 16)) is None


def test_more_points_than_the_graph_takes_are_thinned(tiny, caplog):
    _, onnx_p, _ = tiny
    rng = np.random.default_rng(6)
    pts = np.stack([rng.uniform(0, 95, 40), rng.uniform(0, 63, 40), rng.uniform(0.5, 3, 40)], 1)
    out = onnx_p.predict(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), points=pts)
    assert out["points_used"] == 16 and "using an even subset" in caplog.text


def test_missing_onnxruntime_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    cfg = preset_config("tiny")
    with pytest.raises(ValueError, match=r"pip install onnxruntime \(CPU\) or pip install onnxruntime-gpu"):
        Predictor(build_model(cfg), cfg, "cpu", backend="onnxruntime")
    with pytest.raises(ValueError, match="backend must be one of torch, onnxruntime"):
        Predictor(build_model(cfg), cfg, "cpu", backend="tensorrt")


def test_providers_follow_the_device_rule(tmp_path):
    cpu, gpu = ["CPUExecutionProvider"], ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    choose = onnx_runtime.choose_providers
    assert choose("cpu", gpu) == (["CPUExecutionProvider"], torch.device("cpu"))
    assert choose("auto", cpu, cuda_visible=True)[1] == torch.device("cpu")
    assert choose("auto", gpu, cuda_visible=False)[1] == torch.device("cpu")
    providers, device = choose("auto", gpu, fp16=True, trt_cache=tmp_path, cuda_visible=True)
    assert device == torch.device("cuda", 0) and [p if isinstance(p, str) else p[0] for p in providers] == gpu
    assert providers[0][1] == {"device_id": 0, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(tmp_path)}
    providers, device = choose("cuda:1", gpu[1:])
    assert providers == [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"] and device.index == 1
    with pytest.raises(ValueError, match="pip install onnxruntime-gpu"):
        choose("cuda", cpu)
    with pytest.raises(ValueError, match="device must be"):
        choose("tpu", gpu)


def test_fusanet_export_writes_the_points_graph(tmp_path):
    import onnxruntime

    cfg = preset_config("tiny")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model(cfg), cfg)
    report = export.export_onnx(ckpt, tmp_path / "m.onnx", (48, 64), max_points=8)
    assert report["max_rel_diff"] <= 1e-4 and report["max_points"] == 8
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("rgb", [1, 3, 48, 64]), ("points", [1, 8, 3]), ("points_valid", [1, 8]), ("intrinsics", [1, 4])]
    assert [o.name for o in session.get_outputs()] == list(onnx_graph.OUTPUT_NAMES)
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["fusanet.checkpoint_sha256"] == file_sha256(ckpt) and meta["fusanet.input_size"] == "48x64"


class _SwappedSelection:
    """An onnxruntime session whose first `flips` runs choose other salient pixels (and so other depth)."""

    def __init__(self, session, flips: int):
        self.session, self.flips = session, flips

    def get_inputs(self):
        return self.session.get_inputs()

    def run(self, names, feeds):
        outs = self.session.run(names, feeds)
        if self.flips > 0:
            self.flips -= 1
            outs[0] = outs[0] * 1.05  # pass 2 around another point: a few % off
            outs[2] = outs[2] + np.array([3.0, 0.0, 0.0], np.float32)
        return outs


@pytest.mark.parametrize("flips,passes", [(1, True), (export.PROBE_TRIES, False)])
def test_a_salient_choice_broken_by_float_order_is_redrawn_but_a_graph_that_always_differs_fails(
        tmp_path, monkeypatch, flips, passes):
    """A near-tie of saliency scores that torch and onnxruntime break apart: that input is drawn again."""
    import onnxruntime

    real = onnxruntime.InferenceSession
    monkeypatch.setattr(onnxruntime, "InferenceSession",
                        lambda *args, **kwargs: _SwappedSelection(real(*args, **kwargs), flips))
    cfg = preset_config("tiny")
    ckpt = save_checkpoint(tmp_path / "tiny.pt", build_model(cfg), cfg)
    if passes:
        report = export.export_onnx(ckpt, tmp_path / "m.onnx", (48, 64), max_points=8)
        assert report["probes_redrawn"] == 1 and report["max_rel_diff"] <= 1e-4
    else:
        with pytest.raises(ValueError, match="disagrees with PyTorch: max rel depth diff 0.05"):
            export.export_onnx(ckpt, tmp_path / "m.onnx", (48, 64), max_points=8)
        assert not (tmp_path / "m.onnx").exists()  # nothing half-checked is left under the name
