"""Custom RF histograms from a YAML or CSV file (the `custom` strategy; format in docs/rf_sampling.md).

YAML (any section may be left out; it is then taken from the `preset` option):

    orientation: {edges: [-22.5, 22.5, 67.5, 112.5, 157.5], counts: [66, 49, 77, 54]}
    sf:          {edges: [...], counts: [...]}        # both cell types, or:
    sf_simple:   {edges: [...], counts: [...]}
    sf_complex:  {edges: [...], counts: [...]}
    nxny:        {edges: [...], counts: [[...], ...]} # or nx_edges + ny_edges; rows = nx
    sf_nx_rho:   0.75

CSV: header `table,lo,hi,ny_lo,ny_hi,value`; one row per bin (`ny_lo`/`ny_hi` only for `nxny`),
bins of a table contiguous; `sf_nx_rho` is one row with only `value`.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from v1sweep.rf.empirical import Histogram, JointHistogram, Preset, get_preset

SECTIONS_1D = ("orientation", "sf", "sf_simple", "sf_complex")
SECTIONS = SECTIONS_1D + ("nxny", "sf_nx_rho")
CSV_COLUMNS = ("table", "lo", "hi", "ny_lo", "ny_hi", "value")


class _Bad(ValueError):
    pass


def _edges(values: Any, where: str, positive: bool) -> tuple[float, ...]:
    try:
        e = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Bad(f"{where}: edges must be a list of numbers") from None
    if e.ndim != 1 or len(e) < 2:
        raise _Bad(f"{where}: edges must be a list of at least 2 numbers")
    if not np.all(np.isfinite(e)):
        raise _Bad(f"{where}: edges must be finite")
    if np.any(np.diff(e) <= 0):
        raise _Bad(f"{where}: edges must be strictly increasing, got {e.tolist()}")
    if positive and e[0] <= 0:
        raise _Bad(f"{where}: edges must be > 0 (sampled in log space), got {e[0]}")
    return tuple(float(v) for v in e)


def _counts(values: Any, where: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        c = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _Bad(f"{where}: counts must be numbers (a list, or a list of rows for nxny)") from None
    if c.shape != shape:
        raise _Bad(f"{where}: counts have shape {list(c.shape)} but the edges define {list(shape)} bins")
    if not np.all(np.isfinite(c)):
        raise _Bad(f"{where}: counts must be finite")
    if np.any(c < 0):
        raise _Bad(f"{where}: counts must be >= 0, got {c.min()}")
    if c.sum() <= 0:
        raise _Bad(f"{where}: counts are all zero")
    return c


def _histogram(name: str, section: Any) -> Histogram:
    if not isinstance(section, dict) or set(section) != {"edges", "counts"}:
        raise _Bad(f"{name}: needs exactly the keys 'edges' and 'counts'")
    edges = _edges(section["edges"], name, positive=name != "orientation")
    if name == "orientation" and edges[-1] - edges[0] > 180:
        raise _Bad(f"orientation: edges span {edges[-1] - edges[0]} deg; at most 180 (angles wrap mod 180)")
    counts = _counts(section["counts"], name, (len(edges) - 1,))
    return Histogram(edges, tuple(float(v) for v in counts))


def _joint(section: Any) -> JointHistogram:
    if not isinstance(section, dict):
        raise _Bad("nxny: must be a mapping with 'edges' (or 'nx_edges' and 'ny_edges') and 'counts'")
    keys = set(section)
    if keys == {"edges", "counts"}:
        nx_e = ny_e = _edges(section["edges"], "nxny", positive=True)
    elif keys == {"nx_edges", "ny_edges", "counts"}:
        nx_e = _edges(section["nx_edges"], "nxny.nx_edges", positive=True)
        ny_e = _edges(section["ny_edges"], "nxny.ny_edges", positive=True)
    else:
        raise _Bad(f"nxny: keys {sorted(keys)}; expected edges+counts or nx_edges+ny_edges+counts")
    c = _counts(section["counts"], "nxny", (len(nx_e) - 1, len(ny_e) - 1))
    return JointHistogram(nx_e, ny_e, tuple(tuple(float(v) for v in row) for row in c))


def _rho(value: Any) -> float:
    try:
        rho = float(value)
    except (TypeError, ValueError):
        raise _Bad(f"sf_nx_rho: must be a number, got {value!r}") from None
    if not -1 < rho < 1:
        raise _Bad(f"sf_nx_rho: must lie in (-1, 1), got {rho}")
    return rho


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise _Bad(f"not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise _Bad("the file must hold a mapping of sections")
    return data


def _contiguous(rows: list[tuple[float, float]], where: str) -> list[float]:
    rows = sorted(rows)
    for (lo0, hi0), (lo1, _) in zip(rows, rows[1:]):
        if not math.isclose(hi0, lo1, rel_tol=1e-9, abs_tol=1e-12):
            raise _Bad(f"{where}: bins are not contiguous ({lo0}-{hi0} then {lo1})")
    for lo, hi in rows:
        if not hi > lo:
            raise _Bad(f"{where}: bin {lo}-{hi} has hi <= lo (edges must be strictly increasing)")
    return [rows[0][0]] + [hi for _, hi in rows]


def _read_csv(path: Path) -> dict[str, Any]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or set(reader.fieldnames) != set(CSV_COLUMNS):
            raise _Bad(f"CSV header must be {','.join(CSV_COLUMNS)}, got {reader.fieldnames}")
        rows = list(reader)

    def num(row: dict[str, str], key: str, line: int) -> float:
        try:
            return float(row[key])
        except (TypeError, ValueError):
            raise _Bad(f"line {line}: column {key!r} must be a number, got {row[key]!r}") from None

    bins: dict[str, list[tuple[float, float, float]]] = {}
    cells: list[tuple[float, float, float, float, float]] = []
    data: dict[str, Any] = {}
    for line, row in enumerate(rows, start=2):
        table = (row["table"] or "").strip()
        if table == "sf_nx_rho":
            data["sf_nx_rho"] = row["value"]
        elif table in SECTIONS_1D:
            bins.setdefault(table, []).append((num(row, "lo", line), num(row, "hi", line), num(row, "value", line)))
        elif table == "nxny":
            lo, hi, ny_lo, ny_hi, value = (num(row, k, line) for k in ("lo", "hi", "ny_lo", "ny_hi", "value"))
            cells.append((lo, hi, ny_lo, ny_hi, value))
        else:
            raise _Bad(f"line {line}: unknown table {table!r}; valid: {', '.join(SECTIONS)}")
    for table, items in bins.items():
        if len({(lo, hi) for lo, hi, _ in items}) != len(items):
            raise _Bad(f"{table}: a bin is listed twice")
        items.sort()
        data[table] = {"edges": _contiguous([(lo, hi) for lo, hi, _ in items], table),
                       "counts": [v for _, _, v in items]}
    if cells:
        nx_bins = sorted({(c[0], c[1]) for c in cells})
        ny_bins = sorted({(c[2], c[3]) for c in cells})
        grid = np.full((len(nx_bins), len(ny_bins)), np.nan)
        for lo, hi, ylo, yhi, v in cells:
            i, j = nx_bins.index((lo, hi)), ny_bins.index((ylo, yhi))
            if not np.isnan(grid[i, j]):
                raise _Bad(f"nxny: cell nx {lo}-{hi}, ny {ylo}-{yhi} is listed twice")
            grid[i, j] = v
        if np.isnan(grid).any():
            raise _Bad(f"nxny: {int(np.isnan(grid).sum())} of the {grid.size} grid cells are missing")
        data["nxny"] = {"nx_edges": _contiguous(nx_bins, "nxny nx bins"),
                        "ny_edges": _contiguous(ny_bins, "nxny ny bins"), "counts": grid.tolist()}
    return data


def load_custom(path: str | Path, preset: str | Preset = "tinyimagenet2023") -> Preset:
    """The tables of a custom histogram file; sections it leaves out come from `preset`.

    Raises ValueError naming the option `path`, the file and the offending section.
    """
    path = Path(path)
    base = get_preset(preset)
    if path.is_dir():
        raise ValueError(f"rf option 'path': {str(path)!r} is a folder; rf.custom_path names a histogram "
                         f"file (.yaml or .csv, e.g. examples/custom_rf.yaml)")
    if not path.is_file():
        raise ValueError(f"rf option 'path': custom histogram file {str(path)!r} not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = _read_yaml(path)
        elif suffix == ".csv":
            data = _read_csv(path)
        else:
            raise _Bad(f"unknown file type {suffix!r}; use .yaml, .yml or .csv")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise _Bad(f"unknown section(s) {unknown}; valid: {', '.join(SECTIONS)}")
        if "sf" in data and ({"sf_simple", "sf_complex"} & set(data)):
            raise _Bad("give either 'sf' (both cell types) or 'sf_simple'/'sf_complex', not both")
        changes: dict[str, Any] = {"name": f"custom:{path.name}", "description": f"custom tables from {path}"}
        if "orientation" in data:
            changes["orientation"] = _histogram("orientation", data["orientation"])
        if "sf" in data:
            changes["sf_simple"] = changes["sf_complex"] = _histogram("sf", data["sf"])
        for name in ("sf_simple", "sf_complex"):
            if name in data:
                changes[name] = _histogram(name, data[name])
        if "nxny" in data:
            changes["nxny"] = _joint(data["nxny"])
        if "sf_nx_rho" in data:
            changes["sf_nx_rho"] = _rho(data["sf_nx_rho"])
    except _Bad as exc:
        raise ValueError(f"rf option 'path' ({path}): {exc}") from None
    return dataclasses.replace(base, **changes)
