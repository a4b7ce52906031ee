"""In-silico electrophysiology: grating tuning of model units, compared with primate V1.

Follows the Brain-Score V1-properties protocol (Marques, Schrimpf & DiCarlo 2021): present the
circular-aperture gratings of `gratings.GratingProtocol`, read each unit at one spatial position
(the centre of its channel map by default), and per unit measure

- DC = mean response over the 8 phases minus the response to a blank mid-grey image, and
  AC = 2 |first harmonic over phase| / n_phases (the F1 amplitude);
- the preferred stimulus = argmax of DC over (radius, SF, orientation) (as Brain-Score does);
- on the orientation curve (DC at the preferred radius and SF): preferred orientation (argmax,
  refined by a periodic 3-point parabola), circular variance 1 - |sum r e^{2i theta}| / sum |r|,
  orientation bandwidth (half-width at 1/sqrt(2) of the peak, linear interpolation between
  grid points, mean of both flanks, capped at 90 deg), orthogonal / preferred ratio;
- on the SF curve (DC at the preferred radius and orientation): peak SF (argmax refined by a
  parabola in log2 SF), SF bandwidth as Schiller 1976 / Brain-Score's 'ratio' mode,
  100 (f_hi - f_lo) / (f_hi + f_lo) at 1/sqrt(2) of the peak, and the same in octaves
  (NaN when a flank never drops below the threshold inside the tested range: not SF-selective);
- modulation ratio F1/F0 = AC / DC at the preferred stimulus (simple > 1, complex < 1).

Works on any module: the V1 block itself (`layer=None`, the module's output is read) or a named
layer of a full model through `v1sweep.trial.models.layer_outputs` hooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from v1sweep.analysis.gratings import GratingProtocol, iter_grating_batches, make_gratings, to_model_input

if TYPE_CHECKING:
    from v1sweep.analysis.v1_benchmarks import V1Benchmark
    from v1sweep.frontend import VOneBlock
    from v1sweep.trial.models import V1Net

PROPERTY_COLUMNS = ("preferred_orientation", "circular_variance", "orientation_bandwidth",
                    "orth_pref_ratio", "peak_sf", "sf_bandwidth", "sf_bandwidth_octaves",
                    "modulation_ratio")
SQRT_HALF = 1.0 / np.sqrt(2.0)


# ----------------------------------------------------------------------------- responses
def _device_of(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _read_units(out: torch.Tensor, position: tuple[int, int] | None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C) at `position` (default the map's centre); (B, C) passes through."""
    if out.ndim == 2:
        return out
    if out.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) or (B, C) layer output, got shape {tuple(out.shape)}")
    h, w = out.shape[-2:]
    i, j = position if position is not None else (h // 2, w // 2)
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"position {(i, j)} is outside the {h}x{w} output map")
    return out[:, :, i, j]


