"""Datasets (a registry with an embedded synthetic default) and the on-device batch loader.

`load_dataset(config.data)` -> `Dataset` of resident uint8 tensors; `BatchLoader` yields
normalised float batches on the training device with `Augment` (the study's random affine +
horizontal flip) applied there. Imports only torch, numpy and PIL (never ray/mlflow/optuna), each
on first use: `v1sweep.data.catalog` (what the config layer reads) stays torch-free.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from v1sweep.data.datasets import DATASETS, Dataset, describe, list_datasets, load_dataset
    from v1sweep.data.loader import Augment, BatchLoader, normalize

_LAZY = {"DATASETS": "datasets", "Dataset": "datasets", "describe": "datasets", "list_datasets": "datasets",
         "load_dataset": "datasets", "Augment": "loader", "BatchLoader": "loader", "normalize": "loader"}

__all__ = ["DATASETS", "Augment", "BatchLoader", "Dataset", "describe", "list_datasets", "load_dataset",
           "normalize"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"v1sweep.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'v1sweep.data' has no attribute {name!r}")
