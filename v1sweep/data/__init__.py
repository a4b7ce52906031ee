"""Datasets (a registry with an embedded synthetic default) and the on-device batch loader.

`load_dataset(config.data)` -> `Dataset` of resident uint8 tensors; `BatchLoader` yields
normalised float batches on the training device with `Augment` (the study's random affine +
horizontal flip) applied there. Imports only torch, numpy and PIL (never ray/mlflow/optuna).
"""
from __future__ import annotations

from v1sweep.data.datasets import DATASETS, Dataset, describe, list_datasets, load_dataset
from v1sweep.data.loader import Augment, BatchLoader, normalize

__all__ = ["DATASETS", "Augment", "BatchLoader", "Dataset", "describe", "list_datasets", "load_dataset",
           "normalize"]
