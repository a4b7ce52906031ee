"""Published primate V1 receptive-field tables, as data.

Every table is a histogram (bin edges + counts) exactly as published or as used by a published
V1 front-end. Sampling draws log-uniformly inside SF and nx/ny bins and uniformly inside
orientation bins (as VOneNet does); `Preset` bundles the tables one front-end used.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from v1sweep.rf.catalog import DEFAULT_PRESET

# --- Preferred orientation -----------------------------------------------------------------------
# De Valois, Yund & Hepler 1982, "The orientation and direction selectivity of cells in macaque
# visual cortex", Vision Res 22:531-544. Bins centred on 0, 45, 90, 135 deg (cardinal
# over-representation); negative angles wrap by +180.
ORI_EDGES = (-22.5, 22.5, 67.5, 112.5, 157.5)
ORI_COUNTS_VONENET = (66, 49, 77, 54)  # as used by the VOneNet front-end (n = 246)
ORI_COUNTS_BRAINSCORE = (110, 83, 100, 92)  # as used by the Brain-Score V1 benchmark (n = 385)

# --- Peak spatial frequency (cycles/degree) ------------------------------------------------------
# De Valois, Albrecht & Thorell 1982, "Spatial frequency selectivity of cells in macaque visual
# cortex", Vision Res 22:545-559. 12 half-octave bins from 0.35 to 22.4 cpd.
SF_EDGES = (0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.2, 16.0, 22.4)
SF_SIMPLE_FOVEAL = (0, 4, 4, 8, 25, 33, 26, 28, 12, 5, 2, 1)  # n = 148
SF_COMPLEX_FOVEAL = (0, 0, 0, 9, 9, 7, 10, 23, 12, 8, 3, 3)  # n = 84
SF_SIMPLE_PARAFOVEAL = (2, 4, 10, 12, 18, 7, 18, 3, 4, 0, 0, 0)  # n = 78
SF_COMPLEX_PARAFOVEAL = (1, 2, 1, 2, 5, 15, 13, 9, 3, 2, 0, 0)  # n = 53

# --- RF envelope shape (nx = sigma_x * f, ny = sigma_y * f) ---------------------------------------
# Ringach 2002, "Spatial structure and symmetry of simple-cell receptive fields in macaque primary
# visual cortex", J Neurophysiol 88:455-463. Joint histogram of simple cells (n = 79):
# rows = nx bin, columns = ny bin, edges logspace(-1, 0.2, 6).
NXNY_EDGES = tuple(float(v) for v in np.logspace(-1, 0.2, 6))
NXNY_COUNTS = (
    (2, 0, 1, 0, 0),
    (8, 9, 4, 1, 0),
    (1, 2, 19, 17, 3),
    (0, 0, 1, 7, 4),
    (0, 0, 0, 0, 0),
)

# --- SF-nx coupling -------------------------------------------------------------------------------
# Higher-SF cells have more cycles under the envelope; published VOneNet front-ends (Dapello et al.
# 2020, `sf_corr=0.75`) couple nx and SF through a Gaussian copula of this correlation.
SF_NX_RHO = 0.75

# --- Phase and colour ---------------------------------------------------------------------------
# Phase uniform on [0, 360) deg; each filter reads one of the 3 RGB channels, uniformly (VOneNet).
# The 2020 VOneNet code draws that channel separately for the two filters of a complex cell's
# quadrature pair (`GFB.initialize` calls torch.randint per bank); the 2023 study's code draws one
# channel per unit. `Preset.quadrature_color` records which.
PHASE_RANGE = (0.0, 360.0)
N_COLORS = 3


@dataclass(frozen=True)
class Histogram:
    """A 1-D histogram: `len(edges) == len(counts) + 1`, edges strictly increasing."""

    edges: tuple[float, ...]
    counts: tuple[float, ...]

    @property
    def probs(self) -> np.ndarray:
        c = np.asarray(self.counts, dtype=np.float64)
        return c / c.sum()

    @property
    def support(self) -> tuple[float, float]:
        return float(self.edges[0]), float(self.edges[-1])


@dataclass(frozen=True)
class JointHistogram:
    """A 2-D histogram, rows = nx bins, columns = ny bins."""

    nx_edges: tuple[float, ...]
    ny_edges: tuple[float, ...]
    counts: tuple[tuple[float, ...], ...]

    @property
    def probs(self) -> np.ndarray:
        c = np.asarray(self.counts, dtype=np.float64)
        return c / c.sum()

    @property
    def nx(self) -> Histogram:
        """Row marginal."""
        return Histogram(self.nx_edges, tuple(float(v) for v in np.asarray(self.counts, float).sum(1)))

    @property
    def ny(self) -> Histogram:
        """Column marginal."""
        return Histogram(self.ny_edges, tuple(float(v) for v in np.asarray(self.counts, float).sum(0)))


@dataclass(frozen=True)
class Preset:
    """The tables one published front-end sampled from."""

    name: str
    orientation: Histogram
    sf_simple: Histogram
    sf_complex: Histogram
    nxny: JointHistogram
    sf_nx_rho: float = SF_NX_RHO
    description: str = ""
    # "same": a complex unit's quadrature filter reads the channel of its phase filter (2023 code);
    # "independent": drawn again, uniformly (2020 VOneNet code: each filter bank draws its channels).
    quadrature_color: str = "same"

    def sf(self, complex_cell: bool) -> Histogram:
        return self.sf_complex if complex_cell else self.sf_simple


def _lump_above(edges: tuple[float, ...], counts: tuple[int, ...], lo: float, hi: float) -> Histogram:
    """Keep bins within [lo, hi]; counts of bins above `hi` are added to the last kept bin."""
    e = np.asarray(edges)
    first, last = int(np.flatnonzero(e == lo)[0]), int(np.flatnonzero(e == hi)[0])
    kept = list(counts[first:last])
    kept[-1] += sum(counts[last:])
    return Histogram(tuple(float(v) for v in e[first:last + 1]), tuple(float(v) for v in kept))


# Original ImageNet VOneNet (Dapello et al. 2020, NeurIPS): one SF table (simple foveal, with 32
# instead of 33 in the 2.0-2.8 bin, as in its code) on 0.5 ... 8 cpd for all units; full 5x5 nx/ny.
_VONENET_SF = Histogram((0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0), (4, 4, 8, 25, 32, 26, 28, 12))
VONENET2020 = Preset(
    name="vonenet2020",
    orientation=Histogram(ORI_EDGES, ORI_COUNTS_VONENET),
    sf_simple=_VONENET_SF,
    sf_complex=_VONENET_SF,
    nxny=JointHistogram(NXNY_EDGES, NXNY_EDGES, NXNY_COUNTS),
    description="ImageNet VOneNet: simple-foveal SF to 8 cpd for all units, 5x5 Ringach grid",
    quadrature_color="independent",
)

# Tiny-ImageNet VOneResNet18 study (Barbulescu, Marques & Oliveira 2023, arXiv 2310.10575):
# separate foveal simple/complex SF tables on 0.5 ... 11.2 cpd, counts above 8 cpd lumped into the
# last bin; the upper-left 4x4 block of the Ringach grid on logspace(-1, 0, 5) (n = 72).
_NXNY_4 = tuple(float(v) for v in np.logspace(-1, 0, 5))
TINYIMAGENET2023 = Preset(
    name="tinyimagenet2023",
    orientation=Histogram(ORI_EDGES, ORI_COUNTS_VONENET),
    sf_simple=_lump_above(SF_EDGES, SF_SIMPLE_FOVEAL, 0.5, 11.2),
    sf_complex=_lump_above(SF_EDGES, SF_COMPLEX_FOVEAL, 0.5, 11.2),
    nxny=JointHistogram(_NXNY_4, _NXNY_4, tuple(row[:4] for row in NXNY_COUNTS[:4])),
    description="Tiny-ImageNet study: foveal simple/complex SF to 11.2 cpd, 4x4 Ringach block",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (TINYIMAGENET2023, VONENET2020)}


def get_preset(preset: str | Preset = DEFAULT_PRESET) -> Preset:
    """A preset by name (or the `Preset` itself); ValueError listing the valid names."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown rf option 'preset' {preset!r}; valid: {', '.join(sorted(PRESETS))}")
    return PRESETS[preset]
