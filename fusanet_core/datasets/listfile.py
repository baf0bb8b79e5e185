"""NYU-Depth-v2 and KITTI-depth in the BTS list-file layout.

Each line is `rgb_path depth_path focal` (whitespace separated), paths relative to a data root
(RGB) and a ground-truth root (depth), e.g.

    NYU:   kitchen_0028a/rgb_00045.jpg kitchen_0028a/sync_depth_00045.png 518.8579
    KITTI: 2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000005.png
           2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000005.png 721.5377

Depth PNG units: NYU millimetres (m = v / 1000), KITTI m = v / 256 (sparse, 0 = no return).
Lines whose depth is "None" (frames without ground truth in the KITTI lists) are skipped. The
principal point is not in the lists: NYU uses the Kinect calibration of the NYU toolbox
(cx 325.58, cy 253.74 at 640x480), KITTI the image centre (within ~15 px of the per-drive P2).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from .base import range_label, select_rows
from .manifest import load_pair
from .transforms import Frame

log = logging.getLogger(__name__)

DEPTH_TO_M = {"nyu": 1e-3, "kitti": 1.0 / 256.0}
NYU_PRINCIPAL_POINT = (325.5824, 253.7362)  # NYU toolbox camera_params.m, 640x480


class ListFileSource:
    """Frames of a BTS-style list file.

    Args:
        path: the list file.
        flavour: "nyu" or "kitti" (depth units and principal point).
        data_root: folder of the RGB paths (default: the list file's folder).
        gt_root: folder of the depth paths (default: data_root).
        rows: row range over the usable lines.
    """

    def __init__(
        self,
        path: str | Path,
        flavour: str = "nyu",
        data_root: str | Path | None = None,
        gt_root: str | Path | None = None,
        rows: slice = slice(None),
    ) -> None:
        if flavour not in DEPTH_TO_M:
            raise ValueError(f"list-file flavour must be 'nyu' or 'kitti', got {flavour!r}")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"list file not found: {self.path}")
        self.flavour = flavour
        self.data_root = Path(data_root) if data_root else self.path.parent
        self.gt_root = Path(gt_root) if gt_root else self.data_root
        self.items = select_rows(self._parse(), rows, f"list file {self.path}")
        self.name = f"{self.path.stem}{range_label(rows)}"

    def _parse(self) -> list[tuple[Path, Path, float]]:
        items, skipped = [], 0
        for number, line in enumerate(self.path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            if len(fields) < 3:
                raise ValueError(f"list file {self.path} line {number}: expected 'rgb depth focal', "
                                 f"got {line.strip()!r}")
            if fields[1] == "None":
                skipped += 1
                continue
            try:
                focal = float(fields[2])
            except ValueError:
                raise ValueError(f"list file {self.path} line {number}: focal {fields[2]!r} is not a number") from None
            if not (math.isfinite(focal) and focal > 0):  # a wrong focal silently skews focal-aware depth
                raise ValueError(f"list file {self.path} line {number}: focal must be a positive number of pixels, "
                                 f"got {fields[2]!r}")
            rgb, depth = self.data_root / fields[0].lstrip("/"), self.gt_root / fields[1].lstrip("/")
            for file in (rgb, depth):
                if not file.is_file():
                    raise FileNotFoundError(f"file listed in {self.path} line {number} not found: {file}")
            items.append((rgb, depth, focal))
        if skipped:
            log.info("%s: skipped %d lines without ground truth", self.path, skipped)
        if not items:
            raise ValueError(f"list file {self.path} has no usable lines")
        return items

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> Frame:
        rgb, depth, focal = self.items[index]
        frame = load_pair(rgb, depth, DEPTH_TO_M[self.flavour], None)
        h, w = frame.size
        if self.flavour == "nyu" and (h, w) == (480, 640):
            cx, cy = NYU_PRINCIPAL_POINT
        else:
            cx, cy = (w - 1) / 2, (h - 1) / 2
        return Frame(frame.rgb, frame.depth, np.array([focal, focal, cx, cy], np.float64))
