"""Decoding image files into uint8 arrays (thread pool) and the decoded-tensor cache.

A dataset is decoded once; later loads read one uncompressed ``.npz`` (a fraction of a second
for CIFAR-10). The cache key hashes the absolute source path, every source file's relative
path, size and mtime, the image size, and the subset, so editing, adding or touching a file
invalidates it. Writes are atomic (temp file + rename) and guarded by a file lock, so parallel
trials that start together decode once and the others wait and read the result.
"""
from __future__ import annotations

import errno
import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from v1sweep.errors import DatasetError
from v1sweep.io import atomic_write

CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    mtime_ns: int


def cache_root(cache_dir: str | None = None) -> Path:
    """`cache_dir`, else $V1SWEEP_CACHE, else ~/.cache/v1sweep."""
    base = cache_dir or os.environ.get("V1SWEEP_CACHE") or os.path.join("~", ".cache", "v1sweep")
    return Path(base).expanduser()


def stat_entry(path: str | Path) -> FileEntry:
    st = os.stat(path)
    return FileEntry(str(path), st.st_size, st.st_mtime_ns)


def scan_images(folder: Path) -> list[FileEntry]:
    """Image files under `folder` (recursive, sorted, hidden files and non-image files left out)."""
    found: list[FileEntry] = []
    stack = [str(folder)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
                    st = entry.stat()
                    found.append(FileEntry(entry.path, st.st_size, st.st_mtime_ns))
    found.sort(key=lambda e: e.path)
    return found


def fingerprint(root: Path, parts: Sequence[object], files: Iterable[FileEntry]) -> str:
    """A hex digest of the source: root, options, and (relative path, size, mtime) of every file."""
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}|{root}|{'|'.join(map(str, parts))}\n".encode())
    prefix = str(root).rstrip(os.sep) + os.sep
    lines = []
    for f in files:  # paths relative to the root when under it (cheap slicing, not os.path.relpath)
        rel = f.path[len(prefix):] if f.path.startswith(prefix) else f.path
        lines.append(f"{rel}\t{f.size}\t{f.mtime_ns}\n")
    h.update("".join(lines).encode())
    return h.hexdigest()


def short_hash(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8]


def remove_stale(folder: Path, family: str, keep: str) -> None:
    """Delete cache files of the same source and size whose key differs (the source changed)."""
    for p in folder.glob(f"{family}-*.npz"):
        if not p.name.startswith(f"{family}-{keep}"):
            for q in (p, Path(str(p) + ".lock")):
                try:
                    q.unlink()
                except OSError:
                    pass


def stratified_subset(labels: np.ndarray, n: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a class-balanced random subset of size `n` (None: keep all).

    Classes take turns (rank 0 of every class first, then rank 1, ...), each class in a seeded
    random order; a class that runs out leaves its turns to the others.
    """
    total = len(labels)
    if n is None or n >= total:
        return None
    rng = np.random.default_rng(seed)
    perm = rng.permutation(total)
    lab = np.asarray(labels)[perm]
    order = np.argsort(lab, kind="stable")
    sorted_lab = lab[order]
    starts = np.searchsorted(sorted_lab, sorted_lab, side="left")
    ranks = np.empty(total, dtype=np.int64)
    ranks[order] = np.arange(total) - starts
    pick = np.lexsort((np.arange(total), ranks))[:n]
    return np.sort(perm[pick])


def decode_image(path: str, size: int) -> np.ndarray:
    """One image file -> uint8 (3, size, size): RGB, centre-cropped to square, bilinear resize."""
    from PIL import Image

    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
            w, h = im.size
            if w != h:
                side = min(w, h)
                left, top = (w - side) // 2, (h - side) // 2
                im = im.crop((left, top, left + side, top + side))
            if im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image file disappeared while reading: {path}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise DatasetError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from None
    return arr.transpose(2, 0, 1)


def resize_array(images: np.ndarray, size: int, workers: int | None = None) -> np.ndarray:
    """Resize uint8 (N, 3, h, w) arrays with PIL bilinear (the same filter as `decode_image`)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    from PIL import Image

    def one(i: int) -> np.ndarray:
        im = Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)))
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR)).transpose(2, 0, 1)

    out = np.empty((len(images), 3, size, size), dtype=np.uint8)
    _parallel(len(images), lambda i: out.__setitem__(i, one(i)), workers)
    return out


def decode_files(paths: Sequence[str], size: int, workers: int | None = None) -> np.ndarray:
    """Decode image files in a thread pool (PIL releases the GIL) into uint8 (N, 3, size, size)."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode_image(paths[i], size)

    _parallel(len(paths), one, workers)
    return out


def _parallel(n: int, fn: Callable[[int], None], workers: int | None) -> None:
    """Run fn(i) for i < n in chunks over a thread pool; the first error is raised."""
    if n == 0:
        return
    workers = workers or min(16, os.cpu_count() or 1)
    chunk = max(1, min(512, -(-n // (workers * 4))))

    def run(start: int) -> None:
        for i in range(start, min(start + chunk, n)):
            fn(i)

    if workers == 1 or n <= chunk:
        for start in range(0, n, chunk):
            run(start)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="v1sweep-decode") as pool:
        futures = [pool.submit(run, s) for s in range(0, n, chunk)]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


# ---------------------------------------------------------------------------------------------
# The cache file: one .npz with train/test images and labels and the class names.

_KEYS = ("train_images", "train_labels", "test_images", "test_labels", "classes")


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache file, or None when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if not all(k in z.files for k in _KEYS):
                return None
            return {k: z[k] for k in _KEYS}
    except Exception:  # a truncated or foreign file: treat as a miss and rewrite it
        return None


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (`v1sweep.io.atomic_write`: a temp file in the same folder, then rename).
    Failures only warn."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]  # numpy's stub: **kwds
    except OSError as exc:
        # The cache only saves decoding time: a full disk is named, and the trial goes on without it.
        reason = f"No space left on device: {path.parent}" if exc.errno == errno.ENOSPC else str(exc)
        warnings.warn(f"could not write the dataset cache {path}: {reason}; continuing without it",
                      stacklevel=3)


def lock_for(path: Path):
    """An inter-process lock next to the cache file (a no-op context when the folder is unwritable)."""
    import contextlib

    from filelock import FileLock

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path) + ".lock")
    except OSError:
        return contextlib.nullcontext()
