"""Corrupted test sets written once per sweep, in the CIFAR-10-C layout, shared by every trial.

A set lives in `<cache_root>/corruptions/<key>/`:
- `<name>.npy`: uint8 (5 * N, H, W, 3); block s - 1 (rows (s-1)*N .. s*N) holds severity s, images
  in test-set order. Severities not requested yet are zero blocks until a later call fills them.
- `labels.npy`: the N labels tiled 5 times, uint8 (int64 when a label exceeds 255).
- `manifest.json`, written last after every change: the key's ingredients and, per corruption, the
  severities present and the file size. Only what the manifest lists counts as present.

The key hashes the images' bytes, the labels, their dataset indices, the seed, the image size, the
parameter table, the frost texture source, the storage format (`storage.py`: uint8 truncation, plus
a JPEG quality-85 round trip for the Tiny ImageNet table, as published; or rounding) and
`CODE_VERSION`; the requested corruptions and severities are not part of it, so a later call that
asks for more fills in the same set. A file lock serialises writers: a concurrent trial waits and
then finds the set ready. The lock file is `.lock` in a cached set's folder; for a set written
into a folder of the user's (`exact_dir`) it lives in the system's temporary folder, so the
output holds only the set. Arrays are
written to a temporary file, flushed and renamed into place before the manifest names them, so a
set killed mid-write leaves a stray temporary (removed next time) and a manifest without that
corruption, which is then generated again.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from v1sweep.corruptions.catalog import registered
from v1sweep.corruptions.params import table_for
from v1sweep.corruptions.suite import apply, check_name, check_severity
from v1sweep.corruptions.storage import storage_format, store_uint8
from v1sweep.corruptions.textures import PHOTOS, resolve_frost
from v1sweep.io import temp_path, write_json

CODE_VERSION = 2  # bump whenever a corruption's output changes, so old sets are not reused
FORMAT = "v1sweep-corruptions/1"
MANIFEST = "manifest.json"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $V1SWEEP_CACHE, else ~/.cache/v1sweep."""
    base = cache_dir or os.environ.get("V1SWEEP_CACHE") or os.path.join("~", ".cache", "v1sweep")
    return Path(base).expanduser()


def _as_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"images must be uint8 (N, 3, H, W), got {arr.dtype} {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def set_key(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, seed: int, table: str,
            frost: str = "published", storage: str = "published") -> dict:
    """The ingredients of a set's identity and their hash (`key`). `frost` is the `eval.frost`
    choice; the key holds the texture source actually used (`resolve_frost`)."""
    h = hashlib.sha256()
    for arr in (images, labels.astype(np.int64), indices.astype(np.int64)):
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    parts = {"data_sha256": h.hexdigest(), "n": int(images.shape[0]), "height": int(images.shape[2]),
             "width": int(images.shape[3]), "seed": int(seed), "table": table, "frost": resolve_frost(frost),
             "storage": storage_format(table, storage), "code_version": CODE_VERSION, "format": FORMAT}
    parts["key"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]
    return parts


def read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def _no_space(path: Path, tmp: Path | None, exc: OSError) -> OSError:
    """A full disk named by the file being written (the trial reports
    ``No space left on device: PATH``); the partial temporary is removed."""
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    if exc.errno == errno.ENOSPC:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    return exc


def _atomic_json(path: Path, data: dict) -> None:
    try:
        write_json(path, data, indent=1, sort_keys=True, newline=False)
    except OSError as exc:
        raise _no_space(path, None, exc) from None


def _entry_ok(folder: Path, entry: object, filename: str) -> bool:
    """The manifest's entry matches the file on disk (present, same size)."""
    if not isinstance(entry, dict):
        return False
    try:
        return (folder / filename).stat().st_size == entry.get("bytes")
    except OSError:
        return False


def _labels_array(labels: np.ndarray) -> np.ndarray:
    tiled = np.tile(labels.astype(np.int64), 5)
    return tiled.astype(np.uint8) if (len(tiled) == 0 or (tiled.min() >= 0 and tiled.max() < 256)) else tiled


def _write_npy(path: Path, fill: Callable[[np.ndarray], None], shape: tuple, dtype: np.dtype) -> int:
    """Write an .npy through a temporary file and a rename; returns the file size."""
    tmp = temp_path(path)
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        _reserve(tmp)
    except OSError as exc:
        raise _no_space(path, tmp, exc) from None
    fill(arr)
    arr.flush()
    del arr
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def _reserve(tmp: Path) -> None:
    """Allocate the memory-mapped file's blocks now: on a full disk a sparse file's first write
    through the map kills the process with SIGBUS; allocating first raises ENOSPC instead."""
    size = tmp.stat().st_size
    with open(tmp, "rb+") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise
            # a filesystem without fallocate (EOPNOTSUPP, EINVAL): write the zeros instead
            chunk = b"\0" * (1 << 20)
            head = len(f.read(4096))  # the .npy header and the first (still zero) bytes
            left = size - head
            while left > 0:
                left -= f.write(chunk[:min(left, len(chunk))])
            f.flush()


