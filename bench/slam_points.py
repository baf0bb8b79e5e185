"""Known points as a SLAM map gives them: triangulated from feature matches with the recorded poses.

`triangulated_points` never reads ground-truth depth: it detects SIFT features in frame `index`
and in a few neighbouring frames of the same trajectory (chosen by their pose: enough baseline,
similar viewing direction), matches them (ratio test, mutual best, epipolar distance under the
known relative pose), triangulates every match with the recorded camera-to-world poses, keeps the
points in front of both cameras with a small reprojection error and enough parallax, and merges
the views that saw one feature (multi-view DLT, views that disagree are dropped). The points come
back ordered strongest-first and spread over the image, so that the first K of them are the K a
map would offer. The ground truth only scores them afterwards (`depth_errors`).

`load_trajectory_poses(set_folder)` reads the poses of the sets under ../shared/data that have
them, one camera-to-world 4x4 (metres, OpenCV camera axes: x right, y down, z forward) per
manifest row (NaN where a row has none), or None for a set without poses:

* 7scenes_redkitchen: `frame-XXXXXX.pose.txt` beside each colour image (7-Scenes: camera-to-world
  of the Kinect depth camera, metres; its colour camera is close but not hardware-registered).
* hololens_office_dvmvs: `camera_to_world_poses.txt`, one row-major 4x4 per frame name.
* rs_d435_office: `camera_pose.csv` holds T265 poses (the T265 body in its own world frame, x
  right, y up, z backward), one per source frame. The D435 colour camera is not the T265: its
  pose is T265 pose x T265_CAMERA_IN_BODY, an extrinsic estimated here from the training rows
  0:198 (`python bench/slam_points.py calibrate-t265`), and the pose of image row r is the
  T265 row 10 r + T265_ROW_OFFSET (the images lag the logged poses by ~2 pose rows, 67 ms).

`python bench/slam_points.py check` prints the convention checks of the three sets: ground-truth
depth of frame i reprojected into frame j with the poses (depth agreement), and the epipolar
distance of SIFT matches under the poses.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any, Callable

import cv2
import numpy as np

from fusanet_core.datasets.manifest import read_manifest
from fusanet_core.io.images import read_rgb

# T265 pose rows per manifest row of rs_d435_office (every 10th source frame), and the offset of the
# pose row that matches an image (estimated by calibrate_t265 on rows 0:198: -2 rows, ~67 ms at 30 Hz).
T265_ROWS_PER_FRAME = 10
T265_ROW_OFFSET = -2
# The D435 colour camera (OpenCV axes) in the T265 body frame (x right, y up, z backward): about the
# axis flip diag(1, -1, -1) turned by 2.4 deg, and a lever arm of a few cm (weakly determined by
# hand-held motion: rotations are small). calibrate_t265 on rows 0:198, offset -2: 2.90 px median
# reprojection error of ground-truth-depth SIFT matches (7.14 px at offset 0).
T265_CAMERA_IN_BODY = np.array([
    [0.99964, 0.00033, -0.02669, -0.0342],
    [0.00122, -0.99945, 0.03327, 0.0000],
    [-0.02666, -0.03329, -0.99909, -0.0173],
    [0.0, 0.0, 0.0, 1.0]])

# The colour camera of 7-Scenes: its manifest (and camera-intrinsics.txt) gives the Kinect DEPTH camera's
# 585 px; the colour images have ~525 px (the value DSAC* and others use for 7-Scenes RGB). Here the
# epipolar distance of SIFT matches under the recorded poses is least at 515-525 px (1.02 px median,
# 1.62 px at 585; `check` prints the scan), and triangulating with 585 makes every depth ~6 % too far.
COLOUR_INTRINSICS = {"7scenes_redkitchen": (525.0, 525.0, 320.0, 240.0)}

SIFT_FEATURES = 2000
SIFT_CONTRAST = 0.02  # as fusanet_core.model.points.sift_guiding_points: more texture on dull indoor frames
GRID = (8, 6)  # cells over the image for the spread ordering (columns, rows)


def load_trajectory_poses(set_folder: str | Path) -> np.ndarray | None:
    """Return one camera-to-world 4x4 per manifest row of a set (NaN rows: no pose), or None.

    None when the set has no poses (no known pose file in the folder).
    """
    folder = Path(set_folder)
    if folder.suffix.lower() == ".csv":
        folder = folder.parent
    rows = read_manifest(folder, check_files=False)
    if (folder / "camera_to_world_poses.txt").is_file():
        return _named_poses(folder / "camera_to_world_poses.txt", [Path(r.rgb).stem for r in rows])
    if (folder / "camera_pose.csv").is_file():
        frames = [_source_frame(r.rgb) for r in rows]
        return t265_camera_poses(folder / "camera_pose.csv", frames)
    per_frame = [Path(str(r.rgb).replace(".color.jpg", ".pose.txt").replace(".color.png", ".pose.txt")) for r in rows]
    if any(p.is_file() and p.name.endswith(".pose.txt") for p in per_frame):
        return np.stack([_pose_file(p) for p in per_frame])
    return None


def trajectory_intrinsics(set_folder: str | Path, manifest_intrinsics: Any) -> tuple[float, ...]:
    """Return the colour camera's (fx, fy, cx, cy) to triangulate with: COLOUR_INTRINSICS, else the manifest's."""
    folder = Path(set_folder)
    name = folder.parent.name if folder.suffix.lower() == ".csv" else folder.name
    return COLOUR_INTRINSICS.get(name, tuple(float(v) for v in manifest_intrinsics))


def _pose_file(path: Path) -> np.ndarray:
    """One 4x4 pose text file (7-Scenes); NaN when missing or not finite (7-Scenes writes -inf for lost frames)."""
    if not path.is_file():
        return np.full((4, 4), np.nan)
    pose = np.loadtxt(path, dtype=np.float64).reshape(4, 4)
    return pose if np.isfinite(pose).all() else np.full((4, 4), np.nan)


def _named_poses(path: Path, names: list[str]) -> np.ndarray:
    """Rows "name r00 .. r33" (row-major 4x4), matched to the manifest's image names."""
    table = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts and not line.startswith("#"):
            table[parts[0]] = np.array(parts[1:17], np.float64).reshape(4, 4)
    return np.stack([table.get(name, np.full((4, 4), np.nan)) for name in names])


