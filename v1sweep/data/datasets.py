"""Dataset registry: `synthetic` (embedded), `cifar10`, `tinyimagenet`, `imagefolder`.

`load_dataset(config.data)` returns a `Dataset` of resident uint8 tensors. File-based datasets
are decoded once (thread pool), resized to `image_size` when they differ, and cached (see
`v1sweep.data.cache`). `train_size` / `test_size` pick deterministic, class-balanced subsets
(seeded by `seed`; null = all; a size above the available count keeps all); only the chosen
files are decoded. For `synthetic` they are the numbers of images generated.

Layout problems -- a missing path, an empty class folder, a wrong layout, an unreadable
image -- raise `DatasetError` naming the file or folder and what was expected; nothing is
skipped silently.
"""
from __future__ import annotations

import contextlib
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from v1sweep.data import cache as _cache
from v1sweep.errors import ConfigError, DatasetError
from v1sweep.registry import Registry, lazy_module

if TYPE_CHECKING:
    import torch
else:  # imported on first use: `v1sweep.data.catalog` reads the registry without torch
    torch = lazy_module("torch")

# name -> loader(DataConfig) -> Dataset, registered with its metadata (see `v1sweep.data.catalog`):
# description, needs_path, num_classes (None: known once loaded), image_size (native px; None: any).
DATASETS: Registry[Callable[[Any], "Dataset"]] = Registry("dataset", required=("description", "needs_path"))
SYNTHETIC_DEFAULT_SIZES = (2000, 500)


