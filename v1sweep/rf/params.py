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


@dataclass(frozen=True, eq=False)
class RFParams:
    """Equal-length arrays, simple units first.

    sf: peak spatial frequency, cycles/degree. theta: orientation, degrees in [0, 180).
    phase: degrees in [0, 360). nx, ny: envelope widths in carrier periods (Ringach 2002).
    color: input channel read (0/1/2). complex: True for complex (energy-model) units.
    """

    sf: np.ndarray
    theta: np.ndarray
    phase: np.ndarray
    nx: np.ndarray
    ny: np.ndarray
    color: np.ndarray
    complex: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.sf)
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.ndim != 1 or len(value) != n:
                raise ValueError(f"RFParams.{name} must be a 1-D numpy array of length {n}")
        if np.any(self.complex[:-1] & ~self.complex[1:]):
            raise ValueError("RFParams must list simple units before complex units")

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
        return all(np.array_equal(getattr(self, f), getattr(other, f)) for f in FIELDS)

    def subset(self, index: np.ndarray) -> "RFParams":
        """The units at `index` (boolean mask or integer indices), order kept."""
        return RFParams(**{f: getattr(self, f)[index] for f in FIELDS})

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per unit; returns the text and writes it to `path` if given."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(FIELDS)
        for row in zip(*(getattr(self, f) for f in FIELDS)):
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
            complex=np.array([bool(int(v)) for v in cols["complex"]], dtype=bool))
