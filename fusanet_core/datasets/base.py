"""The dataset every source feeds: resize/crop, augmentation, guiding points, caching.

A *source* (manifest, list file, bag) only knows how to load frame ``i`` at its native
resolution. `RGBDDataset` turns a source into training samples, the dict of issue #4:

    "rgb" (3, H, W) float32 in [0, 1], "depth" (1, H, W) float32 metres (0 where invalid),
    "mask" (1, H, W) bool, "intrinsics" (4,) float32 fx, fy, cx, cy at (H, W),
    "points" (N, 3) float32 (u, v, depth) SIFT guiding points, "name" str.

Randomness: a sample's augmentation and point subset come from its own generator, seeded by
the sampler with (seed, epoch, position) (see `EpochSampler`). Samples are therefore the same
whichever worker process builds them, which is what makes resumed training bitwise exact.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
import logging
import math
from pathlib import Path
import re
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .transforms import augment_geometry, augment_photometric, AugmentParams, center_crop, Frame, random_crop, resize
from ..model.points import PointBatch, sift_guiding_points

log = logging.getLogger(__name__)

_RANGE = re.compile(r"^(?P<path>.*?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


class FrameSource(Protocol):
    """What a data source provides: frames at native resolution, intrinsics always set."""

    name: str

    def __len__(self) -> int: ...

    def load(self, index: int) -> Frame: ...


def valid_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Pixels with a depth to learn from: finite, > 0 (0 = no reading) and within the network's range."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0) & (depth <= max_depth)


class SubsetSource:
    """Some frames of a source, in the given order (a time split without the frames that failed to load)."""

    def __init__(self, source: FrameSource, indices: Sequence[int], name: str) -> None:
        self.source, self.indices, self.name = source, [int(i) for i in indices], name

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> Frame:
        return self.source.load(self.indices[index])


def parse_spec(spec: str) -> tuple[str, slice]:
    """Split "path[a:b]" into the path and a row slice (Python slice semantics, no step).

    Raises:
        ValueError: brackets that are not a plain [start:stop] range.
    """
    spec = str(spec).strip()
    match = _RANGE.match(spec)
    if match is None:
        if spec.endswith("]") and "[" in spec:
            raise ValueError(f"bad row range in data spec {spec!r}: use path[start:stop], e.g. manifest.csv[0:400]")
        return spec, slice(None)
    to_int = lambda text: int(text) if text else None  # noqa: E731
    return match["path"], slice(to_int(match["start"]), to_int(match["stop"]))


def split_repeat(spec: str) -> tuple[str, int]:
    """Split a training entry "path[a:b]*N" into the entry and N (default 1).

    N repeats the entry's frames in every epoch: it balances a small set against large ones
    without copying its frames (one dataset, one cache).
    """
    text = str(spec).strip()
    match = re.fullmatch(r"(?P<spec>.+?)\s*\*\s*(?P<times>\d+)", text)
    if match is None:
        return text, 1
    times = int(match["times"])
    if times < 1:
        raise ValueError(f"repeat count in data spec {spec!r} must be >= 1")
    return match["spec"], times


def resolve_path(path: str, base_dir: str | Path | None) -> Path:
    """Resolve a path: a relative one against `base_dir` (the config file's folder) when it exists there.

    Otherwise a relative path resolves against the current directory.
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or base_dir is None:
        return candidate
    beside = Path(base_dir) / candidate
    return beside if beside.exists() else candidate


def select_rows(items: list, rows: slice, where: str) -> list:
    """Apply a row range and refuse an empty result, naming the source."""
    chosen = items[rows]
    if not chosen:
        span = f"[{'' if rows.start is None else rows.start}:{'' if rows.stop is None else rows.stop}]"
        raise ValueError(f"{where} has no rows in range {span} ({len(items)} rows in total)")
    return chosen


def range_label(rows: slice) -> str:
    if rows.start is None and rows.stop is None:
        return ""
    return f"[{'' if rows.start is None else rows.start}:{'' if rows.stop is None else rows.stop}]"


@dataclass(frozen=True)
class PointSampling:
    """Training point sets (config `points.min_points`, `random_share`, `depth_noise`)."""

    min_points: int = 0
    random_share: float = 0.0
    depth_noise: float = 0.0


def random_valid_points(depth: np.ndarray, valid: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) (u, v, depth) at up to `count` distinct random valid pixels (a LiDAR-like pattern)."""
    rows, cols = np.nonzero(valid)
    pick = rng.choice(len(rows), min(count, len(rows)), replace=False) if len(rows) else np.zeros(0, int)
    return np.stack([cols[pick], rows[pick], depth[rows[pick], cols[pick]]], 1).astype(np.float32)


class RGBDDataset(Dataset):
    """Samples from a `FrameSource` at a fixed output size.

    Args:
        source: the frames.
        image_size: (height, width) every frame is resized to (aspect may change; fx and fy
            scale separately).
        max_depth: depth beyond this (metres) is marked invalid: the network cannot output it.
        train: augment and draw zero-point iterations.
        crop_size: optional (height, width) crop after the resize (random when training,
            centred otherwise).
        augment: augmentation strengths; None disables augmentation.
        max_points: cap on SIFT guiding points.
        zero_points_prob: share of training samples without points.
        contrast_threshold: SIFT contrast threshold.
        cache_bytes: resized frames are kept in memory up to this many bytes (decoding JPEG +
            PNG dominates the data time; 120x160 frames cost ~130 kB each).
        seed: seed for samples requested by plain index (no sampler seed).
        point_sampling: how training point sets vary (count, random vs SIFT, noise); default: always
            max_points SIFT points, exact.
    """

    def __init__(
        self,
        source: FrameSource,
        image_size: tuple[int, int],
        max_depth: float,
        train: bool = False,
        crop_size: tuple[int, int] | None = None,
        augment: AugmentParams | None = None,
        max_points: int = 200,
        zero_points_prob: float = 0.0,
        contrast_threshold: float = 0.02,
        cache_bytes: int = 0,
        seed: int = 0,
        point_sampling: PointSampling | None = None,
    ) -> None:
        self.source = source
        self.point_sampling = point_sampling or PointSampling()
        self.name = source.name
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.crop_size = tuple(int(v) for v in crop_size) if crop_size else None
        if self.crop_size and (self.crop_size[0] > self.image_size[0] or self.crop_size[1] > self.image_size[1]):
            raise ValueError(f"data.crop_size {self.crop_size} is larger than data.image_size {self.image_size}")
        self.max_depth = float(max_depth)
        self.train = train
        self.augment = augment
        self.max_points = int(max_points)
        self.zero_points_prob = float(zero_points_prob) if train else 0.0
        self.contrast_threshold = float(contrast_threshold)
        self.cache_bytes = int(cache_bytes)
        self.seed = int(seed)
        self._cache: dict[int, Frame] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, sample_seed = key if isinstance(key, tuple) else (key, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} ({len(self)} frames)")
        seed = [self.seed, index] if sample_seed is None else [sample_seed]
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        frame = self._resized(index)
        if self.crop_size:
            frame = random_crop(frame, self.crop_size, rng) if self.train else center_crop(frame, self.crop_size)
        augment = self.train and self.augment is not None
        if augment:
            frame = augment_geometry(frame, rng, self.augment)
        valid = valid_depth(frame.depth, self.max_depth)
        depth = np.where(valid, frame.depth, 0.0).astype(np.float32)
        points = self._points(frame.rgb, depth, valid, rng)
        rgb = frame.rgb.astype(np.float32) / 255.0
        if augment:
            rgb = augment_photometric(rgb, rng, self.augment)
        return {
            "rgb": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
            "depth": torch.from_numpy(depth)[None],
            "mask": torch.from_numpy(valid)[None],
            "intrinsics": torch.from_numpy(frame.intrinsics.astype(np.float32)),
            "points": torch.from_numpy(points),
            "name": f"{self.name}:{index}",
        }

    def frame(self, index: int) -> Frame:
        """Load the frame at native resolution (for evaluation at full size)."""
        return self.source.load(index)

    def _resized(self, index: int) -> Frame:
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        frame = resize(self.source.load(index), self.image_size)
        size = frame.rgb.nbytes + frame.depth.nbytes
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[index] = frame
            self._cached_bytes += size
        return frame

    def _points(self, rgb: np.ndarray, depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.max_points <= 0 or (self.zero_points_prob > 0 and rng.random() < self.zero_points_prob):
            return np.zeros((0, 3), np.float32)
        if not self.train:
            return sift_guiding_points(rgb, depth, valid, self.max_points, self.contrast_threshold)
        s = self.point_sampling
        count = self.max_points
        if 0 < s.min_points < self.max_points:
            count = int(round(np.exp(rng.uniform(np.log(s.min_points), np.log(self.max_points)))))
        if s.random_share > 0 and rng.random() < s.random_share:
            points = random_valid_points(depth, valid, count, rng)
        else:
            points = sift_guiding_points(rgb, depth, valid, count, self.contrast_threshold, rng)
        if s.depth_noise > 0 and len(points):
            points[:, 2] *= np.clip(1.0 + s.depth_noise * rng.standard_normal(len(points)), 0.5, 1.5)
        return points.astype(np.float32)


class ConcatDataset(Dataset):
    """Several datasets end to end; keys may carry a sample seed like `RGBDDataset`'s."""

    def __init__(self, parts: Sequence[RGBDDataset]) -> None:
        if not parts:
            raise ValueError("no data sets given")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.name = "+".join(p.name for p in self.parts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        if not 0 <= part < len(self.parts):
            raise IndexError(f"index {index} out of range ({len(self)} frames)")
        local = index - int(self.offsets[part])
        return self.parts[part][(local, seed) if seed is not None else local]


class EpochSampler(Sampler):
    """Deterministic, resumable, rank-aware sampler yielding (index, sample_seed) keys.

    The order of epoch e is a permutation drawn from (seed, e) alone; rank r of W takes every
    W-th entry (padded by wrapping like DistributedSampler); `start` skips the first keys of
    this rank (resuming in the middle of an epoch). Each sample's seed depends on (seed, epoch,
    position), so augmentation does not depend on the worker that builds it.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.shuffle = int(size), int(seed), shuffle
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def keys(self) -> list[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = math.ceil(self.size / self.world_size) * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]
        positions = range(self.rank, total, self.world_size)
        seeds = [int(np.random.SeedSequence([self.seed, self.epoch, p]).generate_state(1)[0]) for p in positions]
        return list(zip([order[p] for p in positions], seeds))[self.start:]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys())

    def __len__(self) -> int:
        return max(math.ceil(self.size / self.world_size) - self.start, 0)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of samples; points become a padded `PointBatch` (on the CPU)."""
    if not samples:
        raise ValueError("cannot collate an empty batch")
    shapes = {tuple(s["rgb"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"samples of different sizes in one batch: {sorted(shapes)}")
    return {
        "rgb": torch.stack([s["rgb"] for s in samples]),
        "depth": torch.stack([s["depth"] for s in samples]),
        "mask": torch.stack([s["mask"] for s in samples]),
        "intrinsics": torch.stack([s["intrinsics"] for s in samples]),
        "points": PointBatch.from_arrays([s["points"].numpy() for s in samples]),
        "name": [s["name"] for s in samples],
    }