@dataclass
class Dataset:
    """Decoded train and test splits: uint8 images (N, 3, H, W), int64 labels, class names."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    name: str = ""
    source: str = ""  # the folder it was read from, or how it was generated

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"{split}_images must be uint8 (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split}_labels must be int64 ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])


def list_datasets() -> list[str]:
    return DATASETS.names()


def load_dataset(config: Any) -> Dataset:
    """Load the dataset a `DataConfig` names (any object with the same attributes works)."""
    name = getattr(config, "dataset", "synthetic")
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid: {', '.join(sorted(DATASETS.names()))}",
                          key="data.dataset")
    return DATASETS.get(name)(config)


# ---------------------------------------------------------------------------------------------
# synthetic

@DATASETS.register("synthetic", description="procedural shapes filled with oriented gratings (embedded; train_size, test_size generated)",
                   needs_path=False, num_classes=10, image_size=None)
def _load_synthetic(config: Any) -> Dataset:
    from v1sweep.data import synthetic as _synthetic

    size = int(getattr(config, "image_size", 32))
    if size < 8:  # the range of data.image_size (v1sweep.config): checked there, with the file
        raise ConfigError(f"the synthetic dataset needs image_size >= 8, got {size}", key="data.image_size")
    seed = int(getattr(config, "seed", 0))
    n_train = getattr(config, "train_size", None) or SYNTHETIC_DEFAULT_SIZES[0]
    n_test = getattr(config, "test_size", None) or SYNTHETIC_DEFAULT_SIZES[1]
    xtr, ytr = _synthetic.generate(int(n_train), size, seed, "train")
    xte, yte = _synthetic.generate(int(n_test), size, seed, "test")
    return Dataset(xtr, ytr, xte, yte, list(_synthetic.CLASSES), name="synthetic",
                   source=f"synthetic(seed={seed})")


# ---------------------------------------------------------------------------------------------
# file-based datasets: a listing (files + labels per split), then the shared decode/cache path

@dataclass
class _Listing:
    kind: str                      # layout tag, part of the cache key
    root: Path
    classes: list[str]
    train_files: list[_cache.FileEntry]
    train_labels: np.ndarray
    test_files: list[_cache.FileEntry]
    test_labels: np.ndarray
    extra_files: list[_cache.FileEntry] = field(default_factory=list)  # annotations etc., keyed too


def _root_of(config: Any, name: str) -> Path:
    raw = getattr(config, "path", None)
    if not raw:
        raise ConfigError(f"dataset {name!r} needs a path; set data.path", key="data.path")
    root = Path(os.path.expanduser(str(raw))).resolve()
    if not root.exists():
        raise DatasetError(f"{name}: path does not exist: {root}")
    if not root.is_dir():
        raise DatasetError(f"{name}: expected a folder, got a file: {root}")
    return root


def _subdirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _class_images(folder: Path, what: str) -> list[_cache.FileEntry]:
    files = _cache.scan_images(folder)
    if not files:
        raise DatasetError(f"{what}: empty class folder {folder} (expected image files: "
                           f"{', '.join(_cache.IMAGE_EXTENSIONS)})")
    return files


def _imagefolder_listing(root: Path, name: str, kind: str) -> _Listing:
    """`root/train/<class>/*` and `root/test/<class>/*` (or `val/`); classes = sorted train folders."""
    train_dir = root / "train"
    test_dir = next((root / s for s in ("test", "val") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        have = ", ".join(_subdirs(root)) or "no sub-folders"
        raise DatasetError(f"{name}: wrong layout in {root}: expected train/<class>/*.jpg and "
                           f"test/<class>/*.jpg (or val/<class>/*.jpg); found {have}")
    classes = _subdirs(train_dir)
    if not classes:
        raise DatasetError(f"{name}: no class folders in {train_dir} (expected train/<class>/<image>)")
    splits = []
    for split_dir in (train_dir, test_dir):
        names = _subdirs(split_dir)
        unknown = sorted(set(names) - set(classes))
        if unknown:
            raise DatasetError(f"{name}: {split_dir} has class folders not in {train_dir}: {', '.join(unknown[:5])}")
        if not names:
            raise DatasetError(f"{name}: no class folders in {split_dir} (expected {split_dir.name}/<class>/<image>)")
        files: list[_cache.FileEntry] = []
        labels: list[int] = []
        for c in names:
            found = _class_images(split_dir / c, name)
            files += found
            labels += [classes.index(c)] * len(found)
        splits.append((files, np.asarray(labels, dtype=np.int64)))
    (trf, trl), (tef, tel) = splits
    return _Listing(kind, root, classes, trf, trl, tef, tel)


def _load_listing(listing: _Listing, config: Any, name: str,
                  decode: Callable[[str, np.ndarray | None, int], np.ndarray] | None = None,
                  use_cache: bool = True) -> Dataset:
    """Subset, decode (or read the cache), and wrap a listing into a `Dataset`."""
    from v1sweep.data import synthetic as _synthetic

    size = int(getattr(config, "image_size", 32))
    seed = int(getattr(config, "seed", 0))
    n_train, n_test = getattr(config, "train_size", None), getattr(config, "test_size", None)
    idx = {"train": _cache.stratified_subset(listing.train_labels, n_train, _synthetic.derive_seed(seed, 0)),
           "test": _cache.stratified_subset(listing.test_labels, n_test, _synthetic.derive_seed(seed, 1))}
    files = {"train": listing.train_files, "test": listing.test_files}
    labels = {"train": listing.train_labels, "test": listing.test_labels}
    key = _cache.fingerprint(listing.root, (name, listing.kind, size, "|".join(listing.classes)),
                             [*listing.train_files, *listing.test_files, *listing.extra_files])
    folder = _cache.cache_root(getattr(config, "cache_dir", None)) / "datasets"
    family = f"{name}-{size}px-{_cache.short_hash(listing.root, listing.kind)}"  # same source and size
    full_path = folder / f"{family}-{key[:16]}.npz"
    subset = any(i is not None for i in idx.values())
    sub_tag = f"{'all' if idx['train'] is None else len(idx['train'])}-" \
              f"{'all' if idx['test'] is None else len(idx['test'])}-s{seed}"
    path = folder / f"{family}-{key[:16]}-{sub_tag}.npz" if subset else full_path

    def pick(arr: np.ndarray, split: str) -> np.ndarray:
        return arr if idx[split] is None else arr[idx[split]]

    expected = {s: pick(labels[s], s) for s in ("train", "test")}

    def valid(arrays: dict[str, np.ndarray] | None, full: bool) -> bool:
        if arrays is None or list(arrays["classes"]) != listing.classes:
            return False
        return all(np.array_equal(arrays[f"{s}_labels"], labels[s] if full else expected[s])
                   and arrays[f"{s}_images"].shape[1:] == (3, size, size) for s in ("train", "test"))

    with _cache.lock_for(path) if use_cache else contextlib.nullcontext():
        arrays = _cache.read_cache(path) if use_cache else None
        if not valid(arrays, full=not subset):
            arrays = None
            if subset and use_cache:
                full = _cache.read_cache(full_path)
                if full is not None and valid(full, full=True):
                    arrays = {**{f"{s}_images": pick(full[f"{s}_images"], s) for s in ("train", "test")},
                              **{f"{s}_labels": expected[s] for s in ("train", "test")},
                              "classes": full["classes"]}
            if arrays is None:
                arrays = {"classes": np.asarray(listing.classes, dtype=str)}
                for s in ("train", "test"):
                    if decode is None:
                        paths = [f.path for f in files[s]]
                        picked = idx[s]
                        chosen = paths if picked is None else [paths[i] for i in picked]
                        arrays[f"{s}_images"] = _cache.decode_files(chosen, size)
                    else:
                        arrays[f"{s}_images"] = decode(s, idx[s], size)
                    arrays[f"{s}_labels"] = expected[s]
            if use_cache:
                _cache.write_cache(path, arrays)
                _cache.remove_stale(folder, family, keep=key[:16])
    assert arrays is not None  # read, cut from the full cache or decoded above
    return Dataset(torch.from_numpy(np.ascontiguousarray(arrays["train_images"])),
                   torch.from_numpy(arrays["train_labels"].astype(np.int64)),
                   torch.from_numpy(np.ascontiguousarray(arrays["test_images"])),
                   torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                   [str(c) for c in arrays["classes"]], name=name, source=str(listing.root))


# ---------------------------------------------------------------------------------------------
# cifar10: pickled batches or an ImageFolder JPEG tree

_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST = ("test_batch",)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only numpy arrays and plain containers (the CIFAR batches), never arbitrary code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy.core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module.replace("numpy.core.", "numpy._core."), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DatasetError(f"cifar10: missing batch file {path} (expected the cifar-10-batches-py "
                           f"folder: data_batch_1..5, test_batch, batches.meta)") from None
    except Exception as exc:
        raise DatasetError(f"cifar10: cannot read pickled batch {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DatasetError(f"cifar10: {path} does not hold a dict (got {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_pickle_listing(folder: Path) -> tuple[_Listing, Callable]:
    entries = {}
    for fname in (*_CIFAR_TRAIN, *_CIFAR_TEST, "batches.meta"):
        p = folder / fname
        if not p.is_file():
            raise DatasetError(f"cifar10: missing batch file {p} (expected the cifar-10-batches-py "
                               f"folder: data_batch_1..5, test_batch, batches.meta)")
        entries[fname] = _cache.stat_entry(p)
    meta = _read_pickle(folder / "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, (list, tuple)) or not names:
        raise DatasetError(f"cifar10: {folder / 'batches.meta'} has no 'label_names' list")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, fnames in (("train", _CIFAR_TRAIN), ("test", _CIFAR_TEST)):
        xs, ys = [], []
        for fname in fnames:
            batch = _read_pickle(folder / fname)
            x = np.asarray(batch.get("data"))
            y = np.asarray(batch.get("labels", batch.get("fine_labels")), dtype=np.int64)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (x.shape[0],):
                raise DatasetError(f"cifar10: {folder / fname} must hold 'data' uint8 (N, 3072) and "
                                   f"'labels' (N,); got data {x.dtype} {x.shape}, labels {y.shape}")
            if y.size and (y.min() < 0 or y.max() >= len(classes)):
                raise DatasetError(f"cifar10: {folder / fname} has labels outside 0..{len(classes) - 1}")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        data[split] = (np.concatenate(xs), np.concatenate(ys))
    listing = _Listing("cifar-pickle", folder, classes,
                       [entries[f] for f in _CIFAR_TRAIN], data["train"][1],
                       [entries[f] for f in _CIFAR_TEST], data["test"][1])

    def decode(split: str, idx: np.ndarray | None, size: int) -> np.ndarray:
        x = data[split][0]
        return _cache.resize_array(x if idx is None else x[idx], size)

    return listing, decode


@DATASETS.register("cifar10", description="CIFAR-10: pickled batches (cifar-10-batches-py) or an ImageFolder tree",
                   needs_path=True, num_classes=10, image_size=32)
def _load_cifar10(config: Any) -> Dataset:
    root = _root_of(config, "cifar10")
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / "data_batch_1").exists() or (folder / "batches.meta").exists():
            listing, decode = _cifar_pickle_listing(folder)
            # 32 px needs no decoding: reading the pickles is as fast as reading a cache
            return _load_listing(listing, config, "cifar10", decode,
                                 use_cache=int(getattr(config, "image_size", 32)) != 32)
    for folder in (root / "cifar10", root):
        if (folder / "train").is_dir():
            return _load_listing(_imagefolder_listing(folder, "cifar10", "imagefolder"), config, "cifar10")
    have = ", ".join(_subdirs(root)) or "no sub-folders"
    raise DatasetError(f"cifar10: wrong layout in {root}: expected cifar-10-batches-py/ (pickled batches), "
                       f"cifar10/{{train,test}}/<class>/*.jpg, or {{train,test}}/<class>/*.jpg; found {have}")


# ---------------------------------------------------------------------------------------------
# tinyimagenet: the official layout

def _tiny_listing(root: Path) -> _Listing:
    wnids_path = root / "wnids.txt"
    wnids = sorted({w.strip() for w in wnids_path.read_text().splitlines() if w.strip()})
    if not wnids:
        raise DatasetError(f"tinyimagenet: {wnids_path} lists no class ids")
    train_files: list[_cache.FileEntry] = []
    train_labels: list[int] = []
    for k, wnid in enumerate(wnids):
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise DatasetError(f"tinyimagenet: missing folder {folder} for class {wnid} listed in "
                               f"{wnids_path} (expected train/<wnid>/images/*.JPEG)")
        found = _class_images(folder, "tinyimagenet")
        train_files += found
        train_labels += [k] * len(found)
    val_dir = root / "val"
    ann_path = val_dir / "val_annotations.txt"
    index = {w: k for k, w in enumerate(wnids)}
    test_files: list[_cache.FileEntry] = []
    test_labels: list[int] = []
    if ann_path.is_file():
        images = val_dir / "images"
        if not images.is_dir():
            raise DatasetError(f"tinyimagenet: missing folder {images} (expected val/images/*.JPEG "
                               f"next to {ann_path})")
        on_disk = {os.path.basename(f.path): f for f in _cache.scan_images(images)}
        seen = set()
        for lineno, line in enumerate(ann_path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            cols = line.split("\t") if "\t" in line else line.split()
            if len(cols) < 2:
                raise DatasetError(f"tinyimagenet: {ann_path} line {lineno}: expected "
                                   f"'<file>\\t<wnid>\\t...', got {line!r}")
            fname, wnid = cols[0], cols[1]
            if wnid not in index:
                raise DatasetError(f"tinyimagenet: {ann_path} line {lineno}: class {wnid!r} is not in {wnids_path}")
            if fname not in on_disk:
                raise DatasetError(f"tinyimagenet: {ann_path} line {lineno}: image {images / fname} not found")
            seen.add(fname)
            test_files.append(on_disk[fname])
            test_labels.append(index[wnid])
        missing = sorted(set(on_disk) - seen)
        if missing:
            raise DatasetError(f"tinyimagenet: {images / missing[0]} (and {len(missing) - 1} more) has no "
                               f"line in {ann_path}")
        extra = [_cache.stat_entry(ann_path), _cache.stat_entry(wnids_path)]
    elif val_dir.is_dir() and set(_subdirs(val_dir)) & set(wnids):
        # a re-organised copy: val/<wnid>/[images/]*.JPEG
        for wnid in _subdirs(val_dir):
            if wnid not in index:
                raise DatasetError(f"tinyimagenet: {val_dir / wnid} is not a class listed in {wnids_path}")
            found = _class_images(val_dir / wnid, "tinyimagenet")
            test_files += found
            test_labels += [index[wnid]] * len(found)
        extra = [_cache.stat_entry(wnids_path)]
    else:
        raise DatasetError(f"tinyimagenet: missing {ann_path} (expected the official layout: "
                           f"val/images/*.JPEG + val/val_annotations.txt)")
    if not test_files:
        raise DatasetError(f"tinyimagenet: no validation images in {val_dir}")
    order = np.argsort([f.path for f in test_files], kind="stable")
    test_files = [test_files[i] for i in order]
    return _Listing("tiny-official", root, wnids, train_files, np.asarray(train_labels, dtype=np.int64),
                    test_files, np.asarray(test_labels, dtype=np.int64)[order], extra)


@DATASETS.register("tinyimagenet", description="Tiny ImageNet in its official layout (wnids.txt, "
                   "val_annotations.txt)", needs_path=True, num_classes=200, image_size=64)
def _load_tinyimagenet(config: Any) -> Dataset:
    root = _root_of(config, "tinyimagenet")
    for folder in (root, root / "tiny-imagenet-200"):
        if (folder / "wnids.txt").is_file():
            return _load_listing(_tiny_listing(folder), config, "tinyimagenet")
    have = ", ".join(sorted(os.listdir(root))[:10]) or "nothing"
    raise DatasetError(f"tinyimagenet: wrong layout in {root}: expected wnids.txt, train/<wnid>/images/*.JPEG, "
                       f"val/images/*.JPEG and val/val_annotations.txt (or a tiny-imagenet-200/ folder "
                       f"holding them); found {have}")


# ---------------------------------------------------------------------------------------------
# imagefolder: any train/ + test/ (or val/) tree

@DATASETS.register("imagefolder", description="any train/<class>/* + test/<class>/* (or val/) image tree",
                   needs_path=True, num_classes=None, image_size=None)
def _load_imagefolder(config: Any) -> Dataset:
    root = _root_of(config, "imagefolder")
    return _load_listing(_imagefolder_listing(root, "imagefolder", "imagefolder"), config, "imagefolder")


def describe(dataset: Dataset) -> str:
    """One line: name, sizes, classes, image size."""
    return (f"{dataset.name or 'dataset'}: {len(dataset.train_labels)} train / {len(dataset.test_labels)} test, "
            f"{dataset.num_classes} classes, {dataset.image_size} px")


__all__: Sequence[str] = ("Dataset", "DATASETS", "load_dataset", "list_datasets", "describe")
