"""`RFParams`: the sampled receptive-field parameters of a V1 block, one entry per channel.

Plain numpy data: the front-end consumes it, analyses compare it to V1, trials save it as CSV.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FIELDS = ("sf", "theta", "phase", "nx", "ny", "color", "complex")
# Optional column: the colour channel read by a complex unit's quadrature (phase + 90 deg) filter.
QUADRATURE_COLOR = "color_quadrature"


@dataclass(frozen=True, eq=False)
class RFParams:
    """Equal-length arrays, simple units first.

    sf: peak spatial frequency, cycles/degree. theta: orientation, degrees in [0, 180).
    phase: degrees in [0, 360). nx, ny: envelope widths in carrier periods (Ringach 2002).
    color: input channel read (0/1/2). complex: True for complex (energy-model) units.
    color_quadrature: channel read by a complex unit's quadrature filter; defaults to `color` (one
    colour per unit, as the 2023 study's code). The 2020 VOneNet code draws the colour of each
    filter of the quadrature pair separately, so there it may differ (preset ``vonenet2020``).
    Simple units never use it.
    """

    sf: np.ndarray
    theta: np.ndarray
    phase: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    color: np.ndarray
    complex: np.ndarray
    color_quadrature: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.sf)
        if self.color_quadrature is None:
            object.__setattr__(self, QUADRATURE_COLOR, np.array(self.color, copy=True))
        for name in FIELDS + (QUADRATURE_COLOR,):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) != n:
                raise ValueError(f"RFParams.{name} must be a 1-D numpy array of length {n}")
        if np.any(self.complex[:-1] & ~self.complex[1:]):
            raise ValueError("RFParams must list simple units before complex units")
        # Simple units have no quadrature filter: theirs is their colour, so equal banks compare equal.
        cq = np.where(np.asarray(self.complex, dtype=bool), np.asarray(self.color_quadrature), self.color)
        object.__setattr__(self, QUADRATURE_COLOR, cq.astype(np.asarray(self.color).dtype, copy=False))

    def __len__(self) -> int:
        return len(self.sf)

    @property
    def n_simple(self) -> int:
        return int((~self.complex).sum())

    @property
    def n_complex(self) -> int:
        return int(self.complex.sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RFParams):
            return NotImplemented
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in FIELDS + (QUADRATURE_COLOR,))

    @property
    def split_colour(self) -> bool:
        """True when some complex unit's quadrature filter reads another channel than its phase filter."""
        cplx = np.asarray(self.complex, dtype=bool)
        return bool(np.any(np.asarray(self.color)[cplx] != np.asarray(self.color_quadrature)[cplx]))

    def subset(self, index: np.ndarray) -> "RFParams":
        """The units at `index` (boolean mask or integer indices), order kept."""
        return RFParams(**{f: getattr(self, f)[index] for f in FIELDS + (QUADRATURE_COLOR,)})

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per unit; returns the text and writes it to `path` if given.

        The `color_quadrature` column is written only when it differs from `color` for some
        complex unit (preset vonenet2020), so one-colour banks keep the 7-column layout.
        """
        fields = FIELDS + ((QUADRATURE_COLOR,) if self.split_colour else ())
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(fields)
        for row in zip(*(getattr(self, f) for f in fields)):
            writer.writerow([repr(float(v)) if i < 5 else int(v) for i, v in enumerate(row)])
        text = buffer.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_csv(cls, path: str | Path) -> "RFParams":
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        cols = {f: [r[f] for r in rows] for f in FIELDS}
        return cls(
            sf=np.array(cols["sf"], dtype=np.float64), theta=np.array(cols["theta"], dtype=np.float64),
            phase=np.array(cols["phase"], dtype=np.float64), nx=np.array(cols["nx"], dtype=np.float64),
            ny=np.array(cols["ny"], dtype=np.float64), color=np.array(cols["color"], dtype=np.int64),
            complex=np.array([bool(int(v)) for v in cols["complex"]], dtype=bool),
            color_quadrature=(np.array([r[QUADRATURE_COLOR] for r in rows], dtype=np.int64)
                              if rows and QUADRATURE_COLOR in rows[0] else None))
