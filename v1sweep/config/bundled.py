"""Where the bundled ``sweeps/`` and ``search_spaces/`` are, and finding a sweep by name.

Kept apart from the loader because it is the one place that knows the install layout: a source
checkout (a clone or an editable install) has them at the repository's top level, while a wheel
carries a copy in ``v1sweep/_bundled/`` (setup.py's build hook). Both paths are derived from this
file's location (``v1sweep/config/bundled.py``), so this module must stay in ``v1sweep/config/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from v1sweep.config import trial as trial_config
from v1sweep.config.schema import closest
from v1sweep.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bundle_root() -> Path:
    """Where `sweeps/` and `search_spaces/` are: the copy an installed wheel carries
    (`v1sweep/_bundled/`, made by setup.py's build hook), else the source checkout's top level
    (a clone, or an editable install)."""
    packaged = Path(__file__).resolve().parents[1] / "_bundled"
    return packaged if (packaged / "sweeps").is_dir() else REPO_ROOT


BUNDLE_ROOT = _bundle_root()
SWEEPS_DIR = BUNDLE_ROOT / "sweeps"
SEARCH_SPACES_DIR = BUNDLE_ROOT / "search_spaces"


def bundled_sweeps() -> list[tuple[str, str, Path]]:
    """(name, one-line description, path) of every sweep shipped with v1sweep, by name."""
    found = []
    for path in sorted(SWEEPS_DIR.glob("*.yaml")) if SWEEPS_DIR.is_dir() else []:
        try:
            raw = trial_config.read_yaml(path) or {}
        except Exception:  # noqa: BLE001 - a damaged file is listed, its loading names the fault
            raw = {}
        desc = raw.get("description") if isinstance(raw, Mapping) else None
        found.append((path.stem, " ".join(str(desc or "").split()), path))
    return found


def find_sweep(name_or_path: str | Path) -> Path:
    """A sweep file given as a path, or a bundled sweep given by name (``smoke``, ``smoke.yaml``,
    ``sweeps/smoke.yaml`` from any directory). A path that exists always wins."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    parts = path.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "sweeps"):
        stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
        bundled = SWEEPS_DIR / f"{stem}.yaml"
        if bundled.is_file():
            return bundled
        names = [n for n, _d, _p in bundled_sweeps()]
        raise ConfigError(f"no sweep file {str(name_or_path)!r} here and no bundled sweep named {stem!r}"
                          f"{closest(stem, names)}; bundled sweeps: {', '.join(names) or 'none'} "
                          f"(`v1sweep sweeps` lists them)", file=str(name_or_path))
    return path  # a missing path: reading it names the file


def _find_file(name: str, dirs: Sequence[Path]) -> Path | None:
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate if candidate.is_file() else None
    for d in dirs:
        for c in (d / candidate, d / f"{candidate}.yaml"):
            if c.is_file():
                return c.resolve()
    return None
