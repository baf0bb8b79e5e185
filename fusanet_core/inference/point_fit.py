"""Fit the predicted depth to known 3D points: a robust scale, or a scale and shift in inverse depth.

For points too few or too noisy for the network to complete from (a handful of SLAM landmarks,
sparse LiDAR), the cheap and safe use is to correct the prediction's global scale with them.
No torch, no ROS: numpy only.

Modes:
    none: no fit.
    scale: z ~ scale * d. The scale is exp(median(log(z / d))) over the inliers. The log because
        both the point noise (SLAM, LiDAR: a few % of the depth) and the network's error are
        relative: in log, a point at 2x and one at 0.5x are equally wrong and the spread is one
        number for near and far points.
    scale_local: the scale fit, then a per-pixel correction that follows the points: depth
        completion's "residual interpolation". The points' log residuals r_i = log(z_i / (scale d_i))
        are spread over the image three ways and averaged in log (see `local_correction`):
        linearly on their Delaunay triangulation (nearest outside the hull), by a depth-guided
        (bilateral) weighting, exp(-|x - p_i|^2 / 2 sigma^2 - (log d(x) - log d_i)^2 / 2 rho^2),
        so that a point corrects the surface it lies on and not the one behind a depth edge of
        the prediction, and by a smoothing thin-plate spline that averages the points' noise. The
        network keeps the structure (edges, planes), the points fix the depth where they are.
        Measured on unseen sets with 20-200 SLAM-like points it beats both the plain scale fit and
        interpolating the points without the network (BENCHMARKS.md).
    scale_shift: affine in inverse depth, 1/z ~ (1/scale) * (1/d) + shift (shift in 1/m; shift 0
        is the scale mode). Monocular depth is only defined up to scale and shift in inverse depth
        (disparity: MiDaS, the stereo-like cue a single image carries), and far points, which carry
        little information, get small residuals there instead of dominating. Residuals are
        relative, log(z_fit / z), so the same tolerance rule as the scale mode applies.

Robustness (both modes): residuals r_i in log depth. `scale` starts from the median and
iterates: inliers are |r - median| <= tol with tol = 3 * 1.4826 * MAD (a 3-sigma rule for
Gaussian noise), clamped to [MIN_TOLERANCE, max_tolerance]; the floor keeps exact data and
quantised depth from rejecting everything, the cap (default log 2) keeps a uniformly spread
(inconsistent) set from calling itself consistent. `scale_shift` is least median of squares over
point pairs (seeded, so deterministic; no threshold needed, survives up to half the points being
outliers), then the same tolerance on its residuals and a weighted least-squares refit on the
inliers, repeated a few times.

The prediction is sampled at the nearest pixel: bilinear sampling would blend foreground and
background at a depth edge into a depth neither surface has. Points on non-finite or
non-positive predicted depth, and non-finite, non-positive or out-of-frame points, are skipped.

Guards; when one fails the fit is not applied (`applied` False, `reason` says why) and the
prediction is returned unchanged, i.e. the network's own scale is kept:
    - at least `min_points` usable points (3 for scale_shift at the least);
    - an inlier share >= `min_inlier_share` (default 0.5) of the usable points;
    - scale_shift: the points, and then the inliers, span some depth (max/min predicted depth >=
      MIN_DEPTH_SPREAD) and the inverse-depth slope is positive (the fit keeps the depth order);
    - the depth factor z_fit / d within `scale_range` (default 0.1-10) at every valid pixel of
      the map (for scale: the scale itself), so the output is positive and finite where the
      input was.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import math
from typing import Any

import cv2
import numpy as np

from . import interpolation

MODES = ("none", "scale", "scale_local", "scale_shift")
LOCAL_GRID_ROWS = 60  # scale_local: the correction is computed on a grid of ~60 cells along the short side
LOCAL_SPATIAL = (0.5, 1.0)  # scale_local: bilateral sigma / the points' mean spacing sqrt(H W / N), even .. clustered
CLUSTERED = (0.5, 0.9)  # scale_local: Clark-Evans ratios of fully clustered .. evenly spread points (`clustering`)
LOCAL_RANGE = 0.1  # scale_local: bilateral rho in log depth (a point weighs 1/e^2 at 22 % depth difference)
LOCAL_SMOOTHING = 0.03  # scale_local: the thin-plate spline's lambda (log residuals, image-diagonal units)
LOCAL_SPLINE_ANCHORS = 400  # scale_local: the spline's solve is cubic in its anchors: more are thinned evenly
LOCAL_MAX_RESIDUAL = math.log(10.0)  # scale_local: a point > 10x off the global fit is an outlier, never an anchor
LOCAL_MIN_ANCHORS = 8  # scale_local: fewer points (after the outliers) correct the scale only, like `scale`
LOCAL_MAX_ANCHORS = 2000  # scale_local: more anchors (a dense LiDAR) are thinned evenly: bounded time per frame
LOCAL_CHUNK = 1 << 21  # scale_local: grid cells x points per chunk of the bilateral sums (16 MB float64)
MIN_TOLERANCE = 0.01  # log units (1 %): the floor of the inlier tolerance
MAX_TOLERANCE = math.log(2.0)  # the cap: a point off by more than 2x is never an inlier
MIN_DEPTH_SPREAD = 1.1  # scale_shift needs inliers whose predicted depths differ by >= 10 %
MAX_PAIRS = 500  # LMedS hypotheses for scale_shift
SCORE_POINTS = 200  # points that score each hypothesis (an even subset: the median needs no more)
REFITS = 5  # inlier / refit rounds


@dataclass(frozen=True)
class PointFit:
    """A fit of the prediction to known points, and whether it was applied.

    Attributes:
        mode: "none", "scale" or "scale_shift".
        scale: depth factor (z = scale * d; for scale_shift the factor at shift 0).
        shift: scale_shift's offset in inverse depth (1/m): 1/z = 1/(scale d) + shift; 0 otherwise.
        points: points offered.
        inliers: points that agree with the fit.
        applied: False = the prediction is kept unchanged (fallback), see `reason`.
        reason: "ok", or why the fit was not applied.
    """

    mode: str
    scale: float = 1.0
    shift: float = 0.0
    points: int = 0
    inliers: int = 0
    applied: bool = False
    reason: str = ""
    # scale_local: the inliers as (u, v, log residual) in the fitted map's pixels (not in as_dict).
    anchors: tuple[tuple[float, float, float], ...] = ()

    def apply(self, depth: np.ndarray) -> np.ndarray:
        """Return the fitted depth (a new array of the same dtype), or `depth` itself when not applied.

        Non-finite and non-positive (invalid) values are kept as they are. scale_local corrects an
        HxW map of the fitted size per pixel; other shapes get its global scale (points: `apply_at`).
        """
        if not self.applied:
            return depth
        depth = np.asarray(depth)
        if self.mode == "scale_local" and depth.ndim == 2 and self.anchors:
            return (depth * self.scale * local_correction(np.array(self.anchors), depth)).astype(
                depth.dtype, copy=False)
        if self.mode in ("scale", "scale_local"):
            return (depth * self.scale).astype(depth.dtype, copy=False)
        out = _affine_inverse(depth.astype(np.float64), self.scale, self.shift)
        valid = np.isfinite(depth) & (depth > 0)
        return np.where(valid, out, depth).astype(depth.dtype, copy=False)

    def apply_at(self, uvz: np.ndarray, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """Return the depths of points (u, v, z) fitted as the map: the factor after / before at their pixels.

        `before` / `after`: the map before and after `apply`. For the global modes that is
        `apply(z)`; scale_local's per-pixel correction has no other way to reach points.
        """
        z = np.asarray(uvz)[:, 2]
        if not (self.applied and self.mode == "scale_local" and self.anchors) or not len(z):
            return self.apply(z)
        h, w = before.shape
        rows, cols = _pixel_index(uvz[:, 1], h), _pixel_index(uvz[:, 0], w)
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = after[rows, cols] / before[rows, cols]
        factor = np.where(np.isfinite(factor) & (factor > 0), factor, self.scale)  # invalid map pixel: the scale
        return (z * factor).astype(z.dtype, copy=False)

    def anchor_pixels(self) -> np.ndarray | None:
        """(N, 2) pixels (u, v) the applied scale_local correction passes through, or None (no such fit)."""
        return np.array(self.anchors)[:, :2] if self.applied and self.anchors else None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (for results, logs and diagnostics), without the anchors."""
        fields = asdict(self)
        del fields["anchors"]
        return fields


