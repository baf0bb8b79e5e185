"""Training and evaluation data: manifests, NYU/KITTI list files and ROS bags.

`build_dataset(spec, cfg, train)` picks the source from the entry itself:

* a `.csv` file, or a folder with `manifest.csv`      -> `ManifestSource`
* a `.txt` list file (BTS layout `rgb depth focal`)  -> `ListFileSource` (units from data.kind)
* a `.bag`, `.mcap`, `.db3` or a ROS 2 bag folder     -> `BagSource`

Any entry may end in a row range, `path[start:stop]`.
"""

from __future__ import annotations

from pathlib import Path

from .base import (collate, ConcatDataset, EpochSampler, FrameSource, parse_spec, PointSampling, resolve_path,
                   RGBDDataset, split_repeat, SubsetSource)
from .transforms import AugmentParams, Frame
from ..config import Config

__all__ = [
    "AugmentParams",
    "ConcatDataset",
    "EpochSampler",
    "Frame",
    "FrameSource",
    "RGBDDataset",
    "PointSampling",
    "split_repeat",
    "SubsetSource",
    "build_dataset",
    "dataset_from_source",
    "build_source",
    "collate",
    "parse_spec",
]

BAG_SUFFIXES = (".bag", ".mcap", ".db3")


def source_kind(path: Path, kind: str) -> str:
    """Tell the format of a resolved path: "manifest", "list" or "bag"."""
    if path.is_dir():
        if (path / "manifest.csv").is_file():
            return "manifest"
        if (path / "metadata.yaml").is_file():
            return "bag"
        raise FileNotFoundError(f"data folder {path} holds neither manifest.csv nor a ROS 2 bag (metadata.yaml)")
    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "manifest"
    if suffix in BAG_SUFFIXES:
        return "bag"
    if suffix == ".txt":
        return "list"
    if kind in ("nyu", "kitti"):
        return "list"
    raise ValueError(f"cannot tell the format of {path}: expected a manifest .csv, a list .txt or a bag "
                     f"({', '.join(BAG_SUFFIXES)})")


def build_source(spec: str, cfg: Config, base_dir: str | Path | None = None) -> FrameSource:
    """Build the frame source an entry of data.train / data.val names."""
    raw_path, rows = parse_spec(spec)
    path = resolve_path(raw_path, base_dir)
    kind = source_kind(path, cfg.data.kind)
    if kind == "manifest":
        from .manifest import ManifestSource

        return ManifestSource(path, rows)
    if kind == "list":
        from .listfile import ListFileSource

        flavour = cfg.data.kind if cfg.data.kind in ("nyu", "kitti") else "nyu"
        data_root = resolve_path(cfg.data.data_root, base_dir) if cfg.data.data_root else None
        gt_root = resolve_path(cfg.data.gt_root, base_dir) if cfg.data.gt_root else None
        return ListFileSource(path, flavour, data_root, gt_root, rows)
    from .bag import BagSource

    return BagSource(
        path,
        rows=rows,
        rgb_topic=cfg.data.bag_rgb_topic,
        depth_topic=cfg.data.bag_depth_topic,
        info_topic=cfg.data.bag_info_topic,
        slop_s=cfg.data.bag_slop_s,
        depth_scale=cfg.data.bag_depth_scale,
        assume_registered=cfg.data.bag_assume_registered,
    )


def build_dataset(spec: str, cfg: Config, train: bool, base_dir: str | Path | None = None) -> RGBDDataset:
    """Build an `RGBDDataset` for one data entry with the config's size, augmentation and points."""
    return dataset_from_source(build_source(spec, cfg, base_dir), cfg, train)


def dataset_from_source(source: FrameSource, cfg: Config, train: bool) -> RGBDDataset:
    """Wrap a frame source in an `RGBDDataset` with the config's size, augmentation and points."""
    data = cfg.data
    augment = None
    if train and data.augment:
        augment = AugmentParams(
            rotation_deg=data.rotation_deg, flip_prob=data.flip_prob, drop_prob=data.drop_prob, jitter=data.jitter,
            zoom_min=data.zoom_min
        )
    return RGBDDataset(
        source,
        image_size=data.image_size,
        max_depth=data.max_depth,
        train=train,
        crop_size=data.crop_size or None,
        augment=augment,
        max_points=cfg.points.max_points,
        zero_points_prob=cfg.points.zero_points_prob,
        contrast_threshold=cfg.points.sift_contrast_threshold,
        cache_bytes=int(data.cache_mb * 2**20),
        seed=cfg.train.seed,
        point_sampling=PointSampling(cfg.points.min_points, cfg.points.random_share, cfg.points.depth_noise),
    )
