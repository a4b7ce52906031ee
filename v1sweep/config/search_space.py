"""A sweep's search space assembled from its own ``space:`` entries and ``include:``-d fragments.

Fragments (``search_spaces/*.yaml``) are looked up next to the sweep, in the working directory and
in the bundled ``search_spaces/``; they may include others (cycles are refused), and a parameter
may be varied by one entry only (the sweep's own entry overrides a fragment's with the same key).
Kept apart from the loader because it is the only code that reads other files into the space.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from v1sweep.config import trial as trial_config
from v1sweep.config.bundled import BUNDLE_ROOT, SEARCH_SPACES_DIR, _find_file
from v1sweep.config.domains import Domain, _parse_domain, field_of, split_key
from v1sweep.config.schema import build, closest, spec
from v1sweep.errors import ConfigError

if typing.TYPE_CHECKING:
    from v1sweep.config.sweep_file import SweepFile


@dataclass(frozen=True)
class FragmentFile:
    """The keys a search-space fragment (``search_spaces/*.yaml``) may hold."""
    description: str = spec("")
    include: tuple[str, ...] = spec(())
    space: dict = spec(default_factory=dict)


def _resolve_space(parsed: SweepFile, *, file: str | None,
                   base_dir: Path) -> tuple[dict[str, Domain], dict[str, str], list[str]]:
    space: dict[str, Domain] = {}
    origins: dict[str, str] = {}
    includes: list[str] = []
    me = [str(Path(file).resolve())] if file else []
    for inc in parsed.include:
        _include(inc, base_dir=base_dir, chain=me, space=space, origins=origins, includes=includes,
                 from_file=file, key="include")
    _merge_entries(parsed.space, file=file, space=space, origins=origins)
    return space, origins, includes


def _include(name: str, *, base_dir: Path, chain: list[str], space: dict, origins: dict,
             includes: list[str], from_file: str | None, key: str) -> None:
    path = _find_file(name, [base_dir, base_dir.parent, BUNDLE_ROOT, Path.cwd(), SEARCH_SPACES_DIR,
                             Path.cwd() / "search_spaces"])
    if path is None:
        available = sorted(p.name for p in SEARCH_SPACES_DIR.glob("*.yaml")) if SEARCH_SPACES_DIR.is_dir() else []
        hint = closest(Path(name).name, available)
        raise ConfigError(f"search-space fragment {name!r} not found{hint} (looked next to {from_file or 'the sweep'} "
                          f"and in {SEARCH_SPACES_DIR}); available: {', '.join(available) or 'none'}",
                          file=from_file, key=key)
    resolved = str(path)
    if resolved in chain:
        cycle = chain[chain.index(resolved):] + [resolved]
        raise ConfigError("include cycle: " + " -> ".join(Path(p).name for p in cycle)
                          + f" ({' -> '.join(cycle)})", file=from_file, key=key)
    raw = trial_config.read_yaml(path)
    if raw is None:
        raw = {}
    if isinstance(raw, Mapping) and "name" in raw:
        raise ConfigError(f"{name!r} is a sweep file, not a search-space fragment (keys: description, include, "
                          f"space); include files from search_spaces/, e.g. search_spaces/seeds.yaml",
                          file=from_file, key=key)
    fragment: FragmentFile = build(FragmentFile, raw, file=resolved)
    for inc in fragment.include:
        _include(inc, base_dir=path.parent, chain=chain + [resolved], space=space, origins=origins,
                 includes=includes, from_file=resolved, key="include")
    _merge_entries(fragment.space, file=resolved, space=space, origins=origins)
    if resolved not in includes:
        includes.append(resolved)


def _merge_entries(entries: Mapping[str, Any], *, file: str | None, space: dict[str, Domain],
                   origins: dict[str, str]) -> None:
    for raw_key, raw_domain in entries.items():
        key = ",".join(split_key(str(raw_key)))
        keys = split_key(key)
        for k in keys:
            field_of(k, file=file, space_key=f"space.{key}")
        if len(set(keys)) != len(keys):
            raise ConfigError("a tied key names the same parameter twice", file=file, key=f"space.{key}")
        for other in list(space):
            if other != key and set(split_key(other)) & set(keys):
                raise ConfigError(f"overlaps {other!r} from {origins[other]}: a parameter can be varied by one "
                                  f"entry only; use the same key to override it", file=file, key=f"space.{key}")
        space[key] = _parse_domain(keys, raw_domain, file=file, key=f"space.{key}")
        origins[key] = file or "the sweep"
