"""Named registries, one per pluggable family, whose entries carry their metadata.

Strategies, corruptions, datasets, backbones, search algorithms, schedulers and analyses each keep
one `Registry`. An entry is registered where it is written, with its facts beside it::

    @CORRUPTIONS.register("gaussian_noise", category="noise", benchmark=True, ...)
    def gaussian_noise(x, param, rng): ...

`catalogue()` returns the entries' metadata without touching the objects, so the config layer can
validate names (and options) from it; a family whose entries compute with torch keeps the module
importable without torch by using `lazy_module("torch")` (imported on first attribute use).
The contract tests in `v1sweep.testing` loop over `names()`, so a new entry is tested for free.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Callable, Generic, Iterator, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object with its name and metadata (read-only)."""

    name: str
    obj: T
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A dict of named entries filled by a decorator that refuses duplicate names.

    `required` names the metadata keys every entry must give (checked at registration, so a
    plugin missing a fact fails on import, not in a sweep hours later).
    """

    def __init__(self, kind: str, *, required: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.required = required
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        missing = [key for key in self.required if key not in meta]
        if missing:
            raise TypeError(f"{self.kind} {name!r}: metadata {', '.join(missing)} required")

        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, obj, MappingProxyType(dict(meta)))
            return obj

        return decorator

    def add(self, name: str, obj: T, **meta: Any) -> T:
        """`register` for an object built in place (not decorated)."""
        return self.register(name, **meta)(obj)

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries))
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {valid}") from None

    def meta(self, name: str) -> Mapping[str, Any]:
        return self.entry(name).meta

    def catalogue(self) -> dict[str, Mapping[str, Any]]:
        """name -> metadata, in registration order; never touches the registered objects."""
        return {name: entry.meta for name, entry in self._entries.items()}

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


class _LazyModule:
    """A module imported on first attribute access (`torch.zeros` imports torch then)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        module: ModuleType = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """`torch = lazy_module("torch")`: keeps a plugin file importable without torch.

    Unlike `importlib.util.LazyLoader` it puts nothing into `sys.modules` until first use, so
    "is torch imported?" checks stay truthful.
    """
    return _LazyModule(name)


PLUGIN_GROUP = "v1sweep.plugins"
PLUGIN_ENV = "V1SWEEP_PLUGINS"
_loaded_plugins: list[str] | None = None


def load_plugins() -> list[str]:
    """Import the plugin modules once per process, so their entries are registered everywhere.

    A plugin is a module whose import registers entries (a strategy, a corruption, a dataset, ...).
    It is found as an entry point of group ``v1sweep.plugins`` of an installed package
    (``[project.entry-points."v1sweep.plugins"] mine = "mypkg.v1plugins"``) or named in the
    ``V1SWEEP_PLUGINS`` environment variable (comma-separated modules on ``PYTHONPATH``). The config
    layer calls this before it validates a name, so a sweep that names a plugin works in the CLI
    and in every Ray worker (which inherit the environment) without the user importing anything.
    """
    global _loaded_plugins
    if _loaded_plugins is not None:
        return _loaded_plugins
    _loaded_plugins = []
    import os
    from importlib.metadata import entry_points

    modules = [ep.value.split(":")[0] for ep in entry_points(group=PLUGIN_GROUP)]
    modules += [m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()]
    for name in dict.fromkeys(modules):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a broken plugin must say which one, not fail somewhere later
            from v1sweep.errors import ConfigError
            raise ConfigError(f"plugin module {name!r} failed to import: {type(exc).__name__}: {exc}",
                              key=PLUGIN_ENV if name in os.environ.get(PLUGIN_ENV, "") else PLUGIN_GROUP) from exc
        _loaded_plugins.append(name)
    return _loaded_plugins