def _vone_at(block: VOneBlock, position: tuple[int, int] | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The V1 block's response at one output position, (B, 3, H, W) -> (B, units), computed from the
    ksize x ksize input patch it reads instead of the whole map (~(H/stride)^2 times less work).

    Uses the block's published formula (simple = k_exc relu(g . x); complex = k_exc
    sqrt((g . x)^2 + (g90 . x)^2) / sqrt(2); each unit reads its colour channel; 'same' zero
    padding) and its `kernels` / `kernels_quadrature` buffers; tests check it against `forward`."""
    k, stride, pad = block.ksize, block.stride, block.ksize // 2
    color = np.asarray(block.rf.color, dtype=np.int64)
    # the quadrature filter's channel (differs from `color` for some complex units under vonenet2020)
    color_q = np.asarray(getattr(block.rf, "color_quadrature", color), dtype=np.int64)
    cplx = np.asarray(block.rf.complex, dtype=bool)
    size = block.image_size
    h_out = -(-size // stride)
    i, j = position if position is not None else (h_out // 2, h_out // 2)
    if not (0 <= i < h_out and 0 <= j < h_out):
        raise ValueError(f"position {(i, j)} is outside the {h_out}x{h_out} output map")
    # buffers (typed `Tensor | Module` through `nn.Module.__getattr__`)
    kern = cast(torch.Tensor, block.kernels).detach().reshape(len(color), k * k)
    quad = cast(torch.Tensor, block.kernels_quadrature).detach().reshape(-1, k * k)
    # per colour: (units reading it, their phase kernels^T, complex units among them, quadrature^T)
    per_colour = []
    for c in range(3):
        units = np.flatnonzero(color == c)
        cunits = np.flatnonzero((color_q == c) & cplx)
        per_colour.append((torch.as_tensor(units), kern[units].T.contiguous(), torch.as_tensor(cunits),
                           quad[cunits - block.n_simple].T.contiguous()))
    cplx_t = torch.as_tensor(np.flatnonzero(cplx))
    # the k x k window read by output (i, j) ('same' zero padding), clipped to the image
    r0, c0 = i * stride - pad, j * stride - pad
    rows, cols = slice(max(r0, 0), min(r0 + k, size)), slice(max(c0, 0), min(c0 + k, size))
    padding = (cols.start - c0, c0 + k - cols.stop, rows.start - r0, r0 + k - rows.stop)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != size or x.shape[-2] != size:
            raise ValueError(f"the V1 block expects (B, 3, {size}, {size}), got {tuple(x.shape)}")
        patch = nn.functional.pad(x[:, :, rows, cols], padding).reshape(x.shape[0], 3, k * k)
        lin = x.new_zeros((x.shape[0], len(color)))
        qlin = x.new_zeros((x.shape[0], len(cplx_t)))
        for c, (units, w, cunits, wq) in enumerate(per_colour):  # one GEMM per colour
            if len(units):
                lin[:, units] = patch[:, c] @ w.to(x)
            if len(cunits):
                qlin[:, cunits - block.n_simple] = patch[:, c] @ wq.to(x)
        out = block.k_exc * torch.relu(lin)
        if len(cplx_t):
            out[:, cplx_t] = block.k_exc / np.sqrt(2.0) * torch.hypot(lin[:, cplx_t], qlin)
        return out

    return fn


def _forward_fn(model: nn.Module, layer: str | None, position: tuple[int, int] | None,
                fast: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    from v1sweep.frontend import VOneBlock

    target = model.vone if layer == "vone" and isinstance(getattr(model, "vone", None), VOneBlock) else model
    if fast and (layer is None or target is not model) and isinstance(target, VOneBlock) \
            and target.noise == "none":
        return _vone_at(target, position)
    if layer is None:
        return lambda x: _read_units(model(x), position)
    from v1sweep.trial.models import layer_outputs

    def fn(x: torch.Tensor) -> torch.Tensor:
        return _read_units(layer_outputs(cast("V1Net", model), x, [layer])[layer], position)

    return fn


@torch.no_grad()
def measure_responses(model: nn.Module, protocol: GratingProtocol, *, layer: str | None = None,
                      position: tuple[int, int] | None = None, batch_size: int = 256,
                      channels: int = 3, normalize: Callable[[torch.Tensor, int], torch.Tensor] = to_model_input,
                      fast: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Responses (units, radii, sfs, orientations, phases) and the blank (mid-grey) response (units,).

    `layer=None` reads `model`'s own output, a name reads that layer through
    `v1sweep.trial.models.layer_outputs`. `position` is the (row, col) of the output map read (default
    its centre; the gratings should be centred on that unit's RF: `GratingProtocol.center`).
    `normalize(gray, channels)` turns [0, 1] grey images into the model's input; the default is the
    data loader's (x - 0.5) / 0.5 on 3 identical channels. `fast` computes a noiseless V1 block's
    single position from its input patch instead of its whole output map.
    """
    was_training = model.training
    model.eval()
    device = _device_of(model)
    forward = _forward_fn(model, layer, position, fast)
    try:
        blank = torch.full((1, protocol.image_size, protocol.image_size), 0.5)
        base = forward(normalize(blank, channels).to(device)).float().cpu()
        chunks = []
        for _, gray in iter_grating_batches(protocol, batch_size):
            chunks.append(forward(normalize(gray, channels).to(device)).float().cpu())
    finally:
        model.train(was_training)
    resp = torch.cat(chunks).numpy().astype(np.float64)            # (N, U)
    return resp.T.reshape((resp.shape[1],) + protocol.shape), base[0].numpy().astype(np.float64)


# ----------------------------------------------------------------------------- property formulas
def circular_variance(curve: np.ndarray, orientations_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """1 - |sum r e^{2i theta}| / sum |r| along the last axis (Ringach 2002)."""
    curve = np.asarray(curve, dtype=np.float64)
    theta = np.deg2rad(np.asarray(orientations_deg, dtype=np.float64))
    num = np.abs((curve * np.exp(2j * theta)).sum(-1))
    den = np.abs(curve).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 1.0 - num / den, np.nan)