def _lock_path(folder: Path, exact_dir: bool) -> Path:
    """The writers' lock: `.lock` inside a cached set's folder; for a folder of the user's, a file
    in the temporary folder named after its absolute path (nothing is left in the output)."""
    if not exact_dir:
        return folder / ".lock"
    import tempfile

    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:20]
    locks = Path(tempfile.gettempdir()) / "v1sweep-locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"corrupt-{digest}.lock"


def default_batch(height: int, width: int) -> int:
    return max(1, (1 << 21) // (height * width))


def materialize(images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray,
                corruptions: Sequence[str], severities: Sequence[int], seed: int = 0,
                cache_dir: str | os.PathLike | None = None, *, indices: Sequence[int] | np.ndarray | None = None,
                table: str | None = None, device: str | torch.device = "cpu", batch_size: int | None = None,
                exact_dir: bool = False, log: Callable[[str], None] | None = None,
                frost: str = "published", storage: str = "published") -> Path:
    """Generate (or find) the corrupted set of uint8 (N, 3, H, W) `images`; returns its folder.

    `indices` are the images' dataset indices (default 0..N-1; they fix each image's randomness,
    so a subset corrupts exactly as in the full set). The set lands in
    `<cache_root(cache_dir)>/corruptions/<key>`, or in `cache_dir` itself with `exact_dir=True`
    (a different set already there is replaced). `frost` ('published' | 'procedural') and
    `storage` ('published' | 'lossless') are `eval.frost` and `eval.storage`; the manifest records
    the frost source used and the storage format.
    """
    from filelock import FileLock

    from v1sweep.corruptions.memory import keep_freed_memory

    keep_freed_memory()  # many short-lived tensors: reuse freed memory instead of page-faulting it in
    imgs = _as_numpy_images(images)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    n, _, h, w = imgs.shape
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got {lab.dtype} {tuple(lab.shape)}")
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
    if idx.shape != (n,):
        raise ValueError(f"indices must hold {n} dataset indices, got shape {idx.shape}")
    names = [check_name(c) for c in corruptions]
    sevs = sorted({check_severity(s) for s in severities})
    table = table_for(max(h, w), table)
    parts = set_key(imgs, lab, idx, seed, table, frost, storage)
    if exact_dir and cache_dir is None:
        raise TypeError("exact_dir=True needs a cache_dir (the folder to write the set into)")
    folder = Path(cache_dir) if exact_dir and cache_dir is not None else \
        cache_root(cache_dir) / "corruptions" / parts["key"]
    folder.mkdir(parents=True, exist_ok=True)
    if frost == "published" and parts["frost"] != PHOTOS and log is not None:
        log(f"WARNING: frost falls back to {parts['frost']} textures (published photographs missing)")
    say = log or (lambda msg: None)
    batch = batch_size or default_batch(h, w)

    with FileLock(str(_lock_path(folder, exact_dir))):
        for stray in folder.glob("*.tmp-*"):  # left by a writer that was killed
            stray.unlink(missing_ok=True)
        manifest = read_manifest(folder)
        if manifest is None or manifest.get("key") != parts["key"]:
            if manifest is not None:  # exact_dir holding another set: drop its files
                for name in list(manifest.get("corruptions", {})) + ["labels"]:
                    (folder / f"{name}.npy").unlink(missing_ok=True)
            manifest = {**parts, "corruptions": {}}
        if not _entry_ok(folder, manifest.get("labels"), "labels.npy"):
            tiled = _labels_array(lab)
            size = _write_npy(folder / "labels.npy", lambda a: a.__setitem__(slice(None), tiled),
                              tiled.shape, tiled.dtype)
            manifest["labels"] = {"bytes": size}
            _atomic_json(folder / MANIFEST, manifest)
        for name in names:
            entry = manifest["corruptions"].get(name)
            have = set(entry.get("severities", [])) if _entry_ok(folder, entry, f"{name}.npy") else set()
            missing = [s for s in sevs if s not in have]
            if not missing:
                continue
            old = np.load(folder / f"{name}.npy", mmap_mode="r") if have else None

            def fill(arr: np.ndarray, name: str = name, missing: list = missing, old=old) -> None:
                for s in have:
                    arr[(s - 1) * n:s * n] = old[(s - 1) * n:s * n]
                for s in missing:
                    say(f"corrupting {n} images: {name} severity {s}")
                    for start in range(0, n, batch):
                        stop = min(n, start + batch)
                        x = torch.from_numpy(imgs[start:stop]).to(device).float().div_(255)
                        y = apply(x, name, s, seed=seed, indices=torch.from_numpy(idx[start:stop]), table=table,
                                  frost=frost)
                        y8 = store_uint8(y, table, storage).permute(0, 2, 3, 1).numpy()
                        arr[(s - 1) * n + start:(s - 1) * n + stop] = y8

            size = _write_npy(folder / f"{name}.npy", fill, (5 * n, h, w, 3), np.dtype(np.uint8))
            del old
            manifest["corruptions"][name] = {"severities": sorted(have | set(missing)), "bytes": size}
            _atomic_json(folder / MANIFEST, manifest)
    return folder


def available_pairs(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(name, severity) pairs a materialized set holds, in catalog order."""
    manifest = read_manifest(Path(folder)) or {"corruptions": {}}
    return [(name, s) for name in registered() if name in manifest["corruptions"]
            for s in manifest["corruptions"][name]["severities"]]