def local_correction(anchors: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Return the HxW factor exp(r(x)) that takes `depth` through the anchors (u, v, log residual).

    r mixes three interpolations of the residuals r_i, each good where the others are not:
    - linear on the anchors' Delaunay triangulation (nearest outside the hull;
      `interpolation.interpolate`): local and exact at the anchors, but it bleeds across depth
      edges between them and passes every point's noise on;
    - the bilateral average sum_i w_i(x) r_i / sum_i w_i(x), w_i = exp(-|x - p_i|^2 / (2 sigma^2)
      - (log d(x) - log d_i)^2 / (2 rho^2)), sigma = k x sqrt(H W / N) (the points' mean
      spacing), rho = LOCAL_RANGE, d_i the prediction at the anchor: a point corrects the
      surface it lies on, not the one behind a depth edge of the prediction; flat between points;
    - a smoothing thin-plate spline (`_thin_plate`): a global, smooth surface with a linear trend
      that averages the points' noise and bridges the gaps between clusters of points.
    How much smoothing depends on how the points are spread (`clustering`): SLAM landmarks sit in
    clusters on textured places with wide gaps between them, where the spline and a wide
    bilateral kernel (k = 1) help; points spread evenly (a LiDAR) are best interpolated locally
    (k = 0.5, no spline): field = (1 - t/3) (linear + bilateral) / 2 + t/3 spline, k = 0.5 + t/2,
    t = 1 for clustered points, 0 for even ones (BENCHMARKS.md "Known geometry").
    All are computed at the cell centres of a grid of ~LOCAL_GRID_ROWS cells along the short side
    (8 px cells at 640x480: the residual is smooth at that scale, the depth guide is the area mean
    there, and a 4 px grid scored the same at 4x the time) and resized bilinearly.
    Invalid (non-finite, <= 0) depth has no range term.
    """
    h, w = depth.shape
    xs, ys = _cell_centres(h, w, LOCAL_GRID_ROWS)
    gh, gw = len(ys), len(xs)
    grid_u, grid_v = np.meshgrid(xs, ys)
    smooth = clustering(anchors[:, :2], h, w)
    linear = interpolation.interpolate(anchors, grid_u, grid_v)
    valid = np.isfinite(depth) & (depth > 0)
    log_depth = np.log(np.where(valid, depth, 1.0).astype(np.float32))
    guide = cv2.resize(log_depth, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float64)
    guide_valid = cv2.resize(valid.astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA) > 0.5
    anchor_log = log_depth[_pixel_index(anchors[:, 1], h), _pixel_index(anchors[:, 0], w)].astype(np.float64)
    sigma = (LOCAL_SPATIAL[0] + smooth * (LOCAL_SPATIAL[1] - LOCAL_SPATIAL[0])) * math.sqrt(h * w / len(anchors))
    bilateral = _bilateral(anchors, anchor_log, grid_u.ravel(), grid_v.ravel(), guide.ravel(), guide_valid.ravel(),
                           sigma).reshape(gh, gw)
    field = 0.5 * (linear + bilateral)
    # The spline is smooth: a grid of half the cells along each side carries it (a quarter of the time).
    spline = _thin_plate(anchors, *_cell_centres(h, w, LOCAL_GRID_ROWS // 2), math.hypot(h, w)) if smooth else None
    if spline is not None:
        spline = cv2.resize(spline.astype(np.float32), (gw, gh), interpolation=cv2.INTER_LINEAR)
        field = (1 - smooth / 3) * field + smooth / 3 * spline
    return np.exp(cv2.resize(field.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR))


def _cell_centres(height: int, width: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the (x, y) centres of a grid of ~`rows` square cells along the short side, cv2.resize's convention."""
    cell = max(1, min(height, width) // rows)
    gh, gw = max(1, -(-height // cell)), max(1, -(-width // cell))
    return (np.arange(gw) + 0.5) * (width / gw) - 0.5, (np.arange(gh) + 0.5) * (height / gh) - 0.5


def clustering(uv: np.ndarray, height: int, width: int) -> float:
    """Return how clustered the points are: 1 clustered, 0 spread evenly or more, by the Clark-Evans ratio.

    The ratio R = mean nearest-neighbour distance / its expectation for points spread at random
    over the image, 0.5 sqrt(H W / N): about 1 for random (uniform) points, less for clusters
    (SIFT keypoints on a 640x480 frame: 0.5-0.6), more for a regular grid. R at or below
    CLUSTERED[0] gives 1, at or above CLUSTERED[1] 0, linear between. More than
    LOCAL_SPLINE_ANCHORS points are thinned evenly first (the distances are quadratic in them).
    """
    if len(uv) < 3:
        return 0.0
    if len(uv) > LOCAL_SPLINE_ANCHORS:
        uv = uv[np.round(np.linspace(0, len(uv) - 1, LOCAL_SPLINE_ANCHORS)).astype(np.int64)]
    squared = ((uv[:, None, :] - uv[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    ratio = float(np.sqrt(squared.min(axis=1)).mean()) / (0.5 * math.sqrt(height * width / len(uv)))
    return float(np.clip((CLUSTERED[1] - ratio) / (CLUSTERED[1] - CLUSTERED[0]), 0.0, 1.0))


def _thin_plate(anchors: np.ndarray, xs: np.ndarray, ys: np.ndarray, diagonal: float) -> np.ndarray | None:
    """Smoothing thin-plate spline of the anchors' residuals on the grid xs x ys; None for fewer than 3 anchors.

    f(x) = a0 + a . x + sum_i c_i phi(|x - p_i|), phi(r) = r^2 log r, coordinates in image
    diagonals (so LOCAL_SMOOTHING does not depend on the image size); (K + lambda I) c + P a = r,
    P^T c = 0, lambda = LOCAL_SMOOTHING, clipped to the range of the residuals. More than
    LOCAL_SPLINE_ANCHORS anchors are thinned evenly (the solve is cubic in them; a smooth surface
    needs no more). Returns (len(ys), len(xs)).
    """
    if len(anchors) < 3:
        return None
    if len(anchors) > LOCAL_SPLINE_ANCHORS:
        anchors = anchors[np.round(np.linspace(0, len(anchors) - 1, LOCAL_SPLINE_ANCHORS)).astype(np.int64)]
    points = anchors[:, :2] / diagonal
    n = len(points)
    trend = np.column_stack([np.ones(n), points])
    system = np.zeros((n + 3, n + 3))
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    system[:n, :n] = _spline_kernel(squared) + LOCAL_SMOOTHING * np.eye(n)
    system[:n, n:], system[n:, :n] = trend, trend.T
    rhs = np.concatenate([anchors[:, 2], np.zeros(3)])
    try:
        coef = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:  # collinear anchors: the trend is not determined, take the least-norm one
        coef = np.linalg.lstsq(system, rhs, rcond=None)[0]
    gx, gy = (xs / diagonal).astype(np.float32), (ys / diagonal).astype(np.float32)
    across = (gx[:, None] - points[None, :, 0].astype(np.float32)) ** 2  # the grid's squared distances,
    down = (gy[:, None] - points[None, :, 1].astype(np.float32)) ** 2  # one axis at a time
    kernel = _spline_kernel(down[:, None, :] + across[None, :, :])
    surface = kernel @ coef[:n].astype(np.float32) + coef[n] + gx[None, :] * coef[n + 1] + gy[:, None] * coef[n + 2]
    # Its linear trend extrapolates without bound (points on a line: a steep plane across the
    # image): never beyond the residuals it was fitted to.
    return np.clip(surface, anchors[:, 2].min(), anchors[:, 2].max())


def _spline_kernel(squared: np.ndarray) -> np.ndarray:
    """r^2 log r of squared distances r^2 (0 at r = 0), as 0.5 r^2 log r^2."""
    return 0.5 * squared * np.log(np.maximum(squared, squared.dtype.type(1e-30)))


def _pixel_index(coord: np.ndarray, size: int) -> np.ndarray:
    return np.clip(np.rint(coord).astype(np.int64), 0, size - 1)


def _bilateral(anchors: np.ndarray, anchor_log: np.ndarray, u: np.ndarray, v: np.ndarray, guide: np.ndarray,
               guide_valid: np.ndarray, sigma: float) -> np.ndarray:
    """Depth-guided weighted mean of the anchors' residuals at (u, v), in chunks of cells (bounded memory).

    The weight's exponent is minus a squared distance in the feature space (u, v, log depth), each
    axis divided by sqrt(2) x its bandwidth, so a chunk's exponents are one float32 matrix product:
    -|c - a|^2 = 2 c.a - |a|^2 - |c|^2, and the cell's own |c|^2 drops out with the shift by the
    per-cell maximum (which also keeps the nearest anchor at weight 1 far from every anchor: no 0 / 0).
    Cells without a valid depth have no range term (their own anchors' norms, without it).
    """
    spatial, depth_range = 1.0 / (math.sqrt(2.0) * sigma), 1.0 / (math.sqrt(2.0) * LOCAL_RANGE)
    feature_a = np.column_stack([anchors[:, 0] * spatial, anchors[:, 1] * spatial, anchor_log * depth_range])
    feature_c = np.column_stack([u * spatial, v * spatial, np.where(guide_valid, guide, 0.0) * depth_range])
    feature_a, feature_c = feature_a.astype(np.float32), feature_c.astype(np.float32)
    no_range = feature_a * np.float32([1, 1, 0])
    out = np.empty(len(u))
    step = max(1, LOCAL_CHUNK // len(anchors))
    for cells_of, features in ((np.flatnonzero(guide_valid), feature_a), (np.flatnonzero(~guide_valid), no_range)):
        norms = np.einsum("ij,ij->i", features, features)
        for start in range(0, len(cells_of), step):
            cells = cells_of[start:start + step]
            log_w = 2.0 * feature_c[cells] @ features.T - norms
            weights = np.exp(log_w - log_w.max(axis=1, keepdims=True))
            out[cells] = (weights @ anchors[:, 2].astype(np.float32)) / weights.sum(axis=1)
    return out


def check_mode(mode: str) -> str:
    """Return `mode` when it is one of MODES; raises ValueError naming it otherwise."""
    if mode not in MODES:
        raise ValueError(f"scale_from_points must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def fit_to_points(depth: np.ndarray, points: np.ndarray | None, mode: str, min_points: int = 3,
                  min_inlier_share: float = 0.5, scale_range: tuple[float, float] = (0.1, 10.0),
                  max_tolerance: float = MAX_TOLERANCE, seed: int = 0) -> PointFit:
    """Fit `depth` to `points` robustly (see the module docstring for the model and the guards).

    Args:
        depth: HxW predicted depth in metres (non-finite or <= 0 = invalid).
        points: (N, 3) known points (u, v, depth in metres) in the pixels of `depth`; None = none.
        mode: "none", "scale" or "scale_shift".
        min_points: usable points needed to fit.
        min_inlier_share: inliers / usable points needed to apply the fit.
        scale_range: allowed depth factor (z_fit / d) at every valid pixel.
        max_tolerance: cap of the inlier tolerance, in log depth.
        seed: random generator seed (scale_shift's pair sampling).

    Returns:
        The PointFit; `fit.apply(depth)` gives the corrected depth (unchanged when not applied).
    """
    check_mode(mode)
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be HxW, got shape {depth.shape}")
    pts = np.zeros((0, 3)) if points is None else np.asarray(points, np.float64).reshape(-1, 3)
    offered = len(pts)
    if mode == "none":
        return PointFit(mode, points=offered, reason="scale_from_points is none")
    z, d = sample_depth(depth, pts)
    needed = max(int(min_points), 1 if mode == "scale" else 3)
    if len(z) < needed:
        return PointFit(mode, points=offered, reason=f"too few points ({len(z)} < {needed})")
    if mode == "scale_shift" and d.max() / d.min() < MIN_DEPTH_SPREAD:  # before fitting: no line to report
        spread = d.max() / d.min()
        return PointFit(mode, points=offered, reason=f"points span too little depth for scale_shift (max/min "
                                                     f"{spread:.3g} < {MIN_DEPTH_SPREAD:g})")
    tol = (MIN_TOLERANCE, max(float(max_tolerance), MIN_TOLERANCE))
    if mode == "scale_shift":
        scale, shift, inliers = _fit_scale_shift(z, d, tol, np.random.default_rng(seed))
    else:
        scale, shift, inliers = _fit_scale(z, d, tol)
    fit = PointFit(mode, scale, shift, offered, int(inliers.sum()))
    reason = _refusal(fit, d, inliers, depth, min_inlier_share, scale_range)
    anchors = ()
    if mode == "scale_local" and reason is None:
        uv = usable_points(pts, depth)[:, :2]
        residual = np.log(z / (scale * d))
        # Not the global inlier rule: a region the network got wrong is what the correction is
        # for. Only gross outliers go; a local-consistency test dropped more good points than
        # bad ones on the SLAM-like benchmark points (docs/ros.md).
        keep = np.flatnonzero(np.abs(residual) <= LOCAL_MAX_RESIDUAL)
        if len(keep) < LOCAL_MIN_ANCHORS:  # a handful of points gives the scale, not a surface: scale alone
            keep = keep[:0]
        if len(keep) > LOCAL_MAX_ANCHORS:  # the correction is smooth at the grid's scale: 2000 points cover it
            keep = keep[np.round(np.linspace(0, len(keep) - 1, LOCAL_MAX_ANCHORS)).astype(np.int64)]
        anchors = tuple(map(tuple, np.column_stack([uv[keep], residual[keep]]).tolist()))  # () -> apply scales
    return PointFit(mode, scale, shift, offered, fit.inliers, reason is None, reason or "ok", anchors)


def sample_depth(depth: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(known z, predicted d) of the usable points, the prediction read at the nearest pixel."""
    pts = usable_points(points, depth)
    return pts[:, 2], _nearest(depth, pts)


def usable_points(points: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Return the points that are finite, positive, inside `depth` and on a valid predicted pixel."""
    h, w = depth.shape
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    ok = np.all(np.isfinite(pts), axis=1) & (pts[:, 2] > 0)
    ok &= (pts[:, 0] > -0.5) & (pts[:, 0] < w - 0.5) & (pts[:, 1] > -0.5) & (pts[:, 1] < h - 0.5)
    pts = pts[ok]
    d = _nearest(depth, pts)
    return pts[np.isfinite(d) & (d > 0)]


def _nearest(depth: np.ndarray, pts: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    cols = np.clip(np.rint(pts[:, 0]).astype(np.int64), 0, w - 1)
    rows = np.clip(np.rint(pts[:, 1]).astype(np.int64), 0, h - 1)
    return depth[rows, cols].astype(np.float64)


def _tolerance(residuals: np.ndarray, bounds: tuple[float, float]) -> float:
    """3-sigma inlier tolerance from the MAD of `residuals` (all of them, centred), clamped to `bounds`.

    All residuals, not only the last inliers: the MAD of a set cut at 3 sigma would shrink with
    every round.
    """
    mad = float(np.median(np.abs(residuals)))
    return float(np.clip(3.0 * 1.4826 * mad, *bounds))


def _fit_scale(z: np.ndarray, d: np.ndarray, bounds: tuple[float, float]) -> tuple[float, float, np.ndarray]:
    """Median log ratio, re-taken over the tolerance inliers until they no longer change."""
    r = np.log(z) - np.log(d)
    centre = float(np.median(r))
    inliers = np.ones(len(r), bool)
    for _ in range(REFITS):
        inliers = np.abs(r - centre) <= _tolerance(r - centre, bounds)
        new_centre = float(np.median(r[inliers])) if inliers.any() else centre
        if new_centre == centre:
            break
        centre = new_centre
    return math.exp(centre), 0.0, np.abs(r - centre) <= _tolerance(r - centre, bounds)


def _fit_scale_shift(z: np.ndarray, d: np.ndarray, bounds: tuple[float, float],
                     rng: np.random.Generator) -> tuple[float, float, np.ndarray]:
    """Fit (a, b) in 1/z = a/d + b: least median of squares over point pairs, then tolerance-inlier refits."""
    x, y = 1.0 / d, 1.0 / z
    a, b = _lmeds(x, y, rng)
    if not math.isfinite(a):  # every pair has one predicted depth: no line through them
        return math.inf, 0.0, np.zeros(len(x), bool)
    inliers = np.zeros(len(x), bool)
    for _ in range(REFITS):
        r = _log_residuals(x, y, a, b)
        new = np.abs(r) <= _tolerance(r, bounds)
        if new.sum() < 2 or np.array_equal(new, inliers):
            break
        inliers = new
        a, b = _weighted_line(x[inliers], y[inliers])
    return (1.0 / a if a != 0 else math.inf), b, inliers  # a < 0: a negative scale, refused


def _lmeds(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Find the pair line (a, b) of y = a x + b with the least median relative residual (nan: none)."""
    n = len(x)
    if n * (n - 1) // 2 <= MAX_PAIRS:
        i, j = np.triu_indices(n, 1)
    else:  # random distinct pairs
        i = rng.integers(0, n, MAX_PAIRS)
        j = (i + rng.integers(1, n, MAX_PAIRS)) % n
    dx = x[i] - x[j]
    ok = np.abs(dx) > 1e-9 * np.maximum(x[i], x[j])  # same predicted depth: no slope
    if not ok.any():
        return math.nan, math.nan
    a = (y[i[ok]] - y[j[ok]]) / dx[ok]
    b = y[i[ok]] - a * x[i[ok]]
    k = np.linspace(0, n - 1, min(n, SCORE_POINTS)).astype(np.int64)
    cost = np.median(np.abs(_log_residuals(x[None, k], y[None, k], a[:, None], b[:, None])), axis=1)
    best = int(np.argmin(cost))
    return float(a[best]), float(b[best])


def _log_residuals(x: np.ndarray, y: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """log(z / z_fit) = log(y_fit / y); +inf where the line gives no positive inverse depth."""
    fit = a * x + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(fit > 0, np.log(np.where(fit > 0, fit, 1.0) / y), np.inf)


def _weighted_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares of the relative residual (a x + b - y) / y: rows (x/y, 1/y) . (a, b) = 1."""
    design = np.stack([x / y, 1.0 / y], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.ones(len(x)), rcond=None)
    return float(a), float(b)


def _affine_inverse(depth: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """Map d to z = 1 / (1 / (scale d) + shift), computed as scale d / (1 + shift scale d)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return scale * depth / (1.0 + shift * scale * depth)


def _refusal(fit: PointFit, d: np.ndarray, inliers: np.ndarray, depth: np.ndarray, min_share: float,
             scale_range: tuple[float, float]) -> str | None:
    """Why the fit must not be applied, or None when every guard passes (`d`: usable points' prediction)."""
    share = fit.inliers / len(d)
    if share < min_share:
        return f"inconsistent points (inlier share {share:.2f} < {min_share:g})"
    if fit.mode == "scale_shift":
        spread = float(d[inliers].max() / d[inliers].min())
        if spread < MIN_DEPTH_SPREAD:
            return f"inliers span too little depth for scale_shift (max/min {spread:.3g} < {MIN_DEPTH_SPREAD:g})"
        if not (math.isfinite(fit.scale) and fit.scale > 0):
            return "fit out of range (inverse-depth slope <= 0: the fit would reverse the depth order)"
    low, high = _factor_range(fit, depth)
    if not (scale_range[0] <= low and high <= scale_range[1]):
        text = f"scale {fit.scale:.3g}" if fit.mode != "scale_shift" else f"depth factor {low:.3g}..{high:.3g}"
        return f"fit out of range ({text} outside {scale_range[0]:g}..{scale_range[1]:g})"
    return None


def _factor_range(fit: PointFit, depth: np.ndarray) -> tuple[float, float]:
    """Smallest and largest z_fit / d over the valid pixels (the factor is monotonic in d)."""
    if fit.mode != "scale_shift":
        return fit.scale, fit.scale
    valid = depth[np.isfinite(depth) & (depth > 0)].astype(np.float64)
    if not len(valid):
        return fit.scale, fit.scale
    ends = np.array([valid.min(), valid.max()])
    factor = 1.0 / (1.0 + fit.shift * fit.scale * ends)  # z_fit / d = 1 / (1 + shift scale d)
    if not np.all(factor > 0):
        return -math.inf, math.inf
    return float(factor.min() * fit.scale), float(factor.max() * fit.scale)
