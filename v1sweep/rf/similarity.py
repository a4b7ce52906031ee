"""Similarity of sampled RF parameters to the published V1 tables (cheap: runs in every trial).

Per property two numbers:
- `rf_similarity/<prop>`: Brain-Score-style 1 - KS/KS_max on the data's bins (1 = same histogram,
  0 = as far as the farthest point mass). No bootstrap and no ceiling: the model's units are all
  used once, so the score is deterministic given the RF parameters.
- `rf_wasserstein/<prop>`: Wasserstein-1 distance in octaves (log2) between the model's values and
  the table read as log-uniform inside bins; orientation in degrees.
Properties: orientation, sf_simple, sf_complex, nx, ny, nxny (joint), sf_nx (coupling). Properties
whose units are absent (e.g. no complex units) are left out; `rf_similarity` is the mean score.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from v1sweep.rf.empirical import DEFAULT_PRESET, Preset, get_preset
from v1sweep.rf.params import RFParams

MIN_UNITS_CORR = 3  # a cell type needs this many units to enter the sf-nx rank correlation


def _hist(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    v = np.clip(np.asarray(values, dtype=np.float64), edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0].astype(np.float64)


def ks_similarity(values: Any, edges: Any, counts: Any) -> float:
    """1 - KS/KS_max of `values` against the histogram (`edges`, `counts`), on the data's bins.

    Values are clipped to the outer edges. KS is the largest gap between the cumulative
    histograms; KS_max the KS between the data and a point mass on its first or last bin,
    whichever is larger (Marques et al. 2021, Brain-Score V1). Result in [0, 1].
    """
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    if len(e) != len(c) + 1:
        raise ValueError(f"ks_similarity: {len(c)} counts but {len(e) - 1} bins")
    h = _hist(values, e)
    if h.sum() == 0:
        raise ValueError("ks_similarity: no values")
    fm, fd = np.cumsum(h) / h.sum(), np.cumsum(c) / c.sum()
    ks = float(np.max(np.abs(fm - fd)))
    ks_max = float(max(1.0 - fd[0], fd[:-1].max(initial=0.0)))
    return 1.0 if ks_max == 0 else 1.0 - ks / ks_max


def _integral_abs_linear(ga: np.ndarray, gb: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Integral of |g| over intervals where g is linear from ga to gb."""
    same = ga * gb >= 0
    denom = np.where(same, 1.0, np.abs(ga) + np.abs(gb))
    return width * np.where(same, np.abs(ga + gb) / 2, (ga ** 2 + gb ** 2) / (2 * denom))


def wasserstein_log(values: Any, edges: Any, counts: Any, base: float | None = 2.0) -> float:
    """Exact Wasserstein-1 distance between the values and the histogram, in log-`base` space.

    The histogram is uniform inside bins in that space (log-uniform in linear units); `base=None`
    measures in linear units (orientation). W1 = integral of |F_model - F_data|.
    """
    def tr(x: Any) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x if base is None else np.log(x) / math.log(base)

    x, e = np.sort(tr(values)), tr(edges)
    c = np.asarray(counts, dtype=np.float64)
    if len(e) != len(c) + 1:
        raise ValueError(f"wasserstein_log: {len(c)} counts but {len(e) - 1} bins")
    if len(x) == 0:
        raise ValueError("wasserstein_log: no values")
    cdf = np.concatenate([[0.0], np.cumsum(c) / c.sum()])
    pts = np.sort(np.concatenate([x, e]))
    a, b = pts[:-1], pts[1:]
    fm = np.searchsorted(x, a, side="right") / len(x)
    ga = np.interp(a, e, cdf, left=0.0, right=1.0) - fm
    gb = np.interp(b, e, cdf, left=0.0, right=1.0) - fm
    return float(_integral_abs_linear(ga, gb, b - a).sum())


