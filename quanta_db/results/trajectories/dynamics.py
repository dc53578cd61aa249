"""Essential-dynamics features of a trajectory in the plane of two principal components.

The curve (one model's checkpoints in order) is first smoothed with a Gaussian whose sigma moves
linearly from ``early`` at the first point to ``late`` at the last (late training is denser in
checkpoints and smoother), then, with central differences r' and r'' (numpy ``gradient``):

- curvature κ = |x'y'' − y'x''| / (x'² + y'²)^{3/2}, the inverse radius of the osculating circle;
- the evolute (centres of the osculating circles) e = r + (x'² + y'²) / (x'y'' − y'x'') · (−y', x'),
  whose speed ‖e'‖ drops to zero where the evolute has a cusp (a vertex of the curve: curvature
  stationary).

Events: curvature maxima (local maxima of κ, i.e. osculating-radius minima) and cusp candidates
(local minima of the evolute's speed), compared only with neighbours whose differences are
central: at least three points from either end for curvature, four for the evolute's speed.
"""

from __future__ import annotations

import numpy as np


def smooth(values: np.ndarray, early: float, late: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with sigma moving linearly from ``early`` to ``late``
    (in points); sigma 0 leaves a point as it is. Weights are renormalised at the ends."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return values
    sigmas = np.linspace(early, late, n)
    index = np.arange(n)
    out = np.empty_like(values)
    for t, sigma in enumerate(sigmas):
        if sigma <= 0:
            out[t] = values[t]
            continue
        weights = np.exp(-0.5 * ((index - t) / sigma) ** 2)
        out[t] = np.tensordot(weights / weights.sum(), values, axes=(0, 0))
    return out


def _derivatives(curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = np.gradient(curve, axis=0)
    return first, np.gradient(first, axis=0)


def curvature(curve: np.ndarray) -> np.ndarray:
    """κ per point of a [n, 2] curve (finite differences; NaN where the curve does not move)."""
    (dx, dy), (ddx, ddy) = (d.T for d in _derivatives(np.asarray(curve, dtype=np.float64)))
    speed_sq = dx**2 + dy**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(dx * ddy - dy * ddx) / speed_sq**1.5


def evolute(curve: np.ndarray) -> np.ndarray:
    """Centres of the osculating circles, [n, 2] (inf where the curve is straight)."""
    curve = np.asarray(curve, dtype=np.float64)
    (dx, dy), (ddx, ddy) = (d.T for d in _derivatives(curve))
    with np.errstate(divide="ignore", invalid="ignore"):  # straight stretches: centres at infinity
        scale = (dx**2 + dy**2) / (dx * ddy - dy * ddx)
        return curve + scale[:, None] * np.stack([-dy, dx], axis=1)


def evolute_speed(curve: np.ndarray) -> np.ndarray:
    """‖e'‖ per point of the evolute (finite differences)."""
    with np.errstate(invalid="ignore"):
        return np.linalg.norm(np.gradient(evolute(curve), axis=0), axis=1)


def _local_extrema(values: np.ndarray, maxima: bool, margin: int) -> np.ndarray:
    # Not within ``margin`` points of an end, where the differences are one-sided.
    v = values if maxima else -values
    inner = np.arange(margin, len(v) - margin)
    if not len(inner):
        return inner
    keep = np.isfinite(v[inner]) & (v[inner] > v[inner - 1]) & (v[inner] >= v[inner + 1])
    return inner[keep]


CURVATURE_MARGIN, CUSP_MARGIN = 3, 4
MIN_EVENT_POINTS = 2 * CURVATURE_MARGIN + 1  # a shorter curve has no point with central differences


def events(curve: np.ndarray) -> list[tuple[int, str, float]]:
    """(point index, event, value): 'curvature_max' with κ, 'cusp' with the evolute's speed; none
    on a curve of fewer than :data:`MIN_EVENT_POINTS` points."""
    if len(curve) < MIN_EVENT_POINTS:
        return []
    kappa, speed = curvature(curve), evolute_speed(curve)
    found = [(int(i), "curvature_max", float(kappa[i])) for i in _local_extrema(kappa, True, CURVATURE_MARGIN)]
    found += [(int(i), "cusp", float(speed[i])) for i in _local_extrema(speed, False, CUSP_MARGIN)]
    return sorted(found)
