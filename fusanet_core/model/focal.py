"""Camera-aware depth (`model.focal_aware`): the network works for a canonical camera.

The same scene seen through a longer lens looks nearer: an image alone fixes depth only up to the
focal length. With `focal_aware` the network predicts the depth a camera with fx = image width
would see (the model's guess for an unknown camera, so unknown intrinsics change nothing), and
its depths are rescaled by s = fx / width of the actual camera at the network input; known points
go the other way on the way in. Random zoom crops (data.zoom_min) then teach the right thing: a
zoomed view has a larger fx, so the same canonical depth means a larger metric one.
Choices and measurements: docs/architecture.md "Focal length".
"""

from __future__ import annotations

from torch import Tensor

from .points import PointBatch


def focal_scale(intrinsics: Tensor, width: int) -> Tensor:
    """(B,) metric depth / canonical depth = fx / width; intrinsics (B, 4) at the network input."""
    return intrinsics[:, 0] / float(width)


def points_to_canonical(points: PointBatch, scale: Tensor) -> PointBatch:
    return PointBatch(points.uv, points.depth / scale[:, None], points.weight)


def output_to_metric(out: dict, scale: Tensor) -> dict:
    """Rescale every depth a model output dict holds (maps, pass 1 maps, salient points)."""
    maps = scale[:, None, None, None]
    metric = dict(out)
    metric["depth"] = [d * maps for d in out["depth"]]
    if out.get("pass1") is not None:
        metric["pass1"] = {**out["pass1"], "depth": [d * maps for d in out["pass1"]["depth"]]}
    if out.get("salient_points") is not None:
        salient = out["salient_points"]
        metric["salient_points"] = PointBatch(salient.uv, salient.depth * scale[:, None], salient.weight)
    return metric