def joint_ks_similarity(x: Any, y: Any, x_edges: Any, y_edges: Any, counts: Any) -> float:
    """2-D analogue of `ks_similarity`: 1 - KS/KS_max with KS the largest gap between the
    lower-left cumulative histograms F(i, j) = P(X in bins <= i, Y in bins <= j), and KS_max that
    of the farthest point mass on one of the four corner cells. Result in [0, 1]."""
    ex, ey = np.asarray(x_edges, dtype=np.float64), np.asarray(y_edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    xv = np.clip(np.asarray(x, dtype=np.float64), ex[0], ex[-1])
    yv = np.clip(np.asarray(y, dtype=np.float64), ey[0], ey[-1])
    h = np.histogram2d(xv, yv, bins=[ex, ey])[0]
    if h.sum() == 0:
        raise ValueError("joint_ks_similarity: no values")

    def cum(p: np.ndarray) -> np.ndarray:
        return np.cumsum(np.cumsum(p / p.sum(), axis=0), axis=1)

    fd = cum(c)
    ks = float(np.max(np.abs(cum(h) - fd)))
    ks_max = 0.0
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        point = np.zeros_like(c)
        point[i, j] = 1.0
        ks_max = max(ks_max, float(np.max(np.abs(cum(point) - fd))))
    return 1.0 if ks_max == 0 else 1.0 - ks / ks_max


def joint_wasserstein_log(x: Any, y: Any, x_edges: Any, y_edges: Any, counts: Any, base: float = 2.0) -> float:
    """Wasserstein-1 between the model's and the data's 2-D histograms on the data's grid, cells
    at their centres in log-`base` space, Euclidean ground distance (a small linear program)."""
    from scipy.optimize import linprog

    ex, ey = np.asarray(x_edges, dtype=np.float64), np.asarray(y_edges, dtype=np.float64)
    xv = np.clip(np.asarray(x, dtype=np.float64), ex[0], ex[-1])
    yv = np.clip(np.asarray(y, dtype=np.float64), ey[0], ey[-1])
    pm = np.histogram2d(xv, yv, bins=[ex, ey])[0].ravel()
    pd = np.asarray(counts, dtype=np.float64).ravel()
    pm, pd = pm / pm.sum(), pd / pd.sum()
    lx, ly = np.log(ex) / math.log(base), np.log(ey) / math.log(base)
    cx, cy = np.meshgrid((lx[:-1] + lx[1:]) / 2, (ly[:-1] + ly[1:]) / 2, indexing="ij")
    centres = np.stack([cx.ravel(), cy.ravel()], axis=1)
    src, dst = np.flatnonzero(pm > 0), np.flatnonzero(pd > 0)
    cost = np.linalg.norm(centres[src][:, None] - centres[dst][None], axis=2)
    ns, nd = len(src), len(dst)
    a_eq = np.zeros((ns + nd, ns * nd))
    for k in range(ns):
        a_eq[k, k * nd:(k + 1) * nd] = 1.0
    for k in range(nd):
        a_eq[ns + k, k::nd] = 1.0
    res = linprog(cost.ravel(), A_eq=a_eq[:-1], b_eq=np.concatenate([pm[src], pd[dst]])[:-1],
                  bounds=(0, None), method="highs")
    if not res.success:  # pragma: no cover - a transport problem with equal masses is always feasible
        raise RuntimeError(f"joint_wasserstein_log: {res.message}")
    return float(res.fun)


def expected_spearman(rho: float) -> float:
    """Spearman correlation of a Gaussian copula with Pearson correlation `rho`."""
    return 6.0 / math.pi * math.asin(rho / 2.0)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import rankdata

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def sf_nx_spearman(rf: RFParams) -> float:
    """Spearman r of (sf, nx) within each cell type, averaged weighted by unit count (the cell
    types have different SF tables, so pooling them would dilute the rank correlation)."""
    rs, ws = [], []
    for sel in (~rf.complex, rf.complex):
        if sel.sum() >= MIN_UNITS_CORR:
            r = _spearman(rf.sf[sel], rf.nx[sel])
            if not math.isnan(r):
                rs.append(r)
                ws.append(float(sel.sum()))
    return float(np.average(rs, weights=ws)) if rs else float("nan")


def coupling_similarity(r_model: float, r_data: float) -> float:
    """1 - |r_model - r_data| / (1 + |r_data|): 1 when equal, 0 at the farthest possible r (-1 or 1)."""
    return 1.0 - abs(r_model - r_data) / (1.0 + abs(r_data))


def rf_similarity(rf: RFParams, preset: str | Preset = DEFAULT_PRESET) -> dict[str, float]:
    """Per-property and aggregate similarity of `rf` to the preset's published tables (module doc)."""
    p = get_preset(preset)
    out: dict[str, float] = {}

    o = p.orientation
    lo = o.edges[0]
    theta = lo + np.mod(rf.theta - lo, 180.0)  # wrap onto the De Valois bins
    out["rf_similarity/orientation"] = ks_similarity(theta, o.edges, o.counts)
    out["rf_wasserstein/orientation"] = wasserstein_log(theta, o.edges, o.counts, base=None)
    for name, sel in (("sf_simple", ~rf.complex), ("sf_complex", rf.complex)):
        if sel.any():
            h = getattr(p, name)
            out[f"rf_similarity/{name}"] = ks_similarity(rf.sf[sel], h.edges, h.counts)
            out[f"rf_wasserstein/{name}"] = wasserstein_log(rf.sf[sel], h.edges, h.counts)
    j = p.nxny
    for name, values, h in (("nx", rf.nx, j.nx), ("ny", rf.ny, j.ny)):
        out[f"rf_similarity/{name}"] = ks_similarity(values, h.edges, h.counts)
        out[f"rf_wasserstein/{name}"] = wasserstein_log(values, h.edges, h.counts)
    out["rf_similarity/nxny"] = joint_ks_similarity(rf.nx, rf.ny, j.nx_edges, j.ny_edges, j.counts)
    out["rf_wasserstein/nxny"] = joint_wasserstein_log(rf.nx, rf.ny, j.nx_edges, j.ny_edges, j.counts)
    r_model = sf_nx_spearman(rf)
    if not math.isnan(r_model):
        out["rf_spearman/sf_nx"] = r_model
        out["rf_similarity/sf_nx"] = coupling_similarity(r_model, expected_spearman(p.sf_nx_rho))
    scores = [v for k, v in out.items() if k.startswith("rf_similarity/")]
    out["rf_similarity"] = float(np.mean(scores))
    return {k: float(v) for k, v in out.items()}
