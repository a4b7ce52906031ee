"""Published V1 tuning-property histograms that model units are scored against.

The Brain-Score V1-properties benchmarks (Marques, Schrimpf & DiCarlo 2021) compare a model
property's distribution with the data's on the data's own bins. De Valois' tables are reused from
`v1sweep.rf.empirical`; Schiller's SF-bandwidth counts are defined here. For Ringach 2002
(circular variance, orientation bandwidth, orthogonal/preferred ratio, modulation ratio) only the
bin edges are published as histograms; the per-neuron data behind them are not bundled, so those
entries carry `counts=None` (reported, not scored) until a user supplies counts with
`V1Benchmark.with_counts` / `register_benchmark`.
"""
from __future__ import annotations

import builtins
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from v1sweep.registry import Registry
from v1sweep.rf import empirical

CELLS = ("all", "simple", "complex")


@dataclass(frozen=True)
class V1Benchmark:
    """One property histogram. `cells` picks model units by their measured type (F1/F0 > 1 =
    simple). `period` wraps values into [edges[0], edges[0] + period) (orientation)."""

    name: str
    property: str
    edges: tuple[float, ...]
    counts: tuple[float, ...] | None
    citation: str
    cells: str = "all"
    period: float | None = None

    def __post_init__(self) -> None:
        if self.cells not in CELLS:
            raise ValueError(f"V1Benchmark.cells must be one of {CELLS}, got {self.cells!r}")
        e = np.asarray(self.edges, dtype=float)
        if e.ndim != 1 or len(e) < 2 or np.any(np.diff(e) <= 0):
            raise ValueError(f"benchmark {self.name!r}: edges must be strictly increasing")
        if self.counts is not None:
            c = np.asarray(self.counts, dtype=float)
            if len(c) != len(e) - 1 or np.any(c < 0) or c.sum() <= 0:
                raise ValueError(f"benchmark {self.name!r}: need {len(e) - 1} non-negative counts, "
                                 f"got {self.counts}")

    @builtins.property  # the field `property` shadows the decorator's name in this class body
    def n(self) -> int:
        return int(round(sum(self.counts))) if self.counts is not None else 0

    def with_counts(self, counts: Sequence[float], citation: str | None = None) -> "V1Benchmark":
        return replace(self, counts=tuple(float(c) for c in counts), citation=citation or self.citation)

    def select(self, units: pd.DataFrame) -> np.ndarray:
        """Finite values of this property from responsive units of the benchmark's cell type."""
        if self.property not in units.columns:
            raise ValueError(f"benchmark {self.name!r} needs column {self.property!r}; "
                             f"have {', '.join(units.columns)}")
        mask = np.isfinite(units[self.property].to_numpy(dtype=float))
        if "responsive" in units.columns:
            mask &= units["responsive"].to_numpy(dtype=bool)
        if self.cells != "all":
            mask &= (units["cell_type"] == self.cells).to_numpy()
        values = units[self.property].to_numpy(dtype=float)[mask]
        if self.period is not None:
            values = (values - self.edges[0]) % self.period + self.edges[0]
        return values


BENCHMARKS: Registry[V1Benchmark] = Registry("V1 benchmark")


def register_benchmark(bench: V1Benchmark) -> V1Benchmark:
    BENCHMARKS.register(bench.name)(bench)
    return bench


def list_benchmarks(scored_only: bool = False) -> list[str]:
    return [n for n in BENCHMARKS.names() if not scored_only or BENCHMARKS.get(n).counts is not None]


def get_benchmark(name: str | V1Benchmark) -> V1Benchmark:
    return name if isinstance(name, V1Benchmark) else BENCHMARKS.get(name)


def _add(*counts: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(sum(v)) for v in zip(*counts))


_DEVALOIS_ORI = ("De Valois, Yund & Hepler 1982, Vision Res 22:531 "
                 "(counts as used by the Brain-Score V1 benchmark)")
_DEVALOIS_SF = "De Valois, Albrecht & Thorell 1982, Vision Res 22:545 (foveal cells)"
_SCHILLER = "Schiller, Finlay & Volman 1976, J Neurophysiol 39:1320 (SF bandwidth, %)"
_RINGACH = "Ringach, Shapley & Hawken 2002, J Neurosci 22:5639 (bins of Marques et al. 2021)"

# Schiller et al. 1976, SF bandwidth 100 (f_hi - f_lo) / (f_hi + f_lo), edges 0, 10, ..., 100 %.
SCHILLER_BW_EDGES = tuple(float(v) for v in np.arange(0, 101, 10))
SCHILLER_BW_SIMPLE = (0, 0, 0, 6, 5, 10, 7, 2, 0, 0)    # n = 30
SCHILLER_BW_COMPLEX = (0, 3, 4, 10, 17, 6, 2, 1, 0, 0)  # n = 43

for _b in (
    V1Benchmark("preferred_orientation", "preferred_orientation", empirical.ORI_EDGES,
                empirical.ORI_COUNTS_BRAINSCORE, _DEVALOIS_ORI, period=180.0),
    V1Benchmark("peak_sf", "peak_sf", empirical.SF_EDGES,
                _add(empirical.SF_SIMPLE_FOVEAL, empirical.SF_COMPLEX_FOVEAL), _DEVALOIS_SF),
    V1Benchmark("peak_sf/simple", "peak_sf", empirical.SF_EDGES, empirical.SF_SIMPLE_FOVEAL,
                _DEVALOIS_SF, cells="simple"),
    V1Benchmark("peak_sf/complex", "peak_sf", empirical.SF_EDGES, empirical.SF_COMPLEX_FOVEAL,
                _DEVALOIS_SF, cells="complex"),
    V1Benchmark("sf_bandwidth", "sf_bandwidth", SCHILLER_BW_EDGES,
                _add(SCHILLER_BW_SIMPLE, SCHILLER_BW_COMPLEX), _SCHILLER),
    V1Benchmark("sf_bandwidth/simple", "sf_bandwidth", SCHILLER_BW_EDGES, SCHILLER_BW_SIMPLE,
                _SCHILLER, cells="simple"),
    V1Benchmark("sf_bandwidth/complex", "sf_bandwidth", SCHILLER_BW_EDGES, SCHILLER_BW_COMPLEX,
                _SCHILLER, cells="complex"),
    # Ringach 2002: bins only (counts not bundled; see the module docstring).
    V1Benchmark("circular_variance", "circular_variance", tuple(np.linspace(0, 1, 14)), None, _RINGACH),
    V1Benchmark("orientation_bandwidth", "orientation_bandwidth", tuple(np.linspace(0, 90, 18)), None, _RINGACH),
    V1Benchmark("orth_pref_ratio", "orth_pref_ratio", tuple(np.linspace(0, 1, 14)), None, _RINGACH),
    V1Benchmark("modulation_ratio", "modulation_ratio", tuple(np.linspace(0, 2, 11)), None, _RINGACH),
):
    register_benchmark(_b)