def _source_frame(rgb: Path) -> int:
    """Return the source frame number of an rs_d435_office image, color/000010.jpg -> 10."""
    match = re.search(r"(\d+)\.\w+$", str(rgb))
    if match is None:
        raise ValueError(f"no frame number in {rgb}")
    return int(match[1])


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Return the 3x3 rotation of a unit quaternion (x, y, z, w)."""
    n = np.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def read_t265_csv(path: str | Path) -> dict[int, np.ndarray]:
    """{frame count: T265 body-to-world 4x4} of a camera_pose.csv (Pos x,y,z, Rot x,y,z,w)."""
    poses = {}
    with Path(path).open(newline="") as handle:
        for row in csv.DictReader(handle):
            pose = np.eye(4)
            pose[:3, :3] = quaternion_matrix(*(float(row[f"Rot {a}"]) for a in "xyzw"))
            pose[:3, 3] = [float(row[f"Pos {a}"]) for a in "xyz"]
            poses[int(row["Frame count"])] = pose
    return poses


def t265_camera_poses(path: str | Path, frames: list[int], offset: int = T265_ROW_OFFSET,
                      camera_in_body: np.ndarray = T265_CAMERA_IN_BODY) -> np.ndarray:
    """Colour-camera-to-world poses of source frames: T265 pose of row frame + offset, times the extrinsic."""
    body = read_t265_csv(path)
    missing = np.full((4, 4), np.nan)
    return np.stack([body[f + offset] @ camera_in_body if f + offset in body else missing for f in frames])


# --- features and neighbours -----------------------------------------------------------------------

@dataclass
class Features:
    """SIFT keypoints of one frame: (N, 2) positions, (N,) responses, (N, 128) descriptors, image (H, W)."""

    uv: np.ndarray
    response: np.ndarray
    descriptors: np.ndarray
    shape: tuple[int, int]


class FeatureCache:
    """SIFT features per frame index of one source, computed once (colour only: never the depth)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.features: dict[int, Features] = {}
        self.sift = cv2.SIFT_create(nfeatures=SIFT_FEATURES, contrastThreshold=SIFT_CONTRAST)

    def rgb(self, index: int) -> np.ndarray:
        """Return the colour image of a frame; manifest sources read the colour file alone."""
        rows = getattr(self.source, "rows", None)
        if rows is not None and hasattr(rows[index], "rgb"):
            return read_rgb(rows[index].rgb)
        return self.source.load(index).rgb

    def __call__(self, index: int) -> Features:
        if index not in self.features:
            gray = cv2.cvtColor(np.ascontiguousarray(self.rgb(index)), cv2.COLOR_RGB2GRAY)
            empty = np.zeros((0, 128), np.float32)
            keypoints, descriptors = self.sift.detectAndCompute(gray, None)
            uv = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2)
            response = np.array([k.response for k in keypoints], np.float64)
            self.features[index] = Features(uv, response, empty if descriptors is None else descriptors,
                                            gray.shape[:2])
        return self.features[index]


