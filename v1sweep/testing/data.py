"""The contract every dataset keeps: `check_dataset(name)` and `DatasetContract`.

A dataset registered anywhere (``@DATASETS.register(...)`` in `v1sweep.data.datasets` or a user's
own file) must carry complete metadata and be accepted by a trial config. One that needs no path
must load a tiny instance: uint8 (N, 3, S, S) images at data.image_size, int64 labels below its
number of classes, the same images for the same seed. One that reads data.path must say so with a
clear error when the path is missing.
"""
from __future__ import annotations

from typing import Any, Sequence

from v1sweep.data import catalog

TINY = {"image_size": 16, "train_size": 20, "test_size": 10, "seed": 0}


def check_metadata(name: str) -> None:
    """AssertionError unless `name`'s metadata is complete and well typed."""
    meta = catalog.meta(name)
    missing = [key for key in catalog.META_KEYS if key not in meta]
    assert not missing, f"{name}: metadata {', '.join(missing)} missing"
    assert isinstance(meta["description"], str) and meta["description"].strip(), f"{name}: no description"
    assert isinstance(meta["needs_path"], bool), f"{name}: needs_path must be true or false"
    for key in ("num_classes", "image_size"):
        value = meta[key]
        assert value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0), \
            f"{name}: {key} must be None or a positive integer, got {value!r}"


def check_needs_path(name: str) -> None:
    """AssertionError unless loading `name` without data.path fails with an error naming data.path."""
    from v1sweep.config.trial import DataConfig, from_dict
    from v1sweep.data.datasets import load_dataset
    from v1sweep.errors import ConfigError

    for attempt in (lambda: from_dict({"data": {"dataset": name}}), lambda: load_dataset(DataConfig(dataset=name))):
        try:
            attempt()
        except ConfigError as exc:
            assert "data.path" in str(exc), f"{name}: the error without a path does not name data.path: {exc}"
        else:
            raise AssertionError(f"{name}: needs_path is true but it loaded without data.path")


def check_tiny(name: str, **data: Any) -> None:
    """AssertionError unless a tiny instance of `name` (no path) loads as its metadata says."""
    from v1sweep.config.trial import from_dict
    from v1sweep.data.datasets import load_dataset

    config = from_dict({"data": {"dataset": name, **TINY, **data}, "frontend": {"enabled": False}})
    size = config.data.image_size
    ds = load_dataset(config.data)
    for split in ("train", "test"):
        x, y = getattr(ds, f"{split}_images"), getattr(ds, f"{split}_labels")
        assert str(x.dtype) == "torch.uint8" and tuple(x.shape[1:]) == (3, size, size), \
            f"{name}: {split} images {x.dtype} {tuple(x.shape)}, expected uint8 (N, 3, {size}, {size})"
        assert str(y.dtype) == "torch.int64" and y.shape == (x.shape[0],), f"{name}: {split} labels"
        assert len(y) and int(y.min()) >= 0 and int(y.max()) < ds.num_classes, f"{name}: {split} labels out of range"
    expected = catalog.num_classes(name)
    assert expected is None or ds.num_classes == expected, f"{name}: {ds.num_classes} classes, metadata says {expected}"
    assert config.num_classes == expected, f"{name}: TrialConfig.num_classes {config.num_classes} != {expected}"
    again = load_dataset(config.data)
    assert bool((again.train_images == ds.train_images).all()), f"{name}: same seed, other images"


def check_dataset(name: str) -> None:
    """Every check above that applies; raises AssertionError (or the loader's error) on a broken dataset."""
    check_metadata(name)
    if catalog.needs_path(name):
        check_needs_path(name)
    else:
        check_tiny(name)


class DatasetContract:
    """Subclass in a test module to run the contract on every registered dataset (or `names`)."""

    names: Sequence[str] | None = None

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "dataset" in metafunc.fixturenames:
            names = list(self.names or catalog.dataset_names())
            metafunc.parametrize("dataset", names, ids=names)

    def test_metadata(self, dataset: str) -> None:
        check_metadata(dataset)

    def test_loads_or_asks_for_a_path(self, dataset: str) -> None:
        if catalog.needs_path(dataset):
            check_needs_path(dataset)
        else:
            check_tiny(dataset)
