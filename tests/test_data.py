"""Dataset loaders on tiny trees the tests write, the decoded-tensor cache, and the synthetic default."""
from __future__ import annotations

import dataclasses
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from v1sweep.config import trial as cfgmod
from v1sweep.config.trial import DataConfig
from v1sweep.data import cache as dcache
from v1sweep.data import datasets as dsets
from v1sweep.data import list_datasets, load_dataset, synthetic
from v1sweep.data import catalog
from v1sweep.errors import ConfigError, DatasetError
from v1sweep.testing.data import DatasetContract

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cfg(**kw) -> DataConfig:
    kw.setdefault("train_size", None)
    kw.setdefault("test_size", None)
    return DataConfig(**kw)


def rand_image(rng: np.random.Generator, h: int, w: int, smooth: bool = False) -> np.ndarray:
    if smooth:  # JPEG-friendly: a random 3x3 colour field, upsampled
        small = Image.fromarray(rng.integers(0, 256, (3, 3, 3), dtype=np.uint8))
        return np.asarray(small.resize((w, h), Image.BILINEAR))
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def write_tree(root, splits=("train", "test"), classes=("cat", "dog", "emu"), per_class=3, size=8, ext="png",
               seed=0) -> dict:
    """An ImageFolder tree of random PNGs; returns {split: [(path, class_index, array)]} in sorted order."""
    rng = np.random.default_rng(seed)
    out = {}
    for split in splits:
        rows = []
        for k, c in enumerate(sorted(classes)):
            for i in range(per_class):
                p = root / split / c / f"{i:03d}.{ext}"
                arr = rand_image(rng, size, size, smooth=ext == "jpg")
                save(p, arr)
                rows.append((p, k, arr))
        out[split] = rows
    return out


def expected(rows) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.stack([a.transpose(2, 0, 1) for _, _, a in rows]))
    y = torch.tensor([k for _, k, _ in rows], dtype=torch.int64)
    return x, y


# ---------------------------------------------------------------------------------------------
# registry

def test_registry_has_every_configurable_dataset():
    assert set(list_datasets()) == set(cfgmod.DATASETS)
    with pytest.raises(ConfigError, match="valid: cifar10, imagefolder, synthetic, tinyimagenet"):
        load_dataset(dataclasses.replace(cfg(), dataset="mnist"))


class TestDatasetContract(DatasetContract):
    """`v1sweep.testing.data.check_dataset`'s parts on every registered dataset."""


@pytest.mark.parametrize("name", [n for n in catalog.dataset_names() if catalog.needs_path(n)])
def test_file_datasets_need_an_existing_path(name, tmp_path):
    with pytest.raises(ConfigError, match="data.path"):
        load_dataset(cfg(dataset=name))
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match=f"path does not exist: {missing}"):
        load_dataset(cfg(dataset=name, path=str(missing)))


# ---------------------------------------------------------------------------------------------
# imagefolder

@pytest.mark.parametrize("test_split", ["test", "val"])
def test_imagefolder_decodes_exactly(tmp_path, test_split):
    rows = write_tree(tmp_path / "d", splits=("train", test_split))
    ds = load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8))
    assert ds.classes == ["cat", "dog", "emu"]
    for split, key in (("train", "train"), (test_split, "test")):
        x, y = expected(rows[split])
        assert torch.equal(getattr(ds, f"{key}_images"), x)
        assert torch.equal(getattr(ds, f"{key}_labels"), y)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64


def test_imagefolder_resizes_and_centre_crops_like_pil(tmp_path):
    rng = np.random.default_rng(1)
    square, wide = rand_image(rng, 12, 12), rand_image(rng, 10, 16)
    save(tmp_path / "d/train/a/0.png", square)
    save(tmp_path / "d/train/a/1.png", wide)
    save(tmp_path / "d/test/a/0.png", square)
    ds = load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=6))
    ref_sq = np.asarray(Image.fromarray(square).resize((6, 6), Image.BILINEAR))
    ref_wide = np.asarray(Image.fromarray(wide[:, 3:13]).resize((6, 6), Image.BILINEAR))
    assert np.array_equal(ds.train_images[0].numpy().transpose(1, 2, 0), ref_sq)
    assert np.array_equal(ds.train_images[1].numpy().transpose(1, 2, 0), ref_wide)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    (tmp_path / "d/train/a").mkdir(parents=True)
    (tmp_path / "d/test/a").mkdir(parents=True)
    Image.fromarray(gray, "L").save(tmp_path / "d/train/a/g.png")
    Image.fromarray(np.full((8, 8, 4), 200, np.uint8), "RGBA").save(tmp_path / "d/test/a/r.png")
    ds = load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8))
    assert torch.equal(ds.train_images[0], torch.from_numpy(np.stack([gray] * 3)))
    assert (ds.test_images == 200).all()