def view_angle(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between the optical axes (camera z) of two camera-to-world poses."""
    cos = float(np.dot(a[:3, 2], b[:3, 2]))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def choose_neighbours(poses: np.ndarray, index: int, count: int = 4, min_baseline: float = 0.05,
                      max_baseline: float = 0.6, max_view_angle: float = 25.0, window: int = 30) -> list[int]:
    """Return up to `count` frames to triangulate frame `index` with, nearest in time first.

    A neighbour lies within `window` rows, has a pose, a baseline to `index` in [min_baseline,
    max_baseline] metres, an optical axis within `max_view_angle` degrees of frame `index`'s (the
    views overlap), and sits at least min_baseline / 2 from every neighbour taken before (distinct views).
    """
    here = poses[index]
    if not np.isfinite(here).all():
        return []
    centre = here[:3, 3]
    candidates = sorted((j for j in range(max(0, index - window), min(len(poses), index + window + 1))
                         if j != index and np.isfinite(poses[j]).all()), key=lambda j: (abs(j - index), j))
    chosen: list[int] = []
    for j in candidates:
        baseline = float(np.linalg.norm(poses[j][:3, 3] - centre))
        if not min_baseline <= baseline <= max_baseline or view_angle(here, poses[j]) > max_view_angle:
            continue
        if all(np.linalg.norm(poses[j][:3, 3] - poses[c][:3, 3]) >= min_baseline / 2 for c in chosen):
            chosen.append(j)
            if len(chosen) == count:
                break
    return chosen


# --- geometry ---------------------------------------------------------------------------------------

def camera_matrix(intrinsics: Any) -> np.ndarray:
    """Return the 3x3 K of (fx, fy, cx, cy)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def relative_pose(poses: np.ndarray, i: int, j: int) -> np.ndarray:
    """Return the 4x4 taking camera-i coordinates to camera-j coordinates (both camera-to-world)."""
    return np.linalg.inv(poses[j]) @ poses[i]


