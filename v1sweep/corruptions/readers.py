"""Evaluation sources of corrupted test sets: generated (materialized), CIFAR-10-C, Tiny-ImageNet-C.

Every source implements the protocol of docs/architecture.md:
`pairs() -> list[(name, severity)]` and `load(name, severity) -> (uint8 (N, 3, H, W), int64 (N,))`.
`.npy` sets are memory-mapped; `load` copies only the requested severity block (and subset).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, SEVERITIES
from v1sweep.errors import DatasetError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


def subset_indices(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """A deterministic, sorted subset of range(n) of size max_images (all when None or >= n)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    rng = np.random.default_rng([int(seed), 0x5E7])
    return np.sort(rng.choice(n, size=int(max_images), replace=False))


def _resize_u8(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """PIL bilinear resize of uint8 (N, 3, h, w) to size x size (the data loaders' filter)."""
    if size is None or (images.shape[-2] == size and images.shape[-1] == size):
        return images
    from PIL import Image

    out = np.empty((images.shape[0], size, size, 3), dtype=np.uint8)
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        out[i] = np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((size, size), Image.Resampling.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _check_pairs(corruptions: Sequence[str] | None, severities: Sequence[int] | None) -> tuple[list, list]:
    from v1sweep.corruptions.suite import check_name, check_severity

    names = [check_name(c) for c in (corruptions if corruptions is not None else BENCHMARK_CORRUPTIONS)]
    sevs = [check_severity(int(s)) for s in (severities if severities is not None else SEVERITIES)]
    return names, sevs


class NpySource:
    """Arrays in the CIFAR-10-C layout: `<name>.npy` (5N, H, W, 3) uint8 + `labels.npy` (5N,)."""

    def __init__(self, path: str | os.PathLike, corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, *, subset: np.ndarray | None = None,
                 image_size: int | None = None) -> None:
        self.path = Path(path)
        self.corruptions, self.severities = _check_pairs(corruptions, severities)
        required = [self.path / "labels.npy"] + [self.path / f"{c}.npy" for c in self.corruptions]
        missing = [str(p) for p in required if not p.is_file()]
        if missing:
            raise DatasetError(f"corrupted set at {self.path} is missing {len(missing)} file(s): "
                               + ", ".join(missing))
        labels = np.load(self.path / "labels.npy", mmap_mode="r")
        if labels.ndim != 1 or len(labels) % 5:
            raise DatasetError(f"{self.path / 'labels.npy'}: expected 5 * N labels, got shape {labels.shape}")
        self.n = len(labels) // 5
        self.subset = subset
        self.image_size = image_size

    def pairs(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.corruptions for s in self.severities]

    def _block(self, arr: np.ndarray, severity: int) -> np.ndarray:
        block = arr[(severity - 1) * self.n:severity * self.n]
        # a copy of just this block (fancy indexing copies; a slice of the memmap would not)
        return block[self.subset] if self.subset is not None else np.array(block)

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped (5N, H, W, 3) uint8 array of one corruption (nothing is read yet)."""
        path = self.path / f"{name}.npy"
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: unreadable .npy ({exc})") from None
        if arr.ndim != 4 or arr.shape[0] != 5 * self.n or arr.shape[-1] != 3 or arr.dtype != np.uint8:
            raise DatasetError(f"{path}: expected uint8 (5 * {self.n}, H, W, 3), got {arr.dtype} {arr.shape}")
        return arr

    def load(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (name, severity) not in self.pairs():
            raise ValueError(f"{name}/{severity} is not in this source; it holds {len(self.pairs())} pairs "
                             f"of {', '.join(self.corruptions)} x severities {self.severities}")
        arr = self.array(name)
        images = torch.from_numpy(self._block(arr, severity)).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(self._block(np.load(self.path / "labels.npy", mmap_mode="r"), severity)
                                  .astype(np.int64))
        return _resize_u8(images, self.image_size), labels


class CifarCSource(NpySource):
    """The published CIFAR-10-C folder (`<corruption>.npy` + `labels.npy`)."""


class GeneratedSource(NpySource):
    """A set written by `materialize`; only pairs its manifest lists are offered."""

    def __init__(self, path: str | os.PathLike, corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, **kwargs: Any) -> None:
        from v1sweep.corruptions.materialize import available_pairs, read_manifest

        super().__init__(path, corruptions, severities, **kwargs)
        manifest = read_manifest(self.path) or {}
        # what the set was made with: recorded by the trial (summary.json) next to eval.frost
        self.info = {"frost": manifest.get("frost"), "storage": manifest.get("storage"),
                     "table": manifest.get("table"), "key": manifest.get("key")}
        have = set(available_pairs(self.path))
        absent = [f"{c}/{s}" for c, s in super().pairs() if (c, s) not in have]
        if absent:
            raise DatasetError(f"materialized set {self.path} lacks {', '.join(absent)} (run materialize again)")


class TinyImageNetCSource:
    """Tiny-ImageNet-C: `<root>/<corruption>/<1..5>/<wnid>/*.JPEG` (`root` may be the folder that
    contains `Tiny-ImageNet-C`). Labels are the sorted wnids, or positions in `classes` (the
    training class list) when given."""

    def __init__(self, path: str | os.PathLike, corruptions: Sequence[str] | None = None,
                 severities: Sequence[int] | None = None, *, classes: Sequence[str] | None = None,
                 image_size: int | None = None, max_images: int | None = None, seed: int = 0) -> None:
        path = Path(path)
        self.root = path / "Tiny-ImageNet-C" if (path / "Tiny-ImageNet-C").is_dir() else path
        self.corruptions, self.severities = _check_pairs(corruptions, severities)
        missing = [str(self.root / c / str(s)) for c in self.corruptions for s in self.severities
                   if not (self.root / c / str(s)).is_dir()]
        if missing:
            raise DatasetError(f"Tiny-ImageNet-C at {self.root} is missing {len(missing)} folder(s): "
                               + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        self.classes = list(classes) if classes is not None else self._common_wnids()
        self.image_size = image_size
        self.max_images = max_images
        self.seed = seed

    def pairs(self) -> list[tuple[str, int]]:
        return [(c, s) for c in self.corruptions for s in self.severities]

    def _common_wnids(self) -> list[str]:
        """Without a training class list, labels are positions in the sorted wnids. A folder that
        lacks a wnid the others have would shift every later label by one, so refuse it."""
        found = {(c, s): {d.name for d in (self.root / c / str(s)).iterdir() if d.is_dir()}
                 for c in self.corruptions for s in self.severities}
        union = set().union(*found.values())
        for (c, s), wnids in found.items():
            lacking = sorted(union - wnids)
            if lacking:
                raise DatasetError(
                    f"{self.root / c / str(s)}: missing class folder(s) {', '.join(lacking[:5])}"
                    f"{' ...' if len(lacking) > 5 else ''} that other corruption folders have; labels "
                    f"would shift (restore the folder, or pass the training class list)")
        return sorted(union)

    def _listing(self, folder: Path) -> tuple[list[Path], list[int]]:
        wnids = sorted(d.name for d in folder.iterdir() if d.is_dir())
        if not wnids:
            raise DatasetError(f"{folder}: no class (wnid) folders")
        if self.classes is not None:
            unknown = [wn for wn in wnids if wn not in self.classes]
            if unknown:
                raise DatasetError(f"{folder}: class folders not in the training classes: {', '.join(unknown[:5])}")
            label_of = {wn: self.classes.index(wn) for wn in wnids}
        else:
            label_of = {wn: i for i, wn in enumerate(wnids)}
        files, labels = [], []
        for wn in wnids:
            for f in sorted((folder / wn).iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(f)
                    labels.append(label_of[wn])
        if not files:
            raise DatasetError(f"{folder}: no images (*.JPEG) in its class folders")
        return files, labels

    def load(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        if (name, severity) not in self.pairs():
            raise ValueError(f"{name}/{severity} is not in this source")
        files, labels = self._listing(self.root / name / str(severity))
        keep = subset_indices(len(files), self.max_images, self.seed)
        arrays = []
        for i in keep:
            try:
                with Image.open(files[i]) as im:
                    arrays.append(np.asarray(im.convert("RGB")))
            except OSError as exc:
                raise DatasetError(f"{files[i]}: unreadable image ({exc})") from None
        sizes = {a.shape for a in arrays}
        if len(sizes) > 1:
            size = self.image_size or max(s[0] for s in sizes)
            arrays = [np.asarray(Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR)) for a in arrays]
        images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        return _resize_u8(images, self.image_size), torch.tensor([labels[i] for i in keep], dtype=torch.int64)


def source_for(eval_config: Any, test_images: torch.Tensor, test_labels: torch.Tensor, image_size: int, *,
               classes: Sequence[str] | None = None, device: str | torch.device = "cpu",
               log: Any = None) -> NpySource | TinyImageNetCSource:
    """The evaluation source an `EvalConfig` asks for.

    generated: the test set (subset to `max_images` with `subset_indices(N, max_images, seed)`)
    is materialized into `eval_config.cache_dir` / $V1SWEEP_CACHE / ~/.cache/v1sweep, once per
    sweep, and read back memory-mapped. published: `eval_config.path` holds CIFAR-10-C
    (`labels.npy` + `<name>.npy`) or Tiny-ImageNet-C (`<name>/<severity>/<wnid>/*.JPEG`).
    """
    corruptions, severities = list(eval_config.corruptions), list(eval_config.severities)
    max_images, seed = eval_config.max_images, int(eval_config.seed)
    if eval_config.source == "generated":
        from v1sweep.corruptions.materialize import materialize

        keep = subset_indices(int(test_images.shape[0]), max_images, seed)
        idx = torch.from_numpy(keep)
        folder = materialize(test_images[idx], test_labels[idx], corruptions, severities, seed,
                             eval_config.cache_dir, indices=keep, device=device, log=log,
                             frost=getattr(eval_config, "frost", "published"),
                             storage=getattr(eval_config, "storage", "published"))
        return GeneratedSource(folder, corruptions, severities)
    if eval_config.source != "published":
        raise ValueError(f"eval.source must be 'generated' or 'published', got {eval_config.source!r}")
    if not eval_config.path:
        raise DatasetError("eval.source 'published' needs eval.path (a CIFAR-10-C or Tiny-ImageNet-C folder)")
    path = Path(eval_config.path).expanduser()
    if not path.exists():
        raise DatasetError(f"published corruption set not found: {path}")
    if (path / "labels.npy").is_file():
        labels = np.load(path / "labels.npy", mmap_mode="r")
        keep = subset_indices(len(labels) // 5, max_images, seed)
        return CifarCSource(path, corruptions, severities, subset=keep, image_size=image_size)
    root = path / "Tiny-ImageNet-C" if (path / "Tiny-ImageNet-C").is_dir() else path
    if any((root / c).is_dir() for c in corruptions):
        return TinyImageNetCSource(root, corruptions, severities, classes=classes, image_size=image_size,
                                   max_images=max_images, seed=seed)
    raise DatasetError(f"{path} is neither CIFAR-10-C (labels.npy + <corruption>.npy) nor Tiny-ImageNet-C "
                       f"(<corruption>/<severity>/<wnid>/*.JPEG)")
