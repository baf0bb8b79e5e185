"""Typed configuration: dataclasses loaded from YAML that reject unknown keys.

One `Config` holds everything a run needs; its resolved form (`to_dict`) is saved in every
checkpoint so that a checkpoint rebuilds its own model.
"""

from __future__ import annotations

from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass, field
import math
from pathlib import Path
import re
import types
import typing
from typing import Any

import yaml

from .confidence_rules import check_knots, check_weights


@dataclass(frozen=True)
class _Range:
    """An interval of allowed values; NaN and inf are never in it."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return math.isfinite(value) and above and value <= self.high

    def describe(self, finite: bool) -> str:
        if math.isfinite(self.low) and math.isfinite(self.high):
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        rule = f"{'>' if self.low_open else '>='} {self.low:g}" if math.isfinite(self.low) else ""
        return " and ".join(p for p in ("finite" if finite else "", rule) if p)


FINITE, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL = _Range(), _Range(0.0), _Range(0.0, low_open=True), _Range(0.0, 1.0)


def _check_ranges(section: str, values: Any, ranges: dict[str, _Range]) -> None:
    """Raise ValueError naming the key, its range and the value of the first one out of range."""
    for key, allowed in ranges.items():
        value = getattr(values, key)
        if value not in allowed:
            raise ValueError(f"{section}.{key} must be {allowed.describe(isinstance(value, float))}, got {value}")


@dataclass
class ModelConfig:
    """Network shape. Channel widths are not published; see docs/architecture.md."""

    stem_channels: int = 16  # full resolution: kept narrow, it dominates the compute
    block_channels: tuple[int, ...] = (32, 80, 112, 144, 176)  # five Fusion-Blocks, fine->coarse
    decoder_channels: tuple[int, ...] = (16, 40, 80, 104, 128)
    saliency_channels: int = 8  # per convolution of the multi-scale feature extraction
    fkaconv_neighbors: int = 16
    fkaconv_kernel: int = 16
    use_saliency: bool = True  # False: the "w/o Saliency-Net" ablation (one Fusion-Net pass)
    use_confidence: bool = True  # False: the "w/o confidence predictor" ablation
    max_salient_points: int = 200
    max_depth: float = 10.0  # metres; the depth head is max_depth * sigmoid(.)
    min_depth: float = 0.1
    # Added by "Network v2" (docs/architecture.md). The defaults rebuild the first network
    # exactly, so configs saved before these keys existed load unchanged (see config_from_dict);
    # the presets set the v2 values.
    arch: str = "fusanet"  # fusanet | unet (the plain U-Net baseline, no points, no saliency)
    backbone: str = "none"  # none | efficientnet_lite0 (image features for the Fusion-Blocks)
    backbone_pretrained: bool = True  # ImageNet weights (pip package) on the first model.train()
    saliency_activation: str = "relu"  # relu (v1: collapses, see docs) | leaky_relu
    ceil_strides: bool = False  # False: pad to a multiple of 32; True: ceil-mode strides, no padding
    shared_confidence: bool = False  # nConv with one confidence channel per layer (not one per channel)
    reuse_image_features: bool = False  # pass 2 reuses pass 1's point-free image features
    # Salient points of equal score: memory (v1: row-major, so a flat map puts every point on the
    # top rows, which v1 checkpoints were trained with) | spatial (coarse-to-fine order: spread out).
    point_tie_break: str = "memory"
    depth_head: str = "sigmoid"  # sigmoid (v1: linear in metres) | log (log-uniform in min..max depth)
    # CPU-speed switches (the `fast` preset, docs/architecture.md "Fast preset"); the defaults
    # rebuild every earlier network.
    stem_stride: int = 1  # 2: stem and Fusion-Block 0 at 1/2 (nothing at 1/1), finest depth upsampled
    saliency_scale: int = 1  # 1 | 2 | 4: the Saliency-Net runs at 1/saliency_scale, map upsampled
    separable_convs: bool = False  # Fusion-Net 3x3 Conv2D as depthwise 3x3 + pointwise 1x1
    separable_nconv: bool = False  # nConv 3x3 as depthwise 3x3 nConv + pointwise 1x1 nConv
    # Camera-aware depth (docs/architecture.md "Focal length"): the network works in the
    # depth a canonical camera with fx = image width would see; its output (and the input points)
    # are rescaled by fx / width of the actual camera at the network input. False: metric as seen.
    focal_aware: bool = False

    def __post_init__(self) -> None:
        self.block_channels = tuple(self.block_channels)
        self.decoder_channels = tuple(self.decoder_channels)
        choices = {"arch": ("fusanet", "unet"), "backbone": ("none", "efficientnet_lite0"),
                   "saliency_activation": ("relu", "leaky_relu"), "depth_head": ("sigmoid", "log"),
                   "point_tie_break": ("memory", "spatial")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model.{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        if len(self.block_channels) != 5 or len(self.decoder_channels) != 5:
            raise ValueError("model.block_channels and model.decoder_channels need 5 entries each")
        _check_ranges("model", self, {"max_depth": FINITE})
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.stem_stride not in (1, 2) or self.stem_stride == 2 and not self.reuse_image_features:
            raise ValueError(f"model.stem_stride must be 1 or 2 (2 needs reuse_image_features), got {self.stem_stride}")
        if self.saliency_scale not in (1, 2, 4):
            raise ValueError(f"model.saliency_scale must be 1, 2 or 4, got {self.saliency_scale}")
        if self.max_salient_points < 1 or self.fkaconv_neighbors < 1:
            raise ValueError("max_salient_points and fkaconv_neighbors must be >= 1")


@dataclass
class PointsConfig:
    """Guiding points (SIFT keypoints on valid ground-truth depth)."""

    max_points: int = 200
    zero_points_prob: float = 0.2  # share of training iterations with no points ("FuSaNet3")
    sift_contrast_threshold: float = 0.02
    # Training point sets that look like use: a count log-uniform in
    # [min_points, max_points] (0 = always max_points), a share of sets at random valid pixels
    # instead of SIFT keypoints (LiDAR-like), relative Gaussian depth noise (SLAM-like).
    min_points: int = 0
    random_share: float = 0.0
    depth_noise: float = 0.0

    def __post_init__(self) -> None:
        _check_ranges("points", self, {"max_points": NON_NEGATIVE, "zero_points_prob": UNIT_INTERVAL,
                                       "sift_contrast_threshold": NON_NEGATIVE, "min_points": NON_NEGATIVE,
                                       "random_share": UNIT_INTERVAL, "depth_noise": _Range(0.0, 0.5)})


@dataclass
class InferenceConfig:
    """How the Predictor feeds images to the network."""

    input_size: tuple[int, int] = (240, 320)  # (height, width) the network runs at
    fp16: bool = False  # half precision on CUDA only
    channels_last: bool = True  # NHWC memory layout: 1.2-1.4x faster on CPU (BENCHMARKS.md)
    # Calibrated confidence (confidence.py, docs/architecture.md): the Predictor maps the raw
    # confidence through these knots (np.interp) to P(|d - gt| / gt < confidence_bound) on the
    # calibration data. Bound 0 = uncalibrated (the raw confidence; the default of older configs).
    confidence_bound: float = 0.0
    confidence_raw: tuple[float, ...] = ()
    confidence_calibrated: tuple[float, ...] = ()
    # Weights of the score the knots map (confidence.py: raw confidence and distance to the known
    # points); () = the knots map the raw confidence itself (the first calibrated checkpoints).
    confidence_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.input_size = tuple(int(v) for v in self.input_size)
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"inference.input_size must be [height, width] >= 32, got {self.input_size}")
        self.confidence_raw = tuple(float(v) for v in self.confidence_raw)
        self.confidence_calibrated = tuple(float(v) for v in self.confidence_calibrated)
        self.confidence_weights = tuple(float(v) for v in self.confidence_weights)
        check_knots(self.confidence_bound, self.confidence_raw, self.confidence_calibrated, "inference.confidence_")
        check_weights(self.confidence_weights, "inference.confidence_")


@dataclass
class LossConfig:
    """Weights of Eq. 4-5 (paper defaults, NYU setting)."""

    scale_weights: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.125)  # gamma, fine -> coarse
    beta: float = 1.0  # L_DC
    phi: float = 5.0  # L_S (20 for KITTI)
    lam: float = 0.01  # L_H
    mu: float = 1.0  # L_grad
    theta: float = 1.0  # L_norm
    psi: float = 1.0  # confidence term
    hessian_sigma: float = 1.0
    log_and_sparse_only: bool = False  # KITTI: L_log + L_S only
    pass1_weight: float = 0.5  # weight of the first Fusion-Net pass (paper silent)
    # Auxiliary Saliency-Net target (paper silent on how it is trained; its text: salient points
    # are "where predicted depth values tend to be more accurate"): BCE of the saliency map
    # against exp(-|log d1 - log gt| / median), d1 the first pass's depth. 0 = end-to-end only
    # (the first version, whose map collapsed to a constant: docs/architecture.md).
    saliency_weight: float = 0.5
    # Plain U-Net baseline (model.arch: unet): SILog (lambda 0.85) + grad_weight x multi-scale
    # gradient loss instead of Eq. 5.
    silog_lambda: float = 0.85
    unet_grad_weight: float = 0.5
    # Depth term of each scale: l_dc (Eq. 4, the paper: ln(|d - g| + 0.5), Sobel gradients and
    # normals, confidence) or silog (SILog + unet_grad_weight x Sobel gradient loss, the U-Net's
    # objective, plus the same confidence term); L_S and L_H are added either way.
    depth_term: str = "l_dc"

    def __post_init__(self) -> None:
        self.scale_weights = tuple(float(v) for v in self.scale_weights)
        if self.depth_term not in ("l_dc", "silog"):
            raise ValueError(f"loss.depth_term must be l_dc or silog, got {self.depth_term!r}")
        if not all(w in NON_NEGATIVE for w in self.scale_weights):
            raise ValueError(f"loss.scale_weights must be finite and >= 0, got {list(self.scale_weights)}")
        weights = ("beta", "phi", "lam", "mu", "theta", "psi", "pass1_weight", "saliency_weight", "unet_grad_weight")
        _check_ranges("loss", self, {**dict.fromkeys(weights, NON_NEGATIVE), "hessian_sigma": POSITIVE,
                                     "silog_lambda": UNIT_INTERVAL})


@dataclass
class DataConfig:
    """Training / validation data."""

    kind: str = "manifest"  # manifest | nyu | kitti | bag (list files: nyu or kitti units)
    # Entries: a manifest.csv (or its folder), a list file (.txt) or a bag, each optionally with
    # a row range "path[start:stop]"; relative paths resolve against the config file's folder,
    # else the current directory (docs/training.md). Validation is reported per entry.
    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    # Whole sets never trained on ("unseen scenes"): validated like `val`, reported per entry and
    # pooled as "unseen"; never used to pick best.pt.
    unseen: list[str] = field(default_factory=list)
    image_size: tuple[int, int] = (240, 320)  # (height, width) frames are resized to
    crop_size: tuple[int, ...] = ()  # optional (height, width) crop after the resize
    max_depth: float = 10.0  # ground truth beyond is invalid; also the validation cap
    min_depth: float = 1e-3  # validation cap (NYU-style)
    augment: bool = True
    rotation_deg: float = 5.0
    flip_prob: float = 0.5
    drop_prob: float = 0.5  # rectangular window dropping (RGB only)
    jitter: float = 0.2  # colour jitter strength (RGB only)
    # Random zoom: crop a window of [zoom_min, 1] x the frame (random place) and resize it back;
    # fx, fy grow by 1/zoom (1.0 = off). Pair it with model.focal_aware, else zoomed views teach
    # the network a wrong scale.
    zoom_min: float = 1.0
    num_workers: int = 0
    cache_mb: float = 2048.0  # in-memory cache of resized frames per data set (0 = off)
    data_root: str = ""  # list files: folder the RGB paths are relative to (default: list's folder)
    gt_root: str = ""  # list files: folder the depth paths are relative to (default: data_root)
    bag_rgb_topic: str = ""  # bags: "" = auto-detect
    bag_depth_topic: str = ""
    bag_info_topic: str = ""  # CameraInfo of the colour camera
    bag_slop_s: float = 0.05  # RGB/depth pairing tolerance on header stamps
    bag_depth_scale: float = 0.001  # metres per unit of 16UC1/mono16 depth
    bag_assume_registered: bool = False  # accept depth whose camera differs from the colour one

    def __post_init__(self) -> None:
        self.image_size = tuple(int(v) for v in self.image_size)
        self.crop_size = tuple(int(v) for v in self.crop_size)
        if len(self.image_size) != 2 or min(self.image_size) < 16:
            raise ValueError(f"data.image_size must be [height, width] >= 16, got {list(self.image_size)}")
        if self.crop_size and len(self.crop_size) != 2:
            raise ValueError(f"data.crop_size must be [] or [height, width], got {list(self.crop_size)}")
        if not 0.25 <= self.zoom_min <= 1.0:
            raise ValueError(f"data.zoom_min must be in [0.25, 1], got {self.zoom_min}")
        if self.kind not in ("manifest", "nyu", "kitti", "bag"):
            raise ValueError(f"data.kind must be manifest, nyu, kitti or bag, got {self.kind!r}")
        if not 0 < self.min_depth < self.max_depth:
            raise ValueError(f"need 0 < data.min_depth < data.max_depth, got {self.min_depth}, {self.max_depth}")
        _check_ranges("data", self, {
            "max_depth": FINITE, "rotation_deg": _Range(0.0, 180.0), "flip_prob": UNIT_INTERVAL,
            "drop_prob": UNIT_INTERVAL, "jitter": UNIT_INTERVAL, "num_workers": NON_NEGATIVE, "cache_mb": NON_NEGATIVE,
            "bag_slop_s": NON_NEGATIVE, "bag_depth_scale": POSITIVE,
        })


BATCH_NORM_MODES = ("auto", "batch", "frozen")


@dataclass
class TrainConfig:
    """Optimiser and schedule (paper section 4.2)."""

    epochs: int = 150
    batch_size: int = 32
    lr: float = 7e-4
    lr_decay_start: int = 10
    lr_decay_every: int = 5
    lr_decay: float = 0.95
    lr_cooldown_epochs: int = 0  # last N epochs: half-cosine towards 0 (0 = paper schedule only)
    backbone_lr_scale: float = 1.0  # the pretrained backbone's lr = lr x this (model.backbone only)
    grad_clip: float = 1.0
    max_steps: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # stop after this much training + validation time (0 = no limit)
    early_stop_patience: int = 0  # stop after N validations without a new best (0 = never)
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    out_dir: str = "runs/default"
    # Start from the weights of this checkpoint (a run's best.pt or a bundled model: fine-tuning on
    # your own data) with a fresh optimiser and schedule; "" = from scratch / ImageNet. Relative
    # paths resolve against the config file's folder, then the working directory.
    init_from: str = ""
    seed: int = 0
    # Batch-norm statistics while training: "batch" (each batch's own, updating the running ones),
    # "frozen" (the model's running statistics, fixed: the normalisation inference uses), or
    # "auto": frozen when starting from trained weights (init_from), else batch. Batches that mix
    # samples with and without points have very different per-channel statistics; docs/training.md
    # "Batch norm and points".
    batch_norm: str = "auto"
    amp: bool = True  # mixed precision on CUDA
    checkpoint_every_min: float = 10.0  # also write last.pt every N minutes (0 = off)
    checkpoint_every_steps: int = 0  # also write last.pt every N steps (0 = off)
    log_every: int = 10  # steps between train lines in metrics.jsonl
    val_every: int = 1  # epochs between validations
    val_batch_size: int = 0  # 0 = batch_size
    device: str = "auto"  # auto | cpu | cuda[:N]
    threads: int = 0  # CPU threads for torch (0 = torch's default, all cores)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"train.epochs and train.batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.lr_decay_every < 1:
            raise ValueError(f"train.lr_decay_every must be >= 1, got {self.lr_decay_every}")
        if not 0.0 <= self.backbone_lr_scale <= 10.0:
            raise ValueError(f"train.backbone_lr_scale must be in [0, 10], got {self.backbone_lr_scale}")
        if self.batch_norm not in BATCH_NORM_MODES:
            raise ValueError(f"train.batch_norm must be one of {BATCH_NORM_MODES}, got {self.batch_norm!r}")
        if not 0 <= self.lr_cooldown_epochs <= self.epochs:
            raise ValueError(f"train.lr_cooldown_epochs must be in [0, epochs], got {self.lr_cooldown_epochs}")
        _check_ranges("train", self, {
            "lr": POSITIVE, "lr_decay": _Range(0.0, 1.0, low_open=True), "lr_decay_start": _Range(1.0),
            "grad_clip": NON_NEGATIVE, "max_steps": NON_NEGATIVE, "max_minutes": NON_NEGATIVE,
            "early_stop_patience": NON_NEGATIVE, "max_bad_steps": _Range(1.0),
            "checkpoint_every_min": NON_NEGATIVE, "checkpoint_every_steps": NON_NEGATIVE, "log_every": NON_NEGATIVE,
            "val_every": NON_NEGATIVE, "val_batch_size": NON_NEGATIVE, "threads": NON_NEGATIVE,
        })

    def resolved_batch_norm(self) -> str:
        """Return what `batch_norm` means for this run: "batch" or "frozen"."""
        if self.batch_norm != "auto":
            return self.batch_norm
        return "frozen" if self.init_from else "batch"


@dataclass
class Config:
    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


# Presets differ only in the model section. "paper" lands at ~8.1M parameters (see BENCHMARKS.md).
# The v2 fixes every FuSaNet preset gets (docs/architecture.md, "Network v2").
_V2 = {
    "saliency_activation": "leaky_relu", "ceil_strides": True, "shared_confidence": True, "reuse_image_features": True,
    "point_tie_break": "spatial",
}
_LITE0 = {"backbone": "efficientnet_lite0"}
# The `small` widths, shared by `small`, `lite` and `lite_fast`.
_SMALL_WIDTHS = {"stem_channels": 16, "block_channels": (24, 32, 48, 64, 96), "decoder_channels": (16, 24, 32, 48, 64),
                 "saliency_channels": 8}
PRESETS: dict[str, dict[str, Any]] = {
    # From scratch, the paper's reference: 8.09 M parameters, 9.2 GMAC at 228x304 (BENCHMARKS.md).
    "paper": {
        **_V2,
        "stem_channels": 12,
        "block_channels": (24, 40, 64, 144, 264),
        "decoder_channels": (12, 24, 32, 96, 96),
        "saliency_channels": 6,
    },
    # Paper-sized (~8.1 M in all) with the ImageNet EfficientNet-Lite0 image encoder.
    "paper_lite0": {
        **_V2,
        **_LITE0,
        "stem_channels": 12,
        "block_channels": (24, 40, 64, 128, 176),
        "decoder_channels": (12, 24, 32, 80, 96),
        "saliency_channels": 6,
    },
    # CPU work: the `small` widths with the pretrained encoder.
    "lite": {
        **_V2,
        **_LITE0,
        **_SMALL_WIDTHS,
    },
    # `lite` with the fast preset's full-resolution cuts (stem and block 0 at 1/2, Saliency-Net at
    # 1/4): the bundled model's network, ~0.7x lite's time at 120x160.
    "lite_fast": {
        **_V2,
        **_LITE0,
        "stem_stride": 2,
        "saliency_scale": 4,
        **_SMALL_WIDTHS,
    },
    # The plain U-Net baseline (model/unet.py): Lite0 encoder, random init or ImageNet.
    "unet": {"arch": "unet", "use_saliency": False, "use_confidence": False, "backbone_pretrained": False},
    "unet_pretrained": {"arch": "unet", "use_saliency": False, "use_confidence": False, "backbone_pretrained": True},
    "small": {
        **_V2,
        **_SMALL_WIDTHS,
    },
    # CPU real time (docs/architecture.md "Fast preset"): nothing at full resolution (stem and
    # Fusion-Block 0 at 1/2), the Saliency-Net at 1/4, narrow fine levels; every component kept.
    "fast": {
        **_V2,
        "stem_stride": 2,
        "saliency_scale": 4,
        "stem_channels": 8,
        "block_channels": (8, 16, 24, 48, 64),
        "decoder_channels": (8, 8, 16, 24, 48),
        "saliency_channels": 4,
    },
    "tiny": {  # for unit tests only
        **_V2,
        "stem_channels": 8,
        "block_channels": (8, 8, 16, 16, 16),
        "decoder_channels": (8, 8, 8, 16, 16),
        "saliency_channels": 4,
        "fkaconv_kernel": 8,
        "fkaconv_neighbors": 8,
        "max_salient_points": 32,
    },
}


# The model keys of the first network (every checkpoint so far stores all of them) and those added
# since, whose ModelConfig defaults rebuild the first network.
V1_MODEL_KEYS = frozenset({
    "stem_channels", "block_channels", "decoder_channels", "saliency_channels", "fkaconv_neighbors", "fkaconv_kernel",
    "use_saliency", "use_confidence", "max_salient_points", "max_depth", "min_depth",
})
V2_MODEL_KEYS = frozenset(f.name for f in dataclasses.fields(ModelConfig)) - V1_MODEL_KEYS


def preset_config(name: str) -> Config:
    """Config with the model section of a named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return Config(preset=name, model=ModelConfig(**PRESETS[name]))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a Config from plain data; a `preset` key supplies model defaults."""
    if not isinstance(data, dict):
        raise ValueError(f"config must be a mapping, got {type(data).__name__}")
    data = dict(data)
    preset = data.get("preset", "paper")
    given = data.pop("model", None) or {}
    base = preset_config(preset).to_dict()["model"]
    if isinstance(given, dict) and V1_MODEL_KEYS <= set(given) and not set(given) & V2_MODEL_KEYS:
        # A complete model section written before the v2 keys existed (a checkpoint's resolved
        # config): the keys it lacks take the values that rebuild that network, not the preset's.
        base = _plain(dataclasses.asdict(ModelConfig()))
    return _build(Config, {**data, "model": {**base, **given} if isinstance(given, dict) else given}, "config")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Load a YAML config file, then apply `section.key=value` overrides.

    Override values are parsed as YAML; unknown keys raise ValueError naming the key and file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
        for item in overrides:
            _apply_override(data, item)
    except yaml.YAMLError as err:
        raise ValueError(f"config {path} is not valid YAML: {err}") from None
    try:
        return config_from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config {path}: {err}") from None


def _apply_override(data: dict[str, Any], item: str) -> None:
    dotted, sep, text = item.partition("=")
    keys = dotted.strip().split(".")
    if not sep or not all(keys):
        raise ValueError(f"override {item!r} is not of the form section.key=value")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {item!r}: {key} is not a section")
    try:
        node[keys[-1]] = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(f"override {item!r}: the value is not valid YAML") from None


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}.{key}")
        else:
            kwargs[key] = _coerce(hint, value, f"{where}.{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """Check a scalar/sequence against its annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis} or {Any}
        return origin(_coerce(item, v, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is bool and not isinstance(value, bool):
        raise ValueError(f"{where} must be true/false, got {value!r}")
    if hint is float and isinstance(value, str):
        value = _yaml_float(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and not numeric or hint is int and not (numeric and isinstance(value, int)):
        raise ValueError(f"{where} must be a number ({hint.__name__}), got {value!r}")
    if hint is str and not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    return float(value) if hint is float else value


def _yaml_float(text: str) -> float | str:
    """`3e-4` as a float: YAML 1.1 (PyYAML) reads exponents without a dot as strings, YAML 1.2 does not."""
    if re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+\s*", text):
        return float(text)
    return text  # not a number: the check below names it


def _plain(value: Any) -> Any:
    """Tuples to lists so that YAML and torch's weights_only loader accept the dict."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
