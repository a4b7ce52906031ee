"""What the datasets are, without loading them: names and the facts a trial config checks.

Every dataset is registered once, in the file that defines its loader (built-ins:
`v1sweep.data.datasets`, imported here on first use; it imports numpy but never torch at import
time), with ``description``, ``needs_path`` (data.path required), ``num_classes`` (None: known once
loaded) and ``image_size`` (native pixels; None: any, e.g. generated at data.image_size). The
config layer validates `data.dataset` from `dataset_names()`, so a dataset registered in a user's
own file is accepted with no other edit.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from v1sweep.registry import Registry

META_KEYS = ("description", "needs_path", "num_classes", "image_size")


def registry() -> Registry:
    """The `DATASETS` registry, with the built-in datasets registered."""
    return importlib.import_module("v1sweep.data.datasets").DATASETS


def dataset_names() -> tuple[str, ...]:
    """Registered dataset names, in registration order."""
    return tuple(registry().names())


def meta(name: str) -> Mapping[str, Any]:
    """The metadata `name` was registered with; ValueError listing the valid names."""
    return registry().meta(name)


def needs_path(name: str) -> bool:
    """Whether the dataset is read from data.path (False: generated)."""
    return bool(meta(name)["needs_path"])


def num_classes(name: str) -> int | None:
    """The number of classes, None where only the files tell (imagefolder) or the name is unknown."""
    if name not in registry():
        return None
    value = meta(name).get("num_classes")
    return None if value is None else int(value)


def image_size(name: str) -> int | None:
    """The native image size in pixels, None where any size is produced or the files tell."""
    value = meta(name).get("image_size")
    return None if value is None else int(value)