def epipolar_distance(uv_i: np.ndarray, uv_j: np.ndarray, k: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Distance in pixels of each uv_j from the epipolar line of uv_i under the relative pose i -> j."""
    t = rel[:3, 3]
    skew = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    k_inv = np.linalg.inv(k)
    fundamental = k_inv.T @ skew @ rel[:3, :3] @ k_inv
    lines = np.c_[uv_i, np.ones(len(uv_i))] @ fundamental.T
    norm = np.maximum(np.linalg.norm(lines[:, :2], axis=1), 1e-12)
    return np.abs(np.sum(lines * np.c_[uv_j, np.ones(len(uv_j))], axis=1)) / norm


def project(points: np.ndarray, k: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) points through a 4x4 transform and K: ((N, 2) pixels, (N,) depths)."""
    cam = points @ transform[:3, :3].T + transform[:3, 3]
    z = cam[:, 2]
    uv = (cam @ k.T)[:, :2] / np.where(np.abs(z) > 1e-12, z, 1e-12)[:, None]
    return uv, z


def triangulate_views(observations: list[tuple[np.ndarray, np.ndarray]], k: np.ndarray) -> np.ndarray:
    """Linear multi-view triangulation (DLT) of one point: [(4x4 camera-i-to-view transform, uv)] -> xyz in camera i."""
    rows = []
    for transform, (u, v) in observations:
        proj = k @ transform[:3]
        rows += [u * proj[2] - proj[0], v * proj[2] - proj[1]]
    _, _, vt = np.linalg.svd(np.array(rows))
    x = vt[-1]
    return x[:3] / x[3] if abs(x[3]) > 1e-12 else np.full(3, np.nan)


def match(a: Features, b: Features, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the indices (ia, ib) of mutual nearest SIFT matches that pass Lowe's ratio test both ways."""
    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def best(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.full(len(x), -1, np.int64)
        for m in matcher.knnMatch(x, y, k=2):
            if len(m) == 2 and m[0].distance < ratio * m[1].distance:
                out[m[0].queryIdx] = m[0].trainIdx
        return out

    ab, ba = best(a.descriptors, b.descriptors), best(b.descriptors, a.descriptors)
    ia = np.nonzero(ab >= 0)[0]
    mutual = ba[ab[ia]] == ia
    return ia[mutual], ab[ia[mutual]]


@dataclass
class TriangulationSettings:
    """The thresholds of `triangulated_points` (pixels, degrees, metres).

    Chosen on the training rows of 7scenes_redkitchen (0:400) and rs_d435_office (0:198) against
    their ground truth; hololens_office_dvmvs (unseen) was only looked at. Asking for three views
    (frame `index` and two neighbours that agree within `agreement`), as a SLAM map keeps the
    landmarks that several keyframes saw, halves the outliers of two-view points at about half
    the count.
    """

    neighbours: int = 8  # frames matched against frame `index`
    min_baseline: float = 0.07  # metres between camera centres
    max_baseline: float = 0.6
    max_view_angle: float = 25.0  # between optical axes: the views must overlap
    window: int = 30  # neighbours within this many manifest rows
    ratio: float = 0.75  # Lowe's ratio test
    max_epipolar: float = 2.0  # pixels from the epipolar line of the known relative pose
    max_reprojection: float = 2.0  # pixels, in every view
    min_parallax: float = 2.0  # degrees between two viewing rays of the point
    min_views: int = 3  # frame `index` included
    agreement: float = 0.05  # views whose two-view depth differs more than this from the median are dropped
    max_depth: float = 20.0
    score: str = "parallax"  # order within a grid cell: "parallax" (x sqrt(views)) or "views" (then response)


SCORES = {"views": lambda views, parallax, response: views + response / (1.0 + response),
          "parallax": lambda views, parallax, response: min(parallax, 20.0) * np.sqrt(views)}


def triangulated_points(source: Any, index: int, poses: np.ndarray, intrinsics: Any, max_points: int = 200,
                        settings: TriangulationSettings | None = None, cache: FeatureCache | None = None,
                        info: dict | None = None) -> np.ndarray:
    """Return up to `max_points` points (u, v, z) of frame `index`, triangulated from its neighbours.

    Deterministic (no randomness: the same frames give the same points). Only colour images and
    poses are read; ground-truth depth never.

    Args:
        source: the trajectory's frames: `.load(i).rgb`, or a manifest source (`.rows[i].rgb`).
        index: the frame whose pixels the points are in.
        poses: (N, 4, 4) camera-to-world per frame of `source`, metres; NaN = no pose.
        intrinsics: (fx, fy, cx, cy) of the colour camera (all frames of the trajectory).
        max_points: cap; the strongest, spread over the image, come first.
        settings: thresholds (TriangulationSettings defaults).
        cache: features of the source's frames, reused across calls (made here when None).
        info: optional dict filled with the neighbours used, candidate counts, and per returned point
            its number of views ("views", frame `index` included) and parallax in degrees ("parallax").

    Returns:
        (N, 3) float32, N <= max_points, u, v = frame `index`'s keypoint position in pixels, z = depth
        along its optical axis in metres.
    """
    s = settings or TriangulationSettings()
    cache = FeatureCache(source) if cache is None else cache
    k = camera_matrix(intrinsics)
    neighbours = choose_neighbours(poses, index, s.neighbours, s.min_baseline, s.max_baseline, s.max_view_angle,
                                   s.window)
    if info is not None:
        info.update(neighbours=neighbours, matches=0, pairwise=0, merged=0)
    if not neighbours or max_points <= 0:
        return np.zeros((0, 3), np.float32)
    here = cache(index)
    # per keypoint of frame `index`: [(transform camera index -> camera j, uv in j, depth from pair i-j)]
    views: dict[int, list[tuple[np.ndarray, np.ndarray, float]]] = {}
    for j in neighbours:
        rel = relative_pose(poses, index, j)
        ia, ib = match(here, cache(j), s.ratio)
        if info is not None:
            info["matches"] += len(ia)
        if not len(ia):
            continue
        uv_i, uv_j = here.uv[ia], cache(j).uv[ib]
        keep = epipolar_distance(uv_i, uv_j, k, rel) <= s.max_epipolar
        ia, uv_i, uv_j = ia[keep], uv_i[keep], uv_j[keep]
        if not len(ia):
            continue
        proj_i = k @ np.eye(4)[:3]
        homog = cv2.triangulatePoints(proj_i, k @ rel[:3], uv_i.T.astype(np.float64), uv_j.T.astype(np.float64))
        xyz = (homog[:3] / np.where(np.abs(homog[3]) > 1e-12, homog[3], np.nan)).T
        ok = _good(xyz, [(np.eye(4), uv_i), (rel, uv_j)], k, s)[0]
        for a, uv, z in zip(ia[ok], uv_j[ok], xyz[ok, 2]):
            views.setdefault(int(a), []).append((rel, uv, float(z)))
        if info is not None:
            info["pairwise"] += int(ok.sum())
    points, scores, extra = [], [], []
    for a, obs in views.items():
        depths = np.array([o[2] for o in obs])
        agree = np.abs(depths / np.median(depths) - 1) <= s.agreement
        if len(obs) > 1 and agree.sum() < 2:
            continue  # two or more views, none agreeing: an unreliable point
        obs = [o for o, ok in zip(obs, agree) if ok]
        if len(obs) + 1 < s.min_views:
            continue
        xyz = triangulate_views([(np.eye(4), here.uv[a])] + [(rel, uv) for rel, uv, _ in obs], k)[None]
        good, parallax = _good(xyz, [(np.eye(4), here.uv[a][None])] + [(rel, uv[None]) for rel, uv, _ in obs], k, s)
        if not good[0]:
            continue
        points.append((here.uv[a][0], here.uv[a][1], xyz[0, 2]))
        scores.append(SCORES[s.score](len(obs), float(parallax[0]), float(here.response[a])))
        extra.append((len(obs) + 1, parallax[0]))
    if info is not None:
        info["merged"] = len(points)
    if not points:
        return np.zeros((0, 3), np.float32)
    points_arr, scores_arr = np.array(points, np.float64), np.array(scores)
    order = spread_order(points_arr[:, :2], scores_arr, here.shape)
    # SIFT can put two keypoints (two orientations) on one pixel: keep the first of each pixel
    _, first = np.unique(np.round(points_arr[order, :2]).astype(np.int64), axis=0, return_index=True)
    order = order[np.sort(first)][:max_points]
    if info is not None:
        info["views"], info["parallax"] = np.array(extra)[order].T
    return points_arr[order].astype(np.float32)


def _good(xyz: np.ndarray, views: list[tuple[np.ndarray, np.ndarray]], k: np.ndarray,
          s: TriangulationSettings) -> tuple[np.ndarray, np.ndarray]:
    """Return which points lie in front of every view, reproject within tolerance and have the parallax; the parallax.

    The parallax of a point is the largest angle (degrees) between two of its viewing rays.
    """
    ok = np.isfinite(xyz).all(axis=1) & (xyz[:, 2] > 0) & (xyz[:, 2] <= s.max_depth)
    centres = []
    for transform, uv in views:
        pixels, z = project(np.nan_to_num(xyz), k, transform)
        ok &= (z > 0) & (np.linalg.norm(pixels - uv, axis=1) <= s.max_reprojection)
        centres.append(-transform[:3, :3].T @ transform[:3, 3])  # the view's centre in camera-i coordinates
    rays = [np.nan_to_num(xyz) - c for c in centres]
    rays = [r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12) for r in rays]
    parallax = np.zeros(len(xyz))
    for a in range(len(rays)):
        for b in range(a + 1, len(rays)):
            angle = np.degrees(np.arccos(np.clip(np.sum(rays[a] * rays[b], axis=1), -1.0, 1.0)))
            parallax = np.maximum(parallax, angle)
    return ok & (parallax >= s.min_parallax), parallax


def spread_order(uv: np.ndarray, score: np.ndarray, shape: tuple[int, int], grid: tuple[int, int] = GRID) -> np.ndarray:
    """Return an order of points: the best of every grid cell first, then the second best of each, ...

    Within a round the points go by score (highest first), ties by position: deterministic, and
    any prefix of the order is spread over the image.
    """
    h, w = shape
    cell = (np.clip((uv[:, 1] * grid[1] / h).astype(int), 0, grid[1] - 1) * grid[0]
            + np.clip((uv[:, 0] * grid[0] / w).astype(int), 0, grid[0] - 1))
    by_score = np.lexsort((uv[:, 0], uv[:, 1], -score))
    rank = np.zeros(len(uv), np.int64)
    seen: dict[int, int] = {}
    for i in by_score:
        rank[i] = seen.get(int(cell[i]), 0)
        seen[int(cell[i])] = rank[i] + 1
    position = np.empty(len(uv), np.int64)
    position[by_score] = np.arange(len(uv))
    return np.lexsort((position, rank))


def depth_errors(points: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Relative depth errors z / gt - 1 of points against ground truth at their (rounded) pixel; NaN = no truth."""
    h, w = depth.shape
    if not len(points):
        return np.zeros(0)
    col = np.clip(np.round(points[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.round(points[:, 1]).astype(int), 0, h - 1)
    gt = depth[row, col].astype(np.float64)
    ok = np.isfinite(gt) & (gt > 0)
    return np.where(ok, points[:, 2] / np.where(ok, gt, 1.0) - 1.0, np.nan)


# --- convention checks and the T265 extrinsic (these use ground truth: diagnostics and calibration only) ---

def depth_consistency(depth_i: np.ndarray, depth_j: np.ndarray, rel: np.ndarray, k: np.ndarray,
                      step: int = 4) -> dict[str, float]:
    """Reproject ground truth of frame i into frame j with the relative pose i -> j; compare with j's depth.

    Returns the share of i's pixels that land on valid depth in j, the median |z / depth_j - 1| and
    the share within 5 %.
    """
    h, w = depth_i.shape
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    z = depth_i[rows, cols]
    ok = np.isfinite(z) & (z > 0)
    rows, cols, z = rows[ok], cols[ok], z[ok].astype(np.float64)
    xyz = np.linalg.solve(k, np.stack([cols * z, rows * z, z])).T
    uv, zj = project(xyz, k, rel)
    ui, vi = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    inside = (zj > 0.05) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    dj = np.zeros(len(z))
    dj[inside] = depth_j[vi[inside], ui[inside]]
    hit = inside & np.isfinite(dj) & (dj > 0)
    rel_err = np.abs(zj[hit] / dj[hit] - 1)
    return {"overlap": float(hit.mean()) if len(hit) else 0.0,
            "median_rel": float(np.median(rel_err)) if hit.any() else float("nan"),
            "within_5pct": float(np.mean(rel_err < 0.05)) if hit.any() else float("nan")}


def matched_epipolar(cache: FeatureCache, poses: np.ndarray, k: np.ndarray, pairs: list[tuple[int, int]],
                     ratio: float = 0.75) -> np.ndarray:
    """Return the epipolar distances (pixels) of all SIFT matches of the pairs under their poses."""
    out = [np.zeros(0)]
    for i, j in pairs:
        ia, ib = match(cache(i), cache(j), ratio)
        out.append(epipolar_distance(cache(i).uv[ia], cache(j).uv[ib], k, relative_pose(poses, i, j)))
    return np.concatenate(out)


def _rotation(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, np.float64).reshape(3, 1))[0]


def calibrate_t265(folder: Path, rows: range, offsets: list[int], log: Callable[[str], None] = print) -> tuple:
    """Estimate the T265 -> colour camera extrinsic and the pose-row offset from ground truth of `rows`.

    For pairs (r, r + 1..3) of the rows, SIFT matches with ground-truth depth in frame r are
    reprojected into frame r + s with the T265 poses and a candidate extrinsic; the extrinsic (axis
    flip start, 6 parameters) minimises the Huber loss of those pixel errors by Gauss-Newton, per
    integer pose-row offset. Returns (offset, 4x4 extrinsic, median pixel error) of the best offset.
    """
    from fusanet_core.datasets.manifest import ManifestSource

    source = ManifestSource(folder)
    cache = FeatureCache(source)
    k = camera_matrix(source.rows[0].intrinsics)
    body = read_t265_csv(folder / "camera_pose.csv")
    frames = [_source_frame(r.rgb) for r in source.rows]
    data = []
    for r in rows:
        depth = source.load(r).depth
        for step in (1, 2, 3):
            if r + step not in rows:
                continue
            ia, ib = match(cache(r), cache(r + step), 0.7)
            uv, target = cache(r).uv[ia], cache(r + step).uv[ib]
            z = depth[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)].astype(np.float64)
            ok = np.isfinite(z) & (z > 0.2) & (z < 6)
            if ok.sum() >= 15:
                xyz = np.linalg.solve(k, np.stack([uv[ok, 0] * z[ok], uv[ok, 1] * z[ok], z[ok]])).T
                data.append((frames[r], frames[r + step], xyz, target[ok]))
    log(f"{len(data)} pairs, {sum(len(d[3]) for d in data)} matches with ground truth")
    best = None
    for offset in offsets:
        pairs = [(np.linalg.inv(body[fj + offset]) @ body[fi + offset], xyz, target)
                 for fi, fj, xyz, target in data if fi + offset in body and fj + offset in body]

        def residuals(p: np.ndarray) -> np.ndarray:
            x = np.eye(4)
            x[:3, :3], x[:3, 3] = _rotation(p[:3]), p[3:]
            x_inv = np.linalg.inv(x)
            return np.concatenate([(project(xyz, k, x_inv @ b @ x)[0] - target).ravel() for b, xyz, target in pairs])

        p = np.r_[cv2.Rodrigues(np.diag([1.0, -1.0, -1.0]))[0].ravel(), np.zeros(3)]
        for _ in range(15):  # Gauss-Newton, Huber weights (2 px), numeric Jacobian
            r = residuals(p)
            jac = np.stack([(residuals(p + e) - r) / 1e-6 for e in np.eye(6) * 1e-6], axis=1)
            err = np.linalg.norm(r.reshape(-1, 2), axis=1).repeat(2)
            weight = np.minimum(1.0, 2.0 / np.maximum(err, 1e-9))
            delta = np.linalg.lstsq(jac * weight[:, None] ** 0.5, -r * weight ** 0.5, rcond=None)[0]
            p = p + delta
            if np.abs(delta).max() < 1e-7:
                break
        err = np.linalg.norm(residuals(p).reshape(-1, 2), axis=1)
        x = np.eye(4)
        x[:3, :3], x[:3, 3] = _rotation(p[:3]), p[3:]
        flip = np.degrees(np.arccos(np.clip((np.trace(np.diag([1.0, -1.0, -1.0]) @ x[:3, :3]) - 1) / 2, -1, 1)))
        log(f"offset {offset:+d} rows: median {np.median(err):.2f} px, < 3 px {np.mean(err < 3):.2f}; "
            f"{flip:.2f} deg from the axis flip, lever arm {np.round(1000 * x[:3, 3], 1)} mm")
        if best is None or np.median(err) < best[2]:
            best = (offset, x, float(np.median(err)))
    return best


def check_conventions(data: Path, log: Callable[[str], None] = print) -> None:
    """Print the convention checks of the three posed sets (ground truth reprojected, epipolar distances)."""
    from fusanet_core.datasets.manifest import ManifestSource

    plans = {"7scenes_redkitchen": ([(0, 15), (400, 410), (450, 470), (100, 130)], range(400, 494, 3), (2, 4, 6)),
             "rs_d435_office": ([(10, 12), (100, 102), (210, 212), (230, 233), (245, 247)], range(198, 245), (1, 2, 3)),
             "hololens_office_dvmvs": ([(0, 3), (0, 8), (50, 55), (100, 103)], range(0, 184, 3), (1, 2, 3))}
    for name, (pairs, starts, steps) in plans.items():
        folder = data / name
        if not folder.is_dir():
            log(f"{name}: not present")
            continue
        source = ManifestSource(folder)
        poses = load_trajectory_poses(folder)
        k = camera_matrix(source.rows[0].intrinsics)
        variants = {"poses": poses, "inverted": np.linalg.inv(np.nan_to_num(poses) + np.isnan(poses) * np.eye(4)),
                    "no motion": np.broadcast_to(np.eye(4), poses.shape)}
        if name == "rs_d435_office":
            frames = [_source_frame(r.rgb) for r in source.rows]
            flip = np.diag([1.0, -1.0, -1.0, 1.0])
            variants["T265 row 10r, axis flip only"] = t265_camera_poses(folder / "camera_pose.csv", frames, 0, flip)
            variants["T265 row 10r, as T265 body"] = t265_camera_poses(folder / "camera_pose.csv", frames, 0, np.eye(4))
        for i, j in pairs:
            base = np.linalg.norm(poses[i][:3, 3] - poses[j][:3, 3])
            di, dj = source.load(i).depth, source.load(j).depth
            cells = []
            for label, p in variants.items():
                c = depth_consistency(di, dj, relative_pose(p, i, j), k)
                cells.append(f"{label}: median {100 * c['median_rel']:.1f} %, "
                             f"{100 * c['within_5pct']:.0f} % within 5 %")
            angle = view_angle(poses[i], poses[j])
            log(f"{name} {i}->{j} (baseline {base:.2f} m, {angle:.0f} deg): " + "; ".join(cells))
        cache = FeatureCache(source)
        pairs = [(i, i + s) for i in starts for s in steps if i + s < len(source)]
        for label in [v for v in variants if v not in ("inverted", "no motion")]:
            dist = matched_epipolar(cache, variants[label], k, pairs)
            log(f"{name} {label}: epipolar distance of {len(dist)} SIFT matches over {len(pairs)} pairs: median "
                f"{np.median(dist):.2f} px, {100 * np.mean(dist < 1):.0f} % < 1 px, "
                f"{100 * np.mean(dist < 2):.0f} % < 2 px")
        scan = []
        for scale in (0.85, 0.9, 0.95, 1.0, 1.05):
            scaled = np.diag([scale, scale, 1.0]) @ k
            scan.append(f"{scaled[0, 0]:.0f} px {np.median(matched_epipolar(cache, poses, scaled, pairs)):.2f}")
        log(f"{name} focal scan (manifest fx {k[0, 0]:.0f}), median epipolar px: " + ", ".join(scan))


def main(argv: list[str] | None = None) -> None:
    """Run `check` (pose conventions) or `calibrate-t265` (the rs_d435_office extrinsic and offset)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("check", "calibrate-t265"))
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--rows", type=int, nargs=2, default=(0, 198), help="calibration rows (the training block)")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.command == "check":
        check_conventions(Path(args.data))
    else:
        offset, x, err = calibrate_t265(Path(args.data) / "rs_d435_office", range(*args.rows), list(range(-4, 2)))
        print(f"best offset {offset:+d} rows ({err:.2f} px); T265_CAMERA_IN_BODY =\n{np.array2string(x, precision=5)}")


if __name__ == "__main__":
    main()
