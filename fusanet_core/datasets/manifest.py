"""Manifest data sets: `manifest.csv` with columns rgb,depth,depth_to_m,fx,fy,cx,cy,note.

Paths are relative to the manifest's folder; metres = raw uint16 * depth_to_m; raw 0 and 65535
are invalid; intrinsics are those of the RGB camera at the stored resolution (empty = unknown,
then the model's default guess is used).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
import logging
from pathlib import Path

import numpy as np

from .base import range_label, select_rows
from .transforms import default_intrinsics, Frame
from ..io.images import read_depth, read_rgb

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("rgb", "depth", "depth_to_m")
INTRINSIC_COLUMNS = ("fx", "fy", "cx", "cy")


@dataclass
class ManifestRow:
    rgb: Path
    depth: Path
    depth_to_m: float
    intrinsics: np.ndarray | None


def find_manifest(path: str | Path) -> Path:
    """Find a manifest file: the path itself, or the `manifest.csv` inside a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    return path


def read_manifest(path: str | Path, check_files: bool = True) -> list[ManifestRow]:
    """Parse a manifest; errors name the file and row.

    Raises:
        FileNotFoundError: the manifest or (with `check_files`) a listed image is missing.
        ValueError: no rows, missing columns or a bad number.
    """
    path = find_manifest(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"manifest {path} lacks column(s) {missing} (header: {reader.fieldnames})")
        rows = [_parse_row(path, line, row) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    if check_files:
        for row in rows:
            for file in (row.rgb, row.depth):
                if not file.is_file():
                    raise FileNotFoundError(f"file listed in {path} not found: {file}")
    return rows


def _parse_row(path: Path, line: int, row: dict[str, str]) -> ManifestRow:
    where = f"manifest {path} line {line}"
    if not row.get("rgb") or not row.get("depth"):
        raise ValueError(f"{where}: empty rgb or depth path")
    try:
        scale = float(row["depth_to_m"])
    except (TypeError, ValueError):
        raise ValueError(f"{where}: depth_to_m {row.get('depth_to_m')!r} is not a number") from None
    if not scale > 0:
        raise ValueError(f"{where}: depth_to_m must be > 0, got {scale}")
    values = [(row.get(c) or "").strip() for c in INTRINSIC_COLUMNS]
    intrinsics = None
    if all(values):
        try:
            intrinsics = np.array([float(v) for v in values], np.float64)
        except ValueError:
            raise ValueError(f"{where}: intrinsics {values} are not numbers") from None
        if intrinsics[0] <= 0 or intrinsics[1] <= 0:
            raise ValueError(f"{where}: fx, fy must be > 0, got {values[:2]}")
    return ManifestRow(path.parent / row["rgb"], path.parent / row["depth"], scale, intrinsics)


class ManifestSource:
    """Frames of a manifest, optionally a contiguous block of its rows.

    Args:
        path: manifest file or a folder holding `manifest.csv`.
        rows: row range (0-based over data rows), e.g. slice(0, 400).
    """

    def __init__(self, path: str | Path, rows: slice = slice(None)) -> None:
        self.path = find_manifest(path)
        self.rows = select_rows(read_manifest(self.path), rows, f"manifest {self.path}")
        self.name = f"{self.path.parent.name}{range_label(rows)}"

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> Frame:
        row = self.rows[index]
        return load_pair(row.rgb, row.depth, row.depth_to_m, row.intrinsics)


def load_pair(rgb_path: Path, depth_path: Path, depth_to_m: float, intrinsics: np.ndarray | None) -> Frame:
    """Read one RGB + depth pair; sizes must match (errors name both files)."""
    rgb = read_rgb(rgb_path)
    depth = read_depth(depth_path, depth_to_m)
    if rgb.shape[:2] != depth.shape:
        raise ValueError(
            f"RGB {rgb_path} is {rgb.shape[1]}x{rgb.shape[0]} but depth {depth_path} is "
            f"{depth.shape[1]}x{depth.shape[0]}"
        )
    k = default_intrinsics(*depth.shape) if intrinsics is None else np.asarray(intrinsics, np.float64)
    return Frame(rgb, depth, k)
