"""The depth node's parameters: defaults, descriptions, ranges, read-only, and their validation.

No rclpy here, so launch files, the CLI and tests can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from fusanet_core.device import check_device_name
from fusanet_core.geometry import check_ground_plane, ground_plane_from_pose, parse_extrinsic, RigidTransform
from fusanet_core.inference.point_fit import MODES as SCALE_FIT_MODES
from fusanet_ros.nodes.params import choice, number, Param

OUTPUT_ENCODINGS = ("32FC1", "16UC1")
RECTIFY_MODES = ("auto", "off")
MAX_INPUT_PIXELS = 4096 * 4096  # comfortably above 4K UHD (3840x2160)

# Values that shape the model, the subscriptions or the QoS need a restart: runtime=False (read-only).
PARAMETERS: dict[str, Param] = {
    "checkpoint": Param("", "FuSaNet checkpoint file; empty = the bundled model"),
    "device": Param("auto", "auto | cpu | cuda | cuda:N"),
    "fp16": Param(False, "half precision (CUDA only)"),
    "backend": Param("torch", "inference backend: torch | onnxruntime (the exported graph, built and cached on "
                              "first use; CUDA / TensorRT providers with onnxruntime-gpu)"),
    "input_size": Param([0, 0], "network input [height, width]; [0, 0] = the checkpoint's"),
    "num_threads": Param(0, "torch CPU threads; 0 = torch's default", low=0, high=1024),
    "image_transport": Param("raw", "raw: subscribe `image`; compressed: subscribe `<image>/compressed`"),
    "sparse.type": Param("cloud", "sparse_points message type: cloud (PointCloud2) | depth_image (16UC1/32FC1 Image)"),
    "diagnostics_period": Param(1.0, "seconds between /diagnostics messages", low=0.01, high=3600.0),
    "expected_rate": Param(0.0, "Hz the camera should deliver; /diagnostics is STALE after 3 periods without an "
                                "image and WARN when the output rate is below half of it; 0 = no rate check "
                                "(STALE after 5 s)", True, 0.0, 1000.0),
    "max_input_pixels": Param(MAX_INPUT_PIXELS, "images with more pixels are refused before decoding (bad input "
                                                "too_large)", True, 1, 2**31),
    "rectify": Param("auto", "auto: undistort raw images (camera_info D non-zero, topic name without 'rect') | off",
                     True),
    "output_size": Param([0, 0], "published [height, width]; [0, 0] = the input image size", True),
    "output_encoding": Param("32FC1", "depth encoding: 32FC1 (metres, +Inf beyond max_depth, NaN invalid) | "
                                      "16UC1 (mm, 0 invalid)", True),
    "max_depth": Param(10.0, "metres; deeper predictions are published as +Inf (REP 117: beyond range)", True,
                       0.01, 1000.0),
    "min_confidence": Param(0.0, "depth pixels with lower confidence are published as NaN (invalid)", True, 0.0, 1.0),
    "require_camera_info": Param(False, "true: skip frames until a valid camera_info arrived; false: publish depth and "
                                        "confidence without intrinsics (no cloud, no camera_info)", True),
    "skip_when_unsubscribed": Param(True, "skip inference while no output topic has a subscriber", True),
    "cloud.organized": Param(False, "true: image grid with NaN for invalid points; false: valid points only", True),
    "cloud.stride": Param(4, "use every n-th pixel in both directions for `points`", True, 1, 64),
    "cloud.min_confidence": Param(0.0, "pixels with lower confidence are left out of `points`", True, 0.0, 1.0),
    "cloud.color": Param(True, "add packed rgb (point_step 32) to `points`", True),
    "sparse.max_age": Param(0.5, "seconds between image and sparse-points stamps for the points to be used", True,
                            0.0, 3600.0),
    "sparse.max_points": Param(500, "cap on sparse points passed to the network (random subset)", True, 1, 100000),
    "sparse.frame_id": Param("", "frame of sparse clouds that sparse.extrinsic maps into the camera; empty = only "
                                 "clouds in the image's optical frame are used", True),
    "sparse.extrinsic": Param("", "static sparse.frame_id -> camera optical frame transform: 'tx ty tz qx qy qz qw' "
                                  "or a row-major 3x4 / 4x4 matrix (p_camera = R p_sparse + t, metres)", True),
    "scale_from_points": Param("scale_local", "fit the output depth to the sparse points after the network: none | "
                                              "scale (robust median ratio) | scale_local (scale, then a per-pixel "
                                              "correction through the points along the predicted depth) | "
                                              "scale_shift (affine in inverse depth); too few or inconsistent "
                                              "points keep the network's scale (counted scale_fit_rejected)",
                               True),
    "scale_fit_min_points": Param(3, "usable sparse points needed for scale_from_points", True, 1, 100000),
    "prime_with_points": Param(False, "also feed the sparse points into the network (the paper's priming); false: "
                                      "RGB-only network, the points serve scale_from_points (the better depth with "
                                      "the bundled model, BENCHMARKS.md)", True),
    "ground.extrinsic": Param("", "pose of the camera optical frame in a z-up base frame whose z = 0 plane is the "
                                  "floor (base_footprint -> camera optical frame: p_base = R p_camera + t): "
                                  "'tx ty tz qx qy qz qw' (unit quaternion) or a row-major 3x4 / 4x4 matrix; gives "
                                  "ground.plane; empty = off", True),
    "ground.plane": Param([], "floor plane [nx, ny, nz, h] in the camera optical frame: unit normal pointing up, "
                              "camera height h > 0 m, floor points X satisfy n . X + h = 0; [] = off (set this or "
                              "ground.extrinsic, not both)", True, any_type=True),
}


@dataclass(frozen=True)
class Settings:
    """Validated parameter values (see PARAMETERS)."""

    checkpoint: str
    device: str
    fp16: bool
    backend: str
    input_size: tuple[int, int] | None
    num_threads: int
    image_transport: str
    sparse_type: str
    diagnostics_period: float
    expected_rate: float
    max_input_pixels: int
    rectify: str
    output_size: tuple[int, int] | None
    output_encoding: str
    max_depth: float
    min_confidence: float
    require_camera_info: bool
    skip_when_unsubscribed: bool
    cloud_organized: bool
    cloud_stride: int
    cloud_min_confidence: float
    cloud_color: bool
    sparse_max_age: float
    sparse_max_points: int
    sparse_frame_id: str
    sparse_extrinsic: RigidTransform | None
    scale_from_points: str
    scale_fit_min_points: int
    prime_with_points: bool
    ground_plane: tuple[float, float, float, float] | None  # (nx, ny, nz, h), camera optical frame


def validate_settings(values: Mapping[str, Any]) -> Settings:
    """Check every parameter; raises ValueError / FileNotFoundError naming the first bad one."""
    checkpoint = str(values["checkpoint"])
    if checkpoint and not Path(checkpoint).expanduser().is_file():
        raise FileNotFoundError(f"parameter checkpoint: file not found: {checkpoint}")

    def num(name: str) -> Any:
        return number(PARAMETERS, values, name)

    frame_id, extrinsic = _sparse_extrinsic(values)
    return Settings(
        checkpoint=checkpoint,
        device=check_device_name(values["device"], "parameter device"),
        fp16=bool(values["fp16"]),
        backend=choice(values, "backend", ("torch", "onnxruntime")),
        input_size=_size(values, "input_size", 32),
        num_threads=num("num_threads"),
        image_transport=choice(values, "image_transport", ("raw", "compressed")),
        sparse_type=choice(values, "sparse.type", ("cloud", "depth_image")),
        diagnostics_period=num("diagnostics_period"),
        expected_rate=num("expected_rate"),
        max_input_pixels=num("max_input_pixels"),
        rectify=choice(values, "rectify", RECTIFY_MODES),
        output_size=_size(values, "output_size", 2),
        output_encoding=choice(values, "output_encoding", OUTPUT_ENCODINGS),
        max_depth=num("max_depth"),
        min_confidence=num("min_confidence"),
        require_camera_info=bool(values["require_camera_info"]),
        skip_when_unsubscribed=bool(values["skip_when_unsubscribed"]),
        cloud_organized=bool(values["cloud.organized"]),
        cloud_stride=num("cloud.stride"),
        cloud_min_confidence=num("cloud.min_confidence"),
        cloud_color=bool(values["cloud.color"]),
        sparse_max_age=num("sparse.max_age"),
        sparse_max_points=num("sparse.max_points"),
        sparse_frame_id=frame_id,
        sparse_extrinsic=extrinsic,
        scale_from_points=choice(values, "scale_from_points", SCALE_FIT_MODES),
        scale_fit_min_points=num("scale_fit_min_points"),
        prime_with_points=bool(values["prime_with_points"]),
        ground_plane=_ground_plane(values),
    )


def _size(values: Mapping[str, Any], name: str, minimum: int) -> tuple[int, int] | None:
    size = [int(v) for v in values[name]]
    if len(size) != 2 or any(v < 0 for v in size):
        raise ValueError(f"parameter {name} must be [height, width] (or [0, 0] for the default), got {size}")
    if size == [0, 0]:
        return None
    if min(size) < minimum:
        raise ValueError(f"parameter {name} must be [height, width] >= {minimum} (or [0, 0]), got {size}")
    return size[0], size[1]


def _sparse_extrinsic(values: Mapping[str, Any]) -> tuple[str, RigidTransform | None]:
    """Read sparse.frame_id and the parsed sparse.extrinsic (None when empty).

    Each is checked on its own, so that `ros2 param set` can change one after the other; the
    transform is used only when both are set (a cloud in sparse.frame_id without it is rejected,
    saying so).
    """
    frame_id = str(values["sparse.frame_id"]).strip()
    text = str(values["sparse.extrinsic"]).replace(",", " ").split()
    if not text:
        return frame_id, None
    try:
        return frame_id, parse_extrinsic([float(v) for v in text])
    except ValueError as err:
        raise ValueError(f"parameter sparse.extrinsic: {err}") from None


def _ground_plane(values: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """Read the floor plane from ground.extrinsic or ground.plane (None when both are empty).

    Both set is refused rather than one silently winning: they may disagree, and the user should
    know which one the node uses.
    """
    extrinsic = str(values["ground.extrinsic"]).replace(",", " ").split()
    plane = values["ground.plane"]
    plane = [] if plane is None else plane  # a params file's `[]` arrives as "not set"
    if isinstance(plane, str) or not hasattr(plane, "__len__"):
        raise ValueError(f"parameter ground.plane must be [] or 4 numbers [nx, ny, nz, h], got {plane!r}")
    if extrinsic and len(plane):
        raise ValueError("parameters ground.extrinsic and ground.plane are both set: give one of them "
                         "(ground.extrinsic is turned into the plane)")
    try:
        if extrinsic:
            # strict: a non-unit quaternion typed by hand is a typo more often than a scale to divide out
            found = ground_plane_from_pose(parse_extrinsic([float(v) for v in extrinsic], strict=True))
        elif len(plane):
            found = check_ground_plane(list(plane))
        else:
            return None
    except ValueError as err:
        raise ValueError(f"parameter {'ground.extrinsic' if extrinsic else 'ground.plane'}: {err}") from None
    nx, ny, nz, h = (float(v) for v in found)
    return nx, ny, nz, h