def _first_crossing(values: np.ndarray, thr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values (U, K+1) walking away from the peak (column 0); fractional index where it first drops
    below thr (linear interpolation between samples) and whether it ever does."""
    below = values < thr[:, None]
    found = np.asarray(below.any(1))
    k = np.where(found, below.argmax(1), 1)
    rows = np.arange(len(values))
    v0, v1 = values[rows, k - 1], values[rows, k]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(v0 > v1, (v0 - thr) / (v0 - v1), 0.0)
    return np.where(found, k - 1 + np.clip(frac, 0, 1), np.nan), found


def orientation_bandwidth(curve: np.ndarray, step_deg: float) -> np.ndarray:
    """Half-width (deg) at 1/sqrt(2) of the peak of a periodic (180 deg) tuning curve sampled every
    `step_deg`, mean of the two flanks, capped at 90 (a flank that never drops counts as 90)."""
    curve = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    n = curve.shape[1]
    peak = curve.argmax(1)
    rows = np.arange(len(curve))
    thr = curve[rows, peak] * SQRT_HALF
    offsets = np.arange(n // 2 + 1)
    widths = []
    for sign in (1, -1):
        vals = curve[rows[:, None], (peak[:, None] + sign * offsets[None]) % n]
        idx, found = _first_crossing(vals, thr)
        widths.append(np.where(found, np.minimum(idx * step_deg, 90.0), 90.0))
    return 0.5 * (widths[0] + widths[1])


def orth_pref_ratio(curve: np.ndarray) -> np.ndarray:
    """Response at preferred + 90 deg over the preferred response (curve over 180 deg, even length)."""
    curve = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    n = curve.shape[1]
    if n % 2:
        raise ValueError("orth/pref ratio needs an even number of orientations spanning 180 deg")
    peak = curve.argmax(1)
    rows = np.arange(len(curve))
    with np.errstate(invalid="ignore", divide="ignore"):
        return curve[rows, (peak + n // 2) % n] / curve[rows, peak]


def _parabolic_offset(left: np.ndarray, mid: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Vertex offset (in samples, within +-0.5) of the parabola through three points."""
    den = left - 2 * mid + right
    with np.errstate(invalid="ignore", divide="ignore"):
        off = np.where(den < 0, 0.5 * (left - right) / den, 0.0)
    return np.clip(off, -0.5, 0.5)


def preferred_orientation(curve: np.ndarray, orientations_deg: Sequence[float] | np.ndarray) -> np.ndarray:
    """Argmax orientation refined by a periodic parabola, degrees in [0, 180)."""
    curve = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    ori = np.asarray(orientations_deg, dtype=np.float64)
    n = curve.shape[1]
    step = 180.0 / n
    peak = curve.argmax(1)
    rows = np.arange(len(curve))
    off = _parabolic_offset(curve[rows, (peak - 1) % n], curve[rows, peak], curve[rows, (peak + 1) % n])
    return (ori[peak] + off * step) % 180.0


def peak_sf(curve: np.ndarray, sfs: Sequence[float]) -> np.ndarray:
    """Argmax SF refined by a parabola in log2 SF (not at the ends of the range), cpd."""
    curve = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    log_sf = np.log2(np.asarray(sfs, dtype=np.float64))
    n = curve.shape[1]
    peak = curve.argmax(1)
    rows = np.arange(len(curve))
    inner = (peak > 0) & (peak < n - 1)
    lo, hi = np.clip(peak - 1, 0, n - 1), np.clip(peak + 1, 0, n - 1)
    off = np.where(inner, _parabolic_offset(curve[rows, lo], curve[rows, peak], curve[rows, hi]), 0.0)
    step = np.diff(log_sf).mean() if n > 1 else 0.0
    return 2.0 ** (log_sf[peak] + off * step)


def sf_bandwidth(curve: np.ndarray, sfs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(percent, octaves): 100 (f_hi - f_lo) / (f_hi + f_lo) and log2(f_hi / f_lo), where f_lo/f_hi
    are the 1/sqrt(2)-of-peak crossings (interpolated in log2 SF); NaN if either flank never drops."""
    curve = np.atleast_2d(np.asarray(curve, dtype=np.float64))
    log_sf = np.log2(np.asarray(sfs, dtype=np.float64))
    u, n = curve.shape
    peak = curve.argmax(1)
    rows = np.arange(u)
    thr = curve[rows, peak] * SQRT_HALF
    # walk right/left from the peak; pad with +inf so walking past the range never "crosses"
    padded = np.concatenate([np.full((u, n), np.inf), curve, np.full((u, n), np.inf)], axis=1)
    offsets = np.arange(n)
    hi_idx, hi_found = _first_crossing(padded[rows[:, None], n + peak[:, None] + offsets], thr)
    lo_idx, lo_found = _first_crossing(padded[rows[:, None], n + peak[:, None] - offsets], thr)
    step = np.diff(log_sf).mean() if n > 1 else 1.0
    log_hi = log_sf[peak] + hi_idx * step
    log_lo = log_sf[peak] - lo_idx * step
    ok = hi_found & lo_found
    f_hi, f_lo = 2.0 ** log_hi, 2.0 ** log_lo
    pct = np.where(ok, 100.0 * (f_hi - f_lo) / (f_hi + f_lo), np.nan)
    octv = np.where(ok, log_hi - log_lo, np.nan)
    return pct, octv


def modulation_ratio(responses: np.ndarray, baseline: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(DC, AC) over the last (phase) axis: DC = mean - baseline; AC = 2 |first harmonic| / n.
    Phases must sample one cycle uniformly."""
    r = np.asarray(responses, dtype=np.float64)
    n = r.shape[-1]
    base = np.asarray(baseline, dtype=np.float64)
    if base.ndim:  # one baseline per unit (first axis)
        base = base.reshape((-1,) + (1,) * (r.ndim - 2))
    dc = r.mean(-1) - base
    ac = 2.0 * np.abs(np.fft.fft(r, axis=-1)[..., 1]) / n
    return dc, ac


# ----------------------------------------------------------------------------- per-unit table
def unit_properties(responses: np.ndarray, protocol: GratingProtocol, baseline: np.ndarray | None = None,
                    *, min_response: float = 1e-6) -> pd.DataFrame:
    """One row per unit with every property (NaN for units that never respond above `min_response`
    relative to their largest DC across units). `responses` is (units, radii, sfs, oris, phases)."""
    r = np.asarray(responses, dtype=np.float64)
    if r.ndim != 5 or r.shape[1:] != protocol.shape:
        raise ValueError(f"responses must have shape (units,) + {protocol.shape}, got {r.shape}")
    phases = np.asarray(protocol.phases)
    if not np.allclose(np.sort(phases), np.arange(len(phases)) * 360.0 / len(phases)):
        raise ValueError("phases must sample 0-360 deg uniformly to measure F1 (e.g. 0, 45, ..., 315)")
    ori = np.asarray(protocol.orientations)
    if not np.allclose(ori, np.arange(len(ori)) * 180.0 / len(ori)):
        raise ValueError("orientations must sample 0-180 deg uniformly (e.g. 0, 15, ..., 165)")
    u = r.shape[0]
    base = np.zeros(u) if baseline is None else np.asarray(baseline, dtype=np.float64)
    dc, ac = modulation_ratio(r, base)                                     # (U, R, S, O)
    flat = dc.reshape(u, -1).argmax(1)
    ir, isf, io = np.unravel_index(flat, dc.shape[1:])
    rows = np.arange(u)
    max_dc = dc[rows, ir, isf, io]
    max_ac = ac[rows, ir, isf, io]
    ori_curve = dc[rows, ir, isf, :]
    sf_curve = dc[rows, ir, :, io]
    scale = np.nanmax(np.abs(max_dc)) if u else 0.0
    responsive = max_dc > min_response * max(scale, 1e-12)
    pct, octv = sf_bandwidth(sf_curve, protocol.sfs)
    with np.errstate(invalid="ignore", divide="ignore"):
        mr = np.where(max_dc > 0, max_ac / max_dc, np.nan)
    table = pd.DataFrame({
        "unit": rows,
        "preferred_orientation": preferred_orientation(ori_curve, ori),
        "circular_variance": circular_variance(ori_curve, ori),
        "orientation_bandwidth": orientation_bandwidth(ori_curve, 180.0 / len(ori)),
        "orth_pref_ratio": orth_pref_ratio(ori_curve),
        "peak_sf": peak_sf(sf_curve, protocol.sfs),
        "sf_bandwidth": pct,
        "sf_bandwidth_octaves": octv,
        "modulation_ratio": mr,
        "max_dc": max_dc,
        "max_ac": max_ac,
        "preferred_radius": np.asarray(protocol.radii)[ir],
        "responsive": responsive,
    })
    table.loc[~responsive, list(PROPERTY_COLUMNS)] = np.nan
    table["cell_type"] = np.where(table["modulation_ratio"] > 1, "simple",
                                  np.where(table["modulation_ratio"] <= 1, "complex", "unresponsive"))
    return table


# ----------------------------------------------------------------------------- whole pipeline
@dataclass
class ElectrophysiologyResult:
    units: pd.DataFrame          # one row per unit (see `unit_properties`)
    scores: pd.DataFrame         # one row per V1 benchmark (see `compare_to_v1`)
    protocol: GratingProtocol
    layer: str | None
    note: str

    @property
    def score(self) -> float:
        """Mean of the scored benchmarks (NaN if none could be scored)."""
        vals = self.scores["score"].dropna()
        return float(vals.mean()) if len(vals) else float("nan")


def _ks_hist(h: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """1 - KS/KS_max of histograms `h` (draws x bins) against the data's `counts` (rows vectorised)."""
    fd = np.cumsum(counts) / counts.sum()
    fm = np.cumsum(h, axis=-1) / h.sum(axis=-1, keepdims=True)
    ks = np.abs(fm - fd).max(axis=-1)
    ks_max = max(1.0 - fd[0], fd[:-1].max(initial=0.0))
    return 1.0 - ks / ks_max if ks_max > 0 else np.ones(len(h))


def benchmark_ceiling(counts: Sequence[float], n: int, draws: int, rng: np.random.Generator) -> dict[str, float]:
    """Scores of `draws` samples of `n` units drawn from the data histogram itself (the ceiling:
    what a perfectly V1-like model with n units scores) and from a flat histogram over the same
    bins (the floor: a model that knows nothing); resolvable when the ceiling's 2.5 % quantile lies
    above the floor's 97.5 % quantile, i.e. n units can tell V1 from flat on this benchmark."""
    c = np.asarray(counts, dtype=float)
    ceil = _ks_hist(rng.multinomial(n, c / c.sum(), size=draws).astype(float), c)
    flat = _ks_hist(rng.multinomial(n, np.full(len(c), 1 / len(c)), size=draws).astype(float), c)
    return {"ceiling": float(ceil.mean()), "ceiling_lo": float(np.quantile(ceil, 0.025)),
            "floor": float(flat.mean()), "floor_hi": float(np.quantile(flat, 0.975)),
            "resolvable": bool(np.quantile(ceil, 0.025) > np.quantile(flat, 0.975))}


def compare_to_v1(units: pd.DataFrame, benchmarks: Sequence[str | V1Benchmark] | None = None, *,
                  n_boot: int = 0, seed: int = 0, ceiling_draws: int = 0) -> pd.DataFrame:
    """Score each property's distribution against the published V1 histogram (Brain-Score style,
    `v1sweep.rf.similarity.ks_similarity`). With `n_boot` > 0 the score is averaged over bootstrap
    resamples of model units of the data's sample size, as Brain-Score does. `benchmarks` are
    registry names or `V1Benchmark` objects (e.g. a Ringach entry `.with_counts(...)`).

    With `ceiling_draws` > 0 each score gets its ceiling at the model's unit count
    (`benchmark_ceiling`), ``norm_score`` = score / ceiling and ``resolvable``."""
    from v1sweep.analysis.v1_benchmarks import get_benchmark, list_benchmarks
    from v1sweep.rf.similarity import ks_similarity

    rng = np.random.default_rng(seed)
    rows = []
    for name in (benchmarks if benchmarks is not None else list_benchmarks()):
        bench = get_benchmark(name)
        values = bench.select(units)
        row: dict[str, Any] = {"benchmark": bench.name, "property": bench.property, "cells": bench.cells,
               "source": bench.citation, "n_model": int(len(values)),
               "n_data": int(bench.n) if bench.counts is not None else 0,
               "model_median": float(np.median(values)) if len(values) else float("nan"),
               "score": float("nan"), "score_std": float("nan"), "note": ""}
        if ceiling_draws > 0:
            row.update(ceiling=float("nan"), ceiling_lo=float("nan"), floor=float("nan"), floor_hi=float("nan"),
                       resolvable=False, norm_score=float("nan"))
        if bench.counts is None:
            row["note"] = "published counts not bundled; pass V1Benchmark.with_counts(...)"
        elif len(values) == 0:
            row["note"] = "no responsive units with this property"
        else:
            if n_boot > 0:
                draws = [ks_similarity(rng.choice(values, size=bench.n, replace=True), bench.edges, bench.counts)
                         for _ in range(n_boot)]
                row["score"], row["score_std"] = float(np.mean(draws)), float(np.std(draws))
            else:
                row["score"] = float(ks_similarity(values, bench.edges, bench.counts))
            if ceiling_draws > 0:
                row.update(benchmark_ceiling(bench.counts, len(values), ceiling_draws, rng))
                row["norm_score"] = row["score"] / row["ceiling"] if row["ceiling"] > 0 else float("nan")
                if not row["resolvable"]:
                    row["note"] = (f"not resolvable with {len(values)} units: a flat histogram scores "
                                   f"{row['floor']:.2f}, the data itself {row['ceiling']:.2f}")
        rows.append(row)
    return pd.DataFrame(rows)


def electrophysiology(model: nn.Module, *, image_size: int, visual_degrees: float, layer: str | None = None,
                      position: tuple[int, int] | None = None, radii: Sequence[float] | None = None,
                      sfs: Sequence[float] | None = None, batch_size: int = 256,
                      benchmarks: Sequence[str | V1Benchmark] | None = None, n_boot: int = 0, seed: int = 0,
                      fast: bool = True, ceiling_draws: int = 0) -> ElectrophysiologyResult:
    """Run the grating protocol on `model` (or its `layer`), measure every unit, score against V1.

    Radii default to a quarter, half and all of the image's half-width (`gratings.default_radii`);
    fewer radii or SFs make it proportionally faster. `ceiling_draws` > 0 adds each score's
    same-size data ceiling, normalised score and resolvability (`compare_to_v1`)."""
    kwargs: dict[str, Any] = {} if sfs is None else {"sfs": tuple(sfs)}
    protocol = GratingProtocol(image_size=image_size, visual_degrees=visual_degrees,
                               radii=None if radii is None else tuple(radii), **kwargs)
    resp, base = measure_responses(model, protocol, layer=layer, position=position, batch_size=batch_size,
                                   fast=fast)
    units = unit_properties(resp, protocol, base)
    scores = compare_to_v1(units, benchmarks, n_boot=n_boot, seed=seed, ceiling_draws=ceiling_draws)
    return ElectrophysiologyResult(units, scores, protocol, layer, protocol.note)


def plot_property_histograms(units: pd.DataFrame, path: str | Path,
                             benchmarks: Sequence[str] | None = None, title: str = "") -> Path:
    """Model vs published histograms, one panel per benchmark, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from v1sweep.analysis.v1_benchmarks import get_benchmark, list_benchmarks

    names = list(benchmarks if benchmarks is not None else list_benchmarks())
    ncol = min(4, max(1, len(names)))
    nrow = int(np.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
    for ax, name in zip(axes.flat, names):
        bench = get_benchmark(name)
        edges = np.asarray(bench.edges, dtype=float)
        values = bench.select(units)
        model_counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
        x = np.arange(len(edges) - 1)
        if len(values):
            ax.bar(x - 0.2, model_counts / max(1, model_counts.sum()), width=0.4, label=f"model (n={len(values)})")
        if bench.counts is not None:
            c = np.asarray(bench.counts, dtype=float)
            ax.bar(x + 0.2, c / c.sum(), width=0.4, label=f"V1 (n={int(c.sum())})")
        ticks = np.arange(len(edges))[:: max(1, len(edges) // 6)]  # ticks on bin edges
        ax.set_xticks(ticks - 0.5)
        ax.set_xticklabels([f"{edges[i]:.3g}" for i in ticks], fontsize=7)
        ax.set_title(f"{name}", fontsize=8)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["ElectrophysiologyResult", "GratingProtocol", "circular_variance", "compare_to_v1",
           "electrophysiology", "make_gratings", "measure_responses", "modulation_ratio",
           "orientation_bandwidth", "orth_pref_ratio", "peak_sf", "plot_property_histograms",
           "preferred_orientation", "sf_bandwidth", "unit_properties"]
