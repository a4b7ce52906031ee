"""The corruption names, categories and published order (Hendrycks & Dietterich 2019), read from the registry.

Each corruption registers itself once, in its family file, with its facts (`base.register`);
importing the families listed in `FAMILY_MODULES` fills the registry and everything below is
derived from it. Kept free of torch (and numpy): the family files load those lazily, so configs
can validate corruption names without importing the suite.
"""
from __future__ import annotations

import importlib

from v1sweep.corruptions.base import REGISTRY, SEVERITIES

# the family files, each registering its corruptions; the one list to extend with a new file
FAMILY_MODULES: tuple[str, ...] = (
    "v1sweep.corruptions.noise",
    "v1sweep.corruptions.blur",
    "v1sweep.corruptions.weather",
    "v1sweep.corruptions.digital",
    "v1sweep.corruptions.spatter",
)
for _module in FAMILY_MODULES:
    importlib.import_module(_module)


def _published() -> list[str]:
    """The built-in corruptions in published order: their `order`, benchmark before extras."""
    names = [n for n, meta in REGISTRY.catalogue().items() if meta["order"] is not None]
    names.sort(key=lambda n: REGISTRY.meta(n)["order"])
    flags = [REGISTRY.meta(n)["benchmark"] for n in names]
    assert flags == sorted(flags, reverse=True), "the benchmark corruptions come before the extras"
    return names


# name -> category; the first 15 are the benchmark, the last 4 the held-out extras
# (categorised as in the published code: speckle noise, gaussian blur, spatter, saturate).
CORRUPTIONS: dict[str, str] = {n: REGISTRY.meta(n)["category"] for n in _published()}
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(n for n in CORRUPTIONS if REGISTRY.meta(n)["benchmark"])
EXTRA_CORRUPTIONS: tuple[str, ...] = tuple(n for n in CORRUPTIONS if not REGISTRY.meta(n)["benchmark"])
CATEGORIES: tuple[str, ...] = tuple(dict.fromkeys(CORRUPTIONS.values()))  # in order of first appearance

__all__ = ["BENCHMARK_CORRUPTIONS", "CATEGORIES", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "FAMILY_MODULES",
           "SEVERITIES", "category_of", "registered"]


def category_of(name: str) -> str:
    if name not in REGISTRY:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(registered())}")
    return str(REGISTRY.meta(name)["category"])


def registered() -> list[str]:
    """Every registered corruption: the published ones in their order, then plugins registered since."""
    return [*CORRUPTIONS, *(n for n in REGISTRY.names() if n not in CORRUPTIONS)]