# ---------------------------------------------------------------------------------------------
# errors: never a silent skip

@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_names_the_file(tmp_path, damage):
    write_tree(tmp_path / "d", ext="jpg", size=16)
    bad = tmp_path / "d/train/dog/001.jpg"
    if damage == "garbage":
        bad.write_bytes(b"this is not a jpeg")
    else:
        bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match=f"cannot read image {bad}"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=16))


def test_empty_class_folder_names_the_folder(tmp_path):
    write_tree(tmp_path / "d")
    (tmp_path / "d/test/fox").mkdir()
    (tmp_path / "d/train/fox").mkdir()
    (tmp_path / "d/train/fox/notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=f"empty class folder {tmp_path / 'd/train/fox'}"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8))


def test_wrong_layouts_say_what_was_expected(tmp_path):
    save(tmp_path / "flat/images/0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"wrong layout .*expected train/<class>/\*\.jpg.*found images"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "flat")))
    with pytest.raises(DatasetError, match=r"cifar10: wrong layout .*cifar-10-batches-py"):
        load_dataset(cfg(dataset="cifar10", path=str(tmp_path / "flat")))
    with pytest.raises(DatasetError, match=r"tinyimagenet: wrong layout .*wnids.txt"):
        load_dataset(cfg(dataset="tinyimagenet", path=str(tmp_path / "flat")))
    # images directly in train/ instead of class folders
    save(tmp_path / "noclass/train/0.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "noclass/test/0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="no class folders in .*train"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "noclass")))
    # a test class that training never saw
    write_tree(tmp_path / "extra")
    save(tmp_path / "extra/test/yak/0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="class folders not in .*train: yak"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "extra")))
    # a file given as the dataset path
    with pytest.raises(DatasetError, match="expected a folder"):
        load_dataset(cfg(dataset="imagefolder", path=str(tmp_path / "flat/images/0.png")))


# ---------------------------------------------------------------------------------------------
# cifar10: ImageFolder tree and pickled batches

def test_cifar10_jpeg_tree_from_either_root(tmp_path):
    rows = write_tree(tmp_path / "data/cifar10", classes=CIFAR_NAMES[:3], per_class=2, size=32, ext="jpg")
    a = load_dataset(cfg(dataset="cifar10", path=str(tmp_path / "data"), image_size=32, cache_dir=str(tmp_path / "c1")))
    b = load_dataset(cfg(dataset="cifar10", path=str(tmp_path / "data/cifar10"), image_size=32,
                         cache_dir=str(tmp_path / "c2")))
    assert a.classes == b.classes == CIFAR_NAMES[:3]
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    x, y = expected(rows["train"])
    assert torch.equal(a.train_labels, y)
    # what PIL decodes from each file, and (JPEG is lossy) close to what was written
    for i, (path, _, arr) in enumerate(rows["train"]):
        ref = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
        assert np.array_equal(a.train_images[i].numpy(), ref)
    assert (a.train_images.float() - x.float()).abs().mean() < 8


def write_cifar_pickles(folder, per_batch=4, legacy_numpy=True, seed=0):
    """A miniature cifar-10-batches-py folder, pickled like the original (protocol 2, bytes keys)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        blob = pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                             b"filenames": [b"x.png"] * per_batch}, protocol=2)
        if legacy_numpy:  # the real files name numpy.core.multiarray (pickled by numpy 1.x)
            blob = blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        (folder / name).write_bytes(blob)
        arrays[name] = (data.reshape(-1, 3, 32, 32), np.asarray(labels))
    meta = {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return arrays


@pytest.mark.parametrize("legacy_numpy", [True, False])
def test_cifar10_pickled_batches(tmp_path, legacy_numpy):
    arrays = write_cifar_pickles(tmp_path / "root/cifar-10-batches-py", legacy_numpy=legacy_numpy)
    for root in (tmp_path / "root", tmp_path / "root/cifar-10-batches-py"):
        ds = load_dataset(cfg(dataset="cifar10", path=str(root), image_size=32))
        assert ds.classes == CIFAR_NAMES
        train_x = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
        train_y = np.concatenate([arrays[f"data_batch_{i}"][1] for i in range(1, 6)])
        assert torch.equal(ds.train_images, torch.from_numpy(train_x))
        assert torch.equal(ds.train_labels, torch.from_numpy(train_y).long())
        assert torch.equal(ds.test_images, torch.from_numpy(arrays["test_batch"][0]))
    # resized with the same PIL filter as decoded files
    small = load_dataset(cfg(dataset="cifar10", path=str(tmp_path / "root"), image_size=16))
    ref = np.asarray(Image.fromarray(train_x[3].transpose(1, 2, 0)).resize((16, 16), Image.BILINEAR))
    assert np.array_equal(small.train_images[3].numpy().transpose(1, 2, 0), ref)


def test_cifar10_pickles_refuse_code_and_name_bad_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_pickles(folder)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DatasetError, match=f"cannot read pickled batch {folder / 'data_batch_3'}.*refusing"):
        load_dataset(cfg(dataset="cifar10", path=str(tmp_path)))
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=f"missing batch file {folder / 'data_batch_3'}"):
        load_dataset(cfg(dataset="cifar10", path=str(tmp_path)))


# ---------------------------------------------------------------------------------------------
# tinyimagenet: official layout

WNIDS = ["n01443537", "n01629819", "n01641577"]
COLOURS = {"n01443537": (220, 30, 30), "n01629819": (30, 220, 30), "n01641577": (30, 30, 220)}


def write_tiny(root, per_class=3, val_per_class=2):
    """Official Tiny ImageNet layout; each class has its own colour so labels can be checked."""
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(reversed(WNIDS)) + "\n")  # the file's order is not sorted
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    for w in WNIDS:
        box_lines = []
        for i in range(per_class):
            save(root / f"train/{w}/images/{w}_{i}.JPEG", np.full((64, 64, 3), COLOURS[w], np.uint8))
            box_lines.append(f"{w}_{i}.JPEG\t0\t0\t63\t63")
        (root / f"train/{w}/{w}_boxes.txt").write_text("\n".join(box_lines) + "\n")
    ann, k = [], 0
    for i in range(val_per_class):
        for w in WNIDS[::-1]:
            save(root / f"val/images/val_{k}.JPEG", np.full((64, 64, 3), COLOURS[w], np.uint8))
            ann.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
            k += 1
    (root / "val/val_annotations.txt").write_text("\n".join(ann) + "\n")
    save(root / "test/images/test_0.JPEG", np.zeros((64, 64, 3), np.uint8))  # unlabeled: not used


def colour_labels(images: torch.Tensor) -> torch.Tensor:
    ref = torch.tensor([COLOURS[w] for w in WNIDS], dtype=torch.float32)
    mean = images.float().mean(dim=(2, 3))
    return torch.cdist(mean, ref).argmin(dim=1)


def test_tinyimagenet_official_layout(tmp_path):
    write_tiny(tmp_path / "tiny-imagenet-200")
    for root in (tmp_path, tmp_path / "tiny-imagenet-200"):
        ds = load_dataset(cfg(dataset="tinyimagenet", path=str(root), image_size=32))
        assert ds.classes == sorted(WNIDS)
        assert ds.train_images.shape == (9, 3, 32, 32) and ds.test_images.shape == (6, 3, 32, 32)
        assert torch.equal(ds.train_labels, colour_labels(ds.train_images))
        assert torch.equal(ds.test_labels, colour_labels(ds.test_images))  # labels from val_annotations.txt
        assert torch.bincount(ds.test_labels).tolist() == [2, 2, 2]


def test_tinyimagenet_reorganised_val_folders(tmp_path):
    root = tmp_path / "t"
    write_tiny(root)
    (root / "val/val_annotations.txt").unlink()
    for f in (root / "val/images").iterdir():
        f.unlink()
    (root / "val/images").rmdir()
    for w in WNIDS[:2]:
        save(root / f"val/{w}/images/a.JPEG", np.full((64, 64, 3), COLOURS[w], np.uint8))
    ds = load_dataset(cfg(dataset="tinyimagenet", path=str(root), image_size=16))
    assert ds.test_labels.tolist() == [0, 1]
    assert torch.equal(ds.test_labels, colour_labels(ds.test_images))


def test_tinyimagenet_layout_errors(tmp_path):
    root = tmp_path / "t"
    write_tiny(root)
    c = cfg(dataset="tinyimagenet", path=str(root), image_size=16)
    extra = root / "val/images/val_99.JPEG"
    save(extra, np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(DatasetError, match=f"{extra} .*has no line in .*val_annotations.txt"):
        load_dataset(c)
    extra.unlink()
    (root / "val/images/val_0.JPEG").unlink()
    with pytest.raises(DatasetError, match=r"val_annotations.txt line 1: image .*val_0.JPEG not found"):
        load_dataset(c)
    write_tiny(tmp_path / "t2")
    ann = tmp_path / "t2/val/val_annotations.txt"
    ann.write_text(ann.read_text().replace(WNIDS[0], "n99999999"))
    with pytest.raises(DatasetError, match="class 'n99999999' is not in .*wnids.txt"):
        load_dataset(dataclasses.replace(c, path=str(tmp_path / "t2")))
    write_tiny(tmp_path / "t3")
    for f in (tmp_path / f"t3/train/{WNIDS[1]}/images").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=f"empty class folder {tmp_path / 't3/train' / WNIDS[1] / 'images'}"):
        load_dataset(dataclasses.replace(c, path=str(tmp_path / "t3")))
    write_tiny(tmp_path / "t4")
    (tmp_path / "t4/val/val_annotations.txt").unlink()
    with pytest.raises(DatasetError, match="missing .*val_annotations.txt"):
        load_dataset(dataclasses.replace(c, path=str(tmp_path / "t4")))


# ---------------------------------------------------------------------------------------------
# subsets and the cache

def test_subsets_are_stratified_seeded_and_consistent_with_the_full_cache(tmp_path):
    write_tree(tmp_path / "d", per_class=10, size=8)
    base = cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8, train_size=12, test_size=6)
    a = load_dataset(base)
    assert torch.bincount(a.train_labels).tolist() == [4, 4, 4]
    assert torch.bincount(a.test_labels).tolist() == [2, 2, 2]
    again = load_dataset(dataclasses.replace(base, cache_dir=str(tmp_path / "other_cache")))
    assert torch.equal(a.train_images, again.train_images)
    other = load_dataset(dataclasses.replace(base, seed=1))
    assert not torch.equal(a.train_images, other.train_images)
    # the same subset, taken from a full cache instead of decoded on its own
    full_first = dataclasses.replace(base, cache_dir=str(tmp_path / "c3"))
    full = load_dataset(dataclasses.replace(full_first, train_size=None, test_size=None))
    from_full = load_dataset(full_first)
    assert torch.equal(from_full.train_images, a.train_images)
    assert torch.equal(from_full.test_labels, a.test_labels)
    rows = {tuple(img.flatten().tolist()) for img in full.train_images}
    assert all(tuple(img.flatten().tolist()) in rows for img in a.train_images)
    # larger than available: everything
    assert len(load_dataset(dataclasses.replace(base, train_size=10**6)).train_labels) == 30


def test_stratified_subset_reference():
    labels = np.repeat(np.arange(4), [50, 30, 5, 15])
    idx = dcache.stratified_subset(labels, 20, seed=3)
    counts = np.bincount(labels[idx], minlength=4)
    assert counts.tolist() == [5, 5, 5, 5]
    idx = dcache.stratified_subset(labels, 40, seed=3)  # class 2 runs out; the others share its turns
    counts = np.bincount(labels[idx], minlength=4)
    assert counts[2] == 5 and counts.sum() == 40 and max(counts) - min(counts[[0, 1, 3]]) <= 1
    assert len(set(idx.tolist())) == 40 and np.all(np.diff(idx) > 0)
    assert dcache.stratified_subset(labels, None, 0) is None and dcache.stratified_subset(labels, 100, 0) is None


def test_cache_hit_and_invalidation_by_mtime(tmp_path, monkeypatch):
    rows = write_tree(tmp_path / "d", size=8)
    c = cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8)
    calls = []
    real = dcache.decode_files
    monkeypatch.setattr(dcache, "decode_files", lambda paths, size: calls.append(len(paths)) or real(paths, size))
    first = load_dataset(c)
    assert calls == [9, 9]
    cached = list((tmp_path / "cache/datasets").glob("imagefolder-8px-*.npz"))  # $V1SWEEP_CACHE (conftest)
    assert len(cached) == 1
    second = load_dataset(c)
    assert calls == [9, 9]  # a hit: nothing decoded
    for k in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(first, k), getattr(second, k))
    assert first.classes == second.classes
    # touching a file (new mtime, same bytes) invalidates the cache
    target = rows["train"][4][0]
    st = os.stat(target)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    load_dataset(c)
    assert calls == [9, 9, 9, 9]
    # rewriting its content shows up in the tensors
    new = np.full((8, 8, 3), 7, np.uint8)
    save(target, new)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 9_000_000_000))
    third = load_dataset(c)
    assert torch.equal(third.train_images[4], torch.from_numpy(new.transpose(2, 0, 1)))
    # stale entries of the same source are removed; another image size is another entry
    assert len(list((tmp_path / "cache/datasets").glob("imagefolder-*.npz"))) == 1
    load_dataset(dataclasses.replace(c, image_size=4))
    assert len(list((tmp_path / "cache/datasets").glob("imagefolder-*.npz"))) == 2


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    write_tree(tmp_path / "d", size=8)
    c = cfg(dataset="imagefolder", path=str(tmp_path / "d"), image_size=8, cache_dir=str(tmp_path / "cc"))
    first = load_dataset(c)
    (path,) = (tmp_path / "cc/datasets").glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    again = load_dataset(c)
    assert torch.equal(first.train_images, again.train_images)
    assert dcache.read_cache(path) is not None


# ---------------------------------------------------------------------------------------------
# synthetic (the embedded default)

def test_synthetic_is_deterministic_balanced_and_sized():
    a = load_dataset(cfg(image_size=32, train_size=300, test_size=100, seed=5))
    b = load_dataset(cfg(image_size=32, train_size=300, test_size=100, seed=5))
    c = load_dataset(cfg(image_size=32, train_size=300, test_size=100, seed=6))
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_labels, b.test_labels)
    assert not torch.equal(a.train_images, c.train_images)
    assert not torch.equal(a.train_images[:100], a.test_images)  # train and test are different draws
    assert a.train_images.shape == (300, 3, 32, 32) and a.train_images.dtype == torch.uint8
    assert a.train_labels.dtype == torch.int64 and a.classes == list(synthetic.CLASSES)
    assert torch.bincount(a.train_labels, minlength=10).tolist() == [30] * 10
    assert torch.bincount(a.test_labels, minlength=10).tolist() == [10] * 10
    for size in (8, 16, 64):  # 8: the smallest data.image_size the config allows
        x, y = synthetic.generate(20, size, seed=0)
        assert x.shape == (20, 3, size, size) and y.shape == (20,)
    with pytest.raises(ValueError, match="image_size >= 8"):
        synthetic.generate(4, 7)
    with pytest.raises(ConfigError, match="data.image_size: .*>= 8"):
        load_dataset(cfg(image_size=7))
    # null sizes mean the documented defaults
    d = load_dataset(cfg(image_size=16, train_size=None, test_size=None))
    assert (len(d.train_labels), len(d.test_labels)) == dsets.SYNTHETIC_DEFAULT_SIZES


def test_synthetic_is_not_separable_by_colour_or_pixels():
    x, y = synthetic.generate(2000, 32, seed=0, split="train")
    xt, yt = synthetic.generate(500, 32, seed=0, split="test")

    def ncm(feat, feat_t):
        means = torch.stack([feat[y == k].mean(0) for k in range(10)])
        return (torch.cdist(feat_t, means).argmin(1) == yt).float().mean().item()

    colour = ncm(x.float().mean(dim=(2, 3)), xt.float().mean(dim=(2, 3)))
    pixels = ncm(x.float().flatten(1), xt.float().flatten(1))
    assert colour < 0.25 and pixels < 0.3  # chance is 0.1


def test_synthetic_classes_differ_in_orientation_and_spatial_frequency():
    """Orientation and SF of the grating are what tell some class pairs apart (so V1 has work to do)."""
    x, y = synthetic.generate(600, 32, seed=1)
    gray = x.float().mean(1)
    gray = gray - gray.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fftshift(torch.fft.fft2(gray).abs() ** 2, dim=(-2, -1))
    f = torch.fft.fftshift(torch.fft.fftfreq(32))
    fy, fx = torch.meshgrid(f, f, indexing="ij")
    radius = torch.sqrt(fx ** 2 + fy ** 2)
    band = radius > 0.06  # leave out the shape outline and the 1/f background's low frequencies

    def share(mask, k):  # mean fraction of band power in `mask` for class k
        p = power[y == k]
        return ((p * (mask & band)).sum(dim=(1, 2)) / (p * band).sum(dim=(1, 2))).mean().item()

    along_x = fx.abs() > 2 * fy.abs()  # vertical bars (0 deg) put power on the fx axis
    along_y = fy.abs() > 2 * fx.abs()
    disc0, disc90 = synthetic.CLASSES.index("disc_0deg_lowsf"), synthetic.CLASSES.index("disc_90deg_lowsf")
    assert share(along_x, disc0) > 1.5 * share(along_x, disc90)
    assert share(along_y, disc90) > 1.5 * share(along_y, disc0)
    high = radius > 0.2
    sq_lo, sq_hi = synthetic.CLASSES.index("square_45deg_lowsf"), synthetic.CLASSES.index("square_45deg_highsf")
    assert share(high, sq_hi) > 1.5 * share(high, sq_lo)


def test_pink_noise_has_a_one_over_f_spectrum():
    gen = torch.Generator().manual_seed(0)
    noise = synthetic.pink_noise(64, 1, 64, gen)
    assert torch.allclose(noise.mean(dim=(-2, -1)), torch.zeros(64, 1), atol=1e-5)
    amp = torch.fft.rfft2(noise[:, 0]).abs().mean(0)
    f_lo, f_hi = amp[0, 4], amp[0, 16]  # amplitude at 4 and 16 cycles: ratio ~ 4 for 1/f
    assert 3.0 < (f_lo / f_hi).item() < 5.3


@pytest.mark.slow
def test_synthetic_is_learnable_by_a_tiny_cnn():
    """About a minute on 2 CPU cores: clearly above chance, not solved at once."""
    import torch.nn as nn

    torch.manual_seed(0)
    x, y = synthetic.generate(2000, 32, seed=0)
    xt, yt = synthetic.generate(500, 32, seed=0, split="test")
    x, xt = x.float() / 127.5 - 1, xt.float() / 127.5 - 1
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    accs = []
    for _ in range(5):
        model.train()
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accs.append((model(xt).argmax(1) == yt).float().mean().item())
    assert accs[0] < 0.9 and max(accs) > 0.4


# ---------------------------------------------------------------------------------------------
# the shared CIFAR-10 JPEG tree (dev workspace only)

def test_shared_cifar10_jpeg_tree(cifar10_root):
    ds = load_dataset(cfg(dataset="cifar10", path=str(cifar10_root), image_size=32, train_size=200, test_size=100))
    assert ds.classes == CIFAR_NAMES
    assert ds.train_images.shape == (200, 3, 32, 32) and ds.test_images.shape == (100, 3, 32, 32)
    assert torch.bincount(ds.train_labels).tolist() == [20] * 10
    assert torch.bincount(ds.test_labels).tolist() == [10] * 10
    assert 60 < ds.train_images.float().mean() < 190 and ds.train_images.float().std() > 30
    big = load_dataset(cfg(dataset="cifar10", path=str(cifar10_root.parent), image_size=64, train_size=20,
                           test_size=10))
    assert big.train_images.shape == (20, 3, 64, 64)
