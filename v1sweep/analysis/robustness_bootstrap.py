"""Bootstrap and correlation primitives (percentile-bootstrap intervals, row-wise and partial
correlations), numpy and scipy only.

Kept as tools for callers of `v1sweep.analysis.robustness`; they no longer make the report's
intervals (at 2-8 seeds a percentile bootstrap does not cover), which is why they sit apart from the
statistics the report uses (`robustness_compare`, `robustness_similarity`) and depend on none of them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy import stats

N_BOOT = 2000


def _percentiles(boots: np.ndarray, ci: float) -> tuple[float, float]:
    boots = boots[np.isfinite(boots)]
    if boots.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(boots, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2])
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], stat: Callable[..., np.ndarray] = np.mean, *, n_boot: int = N_BOOT,
                 ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of `stat` (called as ``stat(samples, axis=1)``); NaN for n < 2.

    Resamples are drawn as ``rng.integers(0, n, (n_boot, n))`` from ``default_rng(seed)``, the
    same stream as `n_boot` successive ``rng.integers(0, n, n)`` draws.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return _percentiles(np.asarray(stat(x[idx], axis=1), dtype=float), ci)


def relative_difference(a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT, ci: float = 0.95,
                        seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b)) / mean(b) and its two-sample percentile-bootstrap CI (a, b resampled apart)."""
    av = np.asarray(a, dtype=float)
    bv = np.asarray(b, dtype=float)
    av, bv = av[np.isfinite(av)], bv[np.isfinite(bv)]
    if av.size == 0 or bv.size == 0 or bv.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    value = float((av.mean() - bv.mean()) / bv.mean())
    if av.size < 2 or bv.size < 2:
        return value, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    ma = av[rng.integers(0, av.size, size=(n_boot, av.size))].mean(axis=1)
    mb = bv[rng.integers(0, bv.size, size=(n_boot, bv.size))].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = (ma - mb) / mb
    return (value, *_percentiles(boots, ci))


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of (B, n) arrays; NaN where a row is constant."""
    constant = (np.ptp(a, axis=-1) == 0) | (np.ptp(b, axis=-1) == 0)
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    r = np.where(constant, np.nan, r)
    return np.clip(r, -1.0, 1.0)


def _rowwise_partial(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Partial r of x, y given z per row, by the closed form (equal to the residual formula).

    Rows where z explains x or y (almost) fully leave nothing to correlate: NaN, not round-off.
    """
    rxy, rxz, ryz = _rowwise_pearson(x, y), _rowwise_pearson(x, z), _rowwise_pearson(y, z)
    den = (1 - rxz ** 2) * (1 - ryz ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (rxy - rxz * ryz) / np.sqrt(den)
    r = np.where(den > 1e-10, r, np.nan)
    return np.clip(r, -1.0, 1.0)


def partial_corr(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> tuple[float, float]:
    """Pearson correlation of x and y after regressing each on z (with intercept), and its p-value.

    The p-value uses Student's t with n - 3 degrees of freedom (one controlled variable).
    """
    xv, yv, zv = (np.asarray(v, dtype=float) for v in (x, y, z))
    n = xv.size
    if n < 4:
        return float("nan"), float("nan")
    design = np.column_stack([np.ones(n), zv])
    rx = xv - design @ np.linalg.lstsq(design, xv, rcond=None)[0]
    ry = yv - design @ np.linalg.lstsq(design, yv, rcond=None)[0]
    r = float(_rowwise_pearson(rx[None], ry[None])[0])
    if not np.isfinite(r):
        return float("nan"), float("nan")
    dof = n - 3
    if abs(r) >= 1.0:
        return r, 0.0
    t = r * np.sqrt(dof / (1 - r * r))
    return r, float(2 * stats.t.sf(abs(t), dof))


def correlation_ci(x: Sequence[float], y: Sequence[float], kind: str = "pearson", *, z: Sequence[float] | None = None,
                   n_boot: int = N_BOOT, ci: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap CI of a correlation ('pearson' | 'spearman' | 'partial' with `z`), pairs resampled."""
    xv, yv = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = xv.size
    if n < 3 or (kind == "partial" and n < 4):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    if kind == "pearson":
        boots = _rowwise_pearson(xv[idx], yv[idx])
    elif kind == "spearman":
        boots = _rowwise_pearson(stats.rankdata(xv[idx], axis=1), stats.rankdata(yv[idx], axis=1))
    elif kind == "partial":
        if z is None:
            raise ValueError("kind 'partial' needs z")
        boots = _rowwise_partial(xv[idx], yv[idx], np.asarray(z, dtype=float)[idx])
    else:
        raise ValueError(f"unknown correlation kind {kind!r}; allowed: pearson, spearman, partial")
    return _percentiles(boots, ci)
