"""Materialized corrupted sets (CIFAR-10-C layout, cache, lock, crash recovery) and the readers of
generated and published sets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from v1sweep.config.trial import EvalConfig
from v1sweep.corruptions import CifarCSource, GeneratedSource, TinyImageNetCSource, apply, source_for
from v1sweep.corruptions.materialize import materialize
from v1sweep.corruptions.readers import subset_indices
from v1sweep.errors import DatasetError

REPO = Path(__file__).resolve().parents[1]


def tiny_set(n: int = 6, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    images = (x * 255).round().to(torch.uint8)
    return images, torch.arange(n) % 3


def expected_block(images: torch.Tensor, name: str, sev: int, seed: int, indices=None,
                   storage: str = "published") -> np.ndarray:
    """What a 32-px set stores: np.uint8 truncation as published (a float32 value within 1e-4 of a
    whole grey level counts as it), or rounding (`lossless`)."""
    y = apply(images.float() / 255, name, sev, seed=seed, indices=indices) * 255
    y8 = torch.floor(y + 1e-4) if storage == "published" else y.round()
    return y8.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def lines(log: list[str], word: str = "corrupting") -> list[str]:
    return [m for m in log if m.startswith(word)]


# ------------------------------------------------------------------ layout and reuse
def test_layout_matches_cifar10c(tmp_path):
    images, labels = tiny_set()
    folder = materialize(images, labels, ["gaussian_noise", "contrast"], [2, 4], seed=3, cache_dir=tmp_path)
    assert folder.parent == tmp_path / "corruptions"
    lab = np.load(folder / "labels.npy")
    assert lab.dtype == np.uint8 and lab.shape == (30,)
    assert np.array_equal(lab, np.tile(labels.numpy(), 5))
    for name in ("gaussian_noise", "contrast"):
        arr = np.load(folder / f"{name}.npy")
        assert arr.dtype == np.uint8 and arr.shape == (30, 32, 32, 3)
        for sev in (2, 4):
            assert np.array_equal(arr[(sev - 1) * 6:sev * 6], expected_block(images, name, sev, 3))
        assert not arr[:6].any() and not arr[12:18].any()  # severities not requested: zero blocks
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["corruptions"]["contrast"]["severities"] == [2, 4]
    source = GeneratedSource(folder, ["gaussian_noise", "contrast"], [2, 4])
    assert source.pairs() == [("gaussian_noise", 2), ("gaussian_noise", 4), ("contrast", 2), ("contrast", 4)]
    x, y = source.load("contrast", 4)
    assert x.dtype == torch.uint8 and x.shape == (6, 3, 32, 32) and x.is_contiguous()
    assert y.dtype == torch.int64 and torch.equal(y, labels)
    assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), expected_block(images, "contrast", 4, 3))
    assert isinstance(source.array("contrast"), np.memmap)  # readers memory-map
    with pytest.raises(DatasetError, match="lacks contrast/5"):
        GeneratedSource(folder, ["contrast"], [5])


def test_second_call_reuses_and_more_severities_fill_in(tmp_path):
    images, labels = tiny_set()
    log: list[str] = []
    folder = materialize(images, labels, ["fog", "snow"], [1, 3], seed=0, cache_dir=tmp_path, log=log.append)
    assert len(lines(log)) == 4
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")}
    log.clear()
    again = materialize(images, labels, ["snow", "fog"], [3, 1], seed=0, cache_dir=tmp_path, log=log.append)
    assert again == folder and lines(log) == []
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*.npy")} == stamps
    before = np.load(folder / "fog.npy").copy()
    materialize(images, labels, ["fog"], [1, 3, 5], seed=0, cache_dir=tmp_path, log=log.append)
    assert lines(log) == ["corrupting 6 images: fog severity 5"]
    after = np.load(folder / "fog.npy")
    assert np.array_equal(after[:18], before[:18])  # severities 1 and 3 kept, not regenerated
    assert np.array_equal(after[24:30], expected_block(images, "fog", 5, 0))
    # another seed or other images are another set
    other = materialize(images, labels, ["fog"], [1], seed=1, cache_dir=tmp_path)
    assert other != folder
    assert materialize(images[:5], labels[:5], ["fog"], [1], seed=0, cache_dir=tmp_path) not in (folder, other)


def test_subset_with_indices_matches_the_full_set(tmp_path):
    images, labels = tiny_set(8)
    full = GeneratedSource(materialize(images, labels, ["shot_noise"], [3], 5, tmp_path), ["shot_noise"], [3])
    keep = np.array([1, 4, 6])
    part = GeneratedSource(materialize(images[keep], labels[keep], ["shot_noise"], [3], 5, tmp_path, indices=keep),
                           ["shot_noise"], [3])
    assert torch.equal(part.load("shot_noise", 3)[0], full.load("shot_noise", 3)[0][keep])


def test_labels_above_255_are_stored_as_int64(tmp_path):
    images, _ = tiny_set(4)
    folder = materialize(images, torch.tensor([0, 300, 7, 199]), ["contrast"], [1], 0, tmp_path)
    lab = np.load(folder / "labels.npy")
    assert lab.dtype == np.int64 and lab[1] == 300


def test_bad_arguments(tmp_path):
    images, labels = tiny_set(4)
    with pytest.raises(ValueError, match="unknown corruption 'haze'"):
        materialize(images, labels, ["haze"], [1], 0, tmp_path)
    with pytest.raises(ValueError, match="severity must be an integer in 1-5"):
        materialize(images, labels, ["fog"], [0], 0, tmp_path)
    with pytest.raises(ValueError, match=r"uint8 \(N, 3, H, W\)"):
        materialize(images.float(), labels, ["fog"], [1], 0, tmp_path)
    with pytest.raises(ValueError, match="labels must be 4 integers"):
        materialize(images, labels[:3], ["fog"], [1], 0, tmp_path)


# ------------------------------------------------------------------ concurrency and crashes
SCRIPT = textwrap.dedent("""
    import sys, time
    import torch
    import v1sweep.corruptions.materialize as M
    from v1sweep.corruptions.materialize import materialize
    mode, cache = sys.argv[1], sys.argv[2]
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(40) % 10
    names = ["glass_blur", "zoom_blur", "fog"]
    if mode == "crash":  # die (as if killed) while writing the second corruption
        real, calls = M.apply, []
        def dying(*args, **kwargs):
            calls.append(1)
            if len(calls) == 8:
                import os
                os._exit(3)
            return real(*args, **kwargs)
        M.apply = dying
    if mode == "slow":  # holding the lock, wait for the go file before generating anything
        real, go = M.apply, sys.argv[3]
        def slow(*args, **kwargs):
            import os
            while not os.path.exists(go):
                time.sleep(0.02)
            return real(*args, **kwargs)
        M.apply = slow
    print("READY", flush=True)
    folder = materialize(images, labels, names, [1, 2, 3, 4, 5], 0, cache,
                         log=lambda m: print(m, flush=True))
    print("DONE", folder, flush=True)
""")


def run_script(tmp_path: Path, mode: str, cache: Path, *extra: str):
    script = tmp_path / "mat.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), mode, str(cache), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_concurrent_calls_generate_once(tmp_path):
    """The first trial holds the lock (and generates nothing) until the second has called
    materialize too; the second must wait, then find the set complete."""
    cache, go = tmp_path / "cache", tmp_path / "go"
    first = run_script(tmp_path, "slow", cache, str(go))
    assert first.stdout.readline().strip() == "READY"
    first_line = first.stdout.readline()  # printed once it holds the lock and starts generating
    assert first_line.startswith("corrupting"), first_line + first.stderr.read()
    second = run_script(tmp_path, "plain", cache)
    assert second.stdout.readline().strip() == "READY"  # about to call materialize
    import time

    time.sleep(1.0)  # give the second process time to block on the lock
    go.touch()
    out1, err1 = first.communicate(timeout=300)
    out2, err2 = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    out1 = first_line + out1
    assert sum(m.startswith("corrupting") for m in out1.splitlines()) == 15
    assert sum(m.startswith("corrupting") for m in out2.splitlines()) == 0, out2
    done1 = [m for m in out1.splitlines() if m.startswith("DONE")]
    done2 = [m for m in out2.splitlines() if m.startswith("DONE")]
    assert done1 == done2 and len(done1) == 1
    folder = Path(done1[0].split(" ", 1)[1])
    assert len(GeneratedSource(folder, ["glass_blur", "zoom_blur", "fog"], [1, 2, 3, 4, 5]).pairs()) == 15


def test_killed_mid_write_is_detected_and_redone(tmp_path):
    cache = tmp_path / "cache"
    crashed = run_script(tmp_path, "crash", cache)
    out, err = crashed.communicate(timeout=300)
    assert crashed.returncode == 3, err
    folders = list((cache / "corruptions").iterdir())
    assert len(folders) == 1
    folder = folders[0]
    assert list(folder.glob("*.tmp-*")), "the killed writer should have left its temporary file"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert list(manifest["corruptions"]) == ["glass_blur"]  # only the finished corruption counts
    # the same call again (here, in this process) finishes the set; it matches a fresh one
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(40, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    labels = torch.arange(40) % 10
    names = ["glass_blur", "zoom_blur", "fog"]
    log: list[str] = []
    again = materialize(images, labels, names, [1, 2, 3, 4, 5], 0, cache, log=log.append)
    assert again == folder
    made = lines(log)
    assert len(made) == 10 and not any("glass_blur" in m for m in made)
    assert not list(folder.glob("*.tmp-*"))
    fresh = materialize(images, labels, names, [1, 2, 3, 4, 5], 0, tmp_path / "fresh")
    for name in names:
        assert np.array_equal(np.load(folder / f"{name}.npy"), np.load(fresh / f"{name}.npy")), name


def test_truncated_file_is_regenerated(tmp_path):
    images, labels = tiny_set()
    folder = materialize(images, labels, ["contrast"], [1], 0, tmp_path)
    good = np.load(folder / "contrast.npy").copy()
    with open(folder / "contrast.npy", "r+b") as f:
        f.truncate(1000)
    log: list[str] = []
    materialize(images, labels, ["contrast"], [1], 0, tmp_path, log=log.append)
    assert lines(log) == ["corrupting 6 images: contrast severity 1"]
    assert np.array_equal(np.load(folder / "contrast.npy"), good)


def test_exact_dir_replaces_another_set(tmp_path):
    images, labels = tiny_set()
    out = tmp_path / "out"
    materialize(images, labels, ["contrast", "fog"], [1], 0, out, exact_dir=True)
    materialize(images, labels, ["contrast"], [2], 9, out, exact_dir=True)
    assert not (out / "fog.npy").exists()
    assert GeneratedSource(out, ["contrast"], [2]).pairs() == [("contrast", 2)]


def test_storage_published_and_lossless(tmp_path):
    """32 px: published = truncation, lossless = rounding; 64 px published = truncation, then JPEG
    quality 85 as Tiny-ImageNet-C (decoded with PIL here). Each is its own set (key, manifest)."""
    import io

    images, labels = tiny_set(5)
    pub = materialize(images, labels, ["contrast"], [5], 1, tmp_path)
    loss = materialize(images, labels, ["contrast"], [5], 1, tmp_path, storage="lossless")
    assert pub != loss
    trunc, rounded = (expected_block(images, "contrast", 5, 1, storage=s) for s in ("published", "lossless"))
    assert not np.array_equal(trunc, rounded)
    assert np.array_equal(np.load(pub / "contrast.npy")[20:25], trunc)
    assert np.array_equal(np.load(loss / "contrast.npy")[20:25], rounded)
    assert json.loads((pub / "manifest.json").read_text())["storage"] == "uint8-truncate"
    assert json.loads((loss / "manifest.json").read_text())["storage"] == "uint8-round"

    big, big_labels = tiny_set(3, size=64)
    folder = materialize(big, big_labels, ["fog"], [2], 0, tmp_path)
    assert json.loads((folder / "manifest.json").read_text())["storage"] == "uint8-truncate+jpeg85"
    y = apply(big.float() / 255, "fog", 2) * 255
    truncated = torch.floor(y + 1e-4).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expected = []
    for img in truncated:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=85, optimize=True)
        expected.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    stored = np.load(folder / "fog.npy")[3:6]
    assert np.abs(stored.astype(int) - np.stack(expected).astype(int)).max() <= 1
    assert not np.array_equal(stored, truncated)  # the JPEG round trip happened
    lossless = materialize(big, big_labels, ["fog"], [2], 0, tmp_path, storage="lossless")
    assert np.array_equal(np.load(lossless / "fog.npy")[3:6], y.round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    with pytest.raises(ValueError, match="storage must be one of published, lossless"):
        materialize(images, labels, ["contrast"], [5], 1, tmp_path, storage="png")


def test_frost_source_is_part_of_the_set(tmp_path):
    images, labels = tiny_set(4)
    photos = materialize(images, labels, ["frost"], [3], 0, tmp_path)
    procedural = materialize(images, labels, ["frost"], [3], 0, tmp_path, frost="procedural")
    assert photos != procedural
    assert json.loads((photos / "manifest.json").read_text())["frost"] == "imagecorruptions-photos"
    assert json.loads((procedural / "manifest.json").read_text())["frost"] == "procedural-1"
    assert GeneratedSource(photos, ["frost"], [3]).info["frost"] == "imagecorruptions-photos"
    assert not np.array_equal(np.load(photos / "frost.npy"), np.load(procedural / "frost.npy"))


# ------------------------------------------------------------------ published readers
def write_cifar_c(root: Path, names, n: int = 7) -> tuple[dict, np.ndarray]:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {name: rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8) for name in names}
    for name, arr in arrays.items():
        np.save(root / f"{name}.npy", arr)
    labels = np.tile(rng.integers(0, 10, n, dtype=np.uint8), 5)
    np.save(root / "labels.npy", labels)
    return arrays, labels


def test_cifar_c_reader(tmp_path):
    arrays, labels = write_cifar_c(tmp_path / "CIFAR-10-C", ["fog", "snow"])
    src = CifarCSource(tmp_path / "CIFAR-10-C", ["fog", "snow"], [2, 5])
    assert src.pairs() == [("fog", 2), ("fog", 5), ("snow", 2), ("snow", 5)]
    x, y = src.load("snow", 5)
    assert torch.equal(x, torch.from_numpy(arrays["snow"][28:35]).permute(0, 3, 1, 2))
    assert torch.equal(y, torch.from_numpy(labels[28:35].astype(np.int64)))
    sub = CifarCSource(tmp_path / "CIFAR-10-C", ["fog"], [1], subset=np.array([0, 3]), image_size=64)
    xs, ys = sub.load("fog", 1)
    assert xs.shape == (2, 3, 64, 64) and ys.tolist() == labels[[0, 3]].tolist()
    with pytest.raises(DatasetError, match=r"missing 1 file\(s\): .*CIFAR-10-C/frost.npy"):
        CifarCSource(tmp_path / "CIFAR-10-C", ["fog", "frost"], [1])
    np.save(tmp_path / "CIFAR-10-C" / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"fog.npy: expected uint8 \(5 \* 7, H, W, 3\)"):
        CifarCSource(tmp_path / "CIFAR-10-C", ["fog"], [1]).load("fog", 1)


def write_tiny_c(root: Path, names, wnids=("n02", "n01", "n03"), per_class: int = 2) -> None:
    colors = {"n01": (200, 30, 30), "n02": (30, 200, 30), "n03": (30, 30, 200)}
    for name in names:
        for sev in range(1, 6):
            for wnid in wnids:
                folder = root / "Tiny-ImageNet-C" / name / str(sev) / wnid
                folder.mkdir(parents=True)
                for i in range(per_class):
                    Image.new("RGB", (64, 64), colors[wnid]).save(folder / f"img_{i}.JPEG", quality=95)


def test_tiny_imagenet_c_reader(tmp_path):
    write_tiny_c(tmp_path, ["fog"])
    src = TinyImageNetCSource(tmp_path, ["fog"], [3])  # the folder above Tiny-ImageNet-C works
    x, y = src.load("fog", 3)
    assert x.shape == (6, 3, 64, 64) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 1, 1, 2, 2]  # sorted wnids n01, n02, n03
    assert abs(int(x[0, 0, 10, 10]) - 200) <= 3 and abs(int(x[2, 1, 10, 10]) - 200) <= 3
    mapped = TinyImageNetCSource(tmp_path / "Tiny-ImageNet-C", ["fog"], [3], classes=["n03", "n09", "n01", "n02"],
                                 image_size=32, max_images=4, seed=1)
    xm, ym = mapped.load("fog", 3)
    assert xm.shape == (4, 3, 32, 32)
    assert set(ym.tolist()) <= {0, 2, 3}
    with pytest.raises(DatasetError, match=r"missing 5 folder\(s\): .*Tiny-ImageNet-C/snow/1"):
        TinyImageNetCSource(tmp_path, ["fog", "snow"], [1, 2, 3, 4, 5])
    with pytest.raises(DatasetError, match="not in the training classes: n02"):
        TinyImageNetCSource(tmp_path, ["fog"], [1], classes=["n01", "n03"]).load("fog", 1)


def test_tiny_imagenet_c_missing_class_folder_is_refused(tmp_path):
    """Without `classes`, a wnid folder missing in one severity would shift the labels of every
    later class there (n03 would read as class 1); the reader refuses and names the folder."""
    import shutil

    write_tiny_c(tmp_path, ["fog", "snow"])
    shutil.rmtree(tmp_path / "Tiny-ImageNet-C" / "snow" / "4" / "n02")
    with pytest.raises(DatasetError, match=r"snow/4: missing class folder\(s\) n02"):
        TinyImageNetCSource(tmp_path, ["fog", "snow"], [1, 4])
    ok = TinyImageNetCSource(tmp_path, ["fog", "snow"], [1, 3])  # the damaged folder not asked for
    assert ok.load("snow", 3)[1].tolist() == [0, 0, 1, 1, 2, 2]
    # with the training class list, labels are positions in it: no shift, so it reads
    mapped = TinyImageNetCSource(tmp_path, ["snow"], [4], classes=["n01", "n02", "n03"])
    assert mapped.load("snow", 4)[1].tolist() == [0, 0, 2, 2]


# ------------------------------------------------------------------ source_for
def test_source_for_generated_and_published(tmp_path):
    images, labels = tiny_set(10)
    cfg = EvalConfig(corruptions=("contrast", "fog"), severities=(1, 3), max_images=4, seed=2,
                     cache_dir=str(tmp_path / "c"))
    src = source_for(cfg, images, labels, 32)
    assert isinstance(src, GeneratedSource)
    assert src.pairs() == [("contrast", 1), ("contrast", 3), ("fog", 1), ("fog", 3)]
    keep = subset_indices(10, 4, 2)
    assert len(keep) == 4 and np.all(np.diff(keep) > 0)
    x, y = src.load("fog", 3)
    assert torch.equal(y, labels[keep])
    assert np.array_equal(x.permute(0, 2, 3, 1).numpy(), expected_block(images[keep], "fog", 3, 2, indices=keep))
    again = source_for(cfg, images, labels, 32)  # the same sweep's next trial: same folder
    assert again.path == src.path
    # default cache: $V1SWEEP_CACHE (set per test by conftest)
    default = source_for(EvalConfig(corruptions=("contrast",), severities=(1,)), images, labels, 32)
    assert Path(os.environ["V1SWEEP_CACHE"]) in default.path.parents

    write_cifar_c(tmp_path / "cc", ["contrast", "fog"])
    pub = source_for(EvalConfig(corruptions=("contrast", "fog"), source="published", path=str(tmp_path / "cc"),
                                max_images=3), images, labels, 32)
    assert isinstance(pub, CifarCSource) and pub.load("fog", 1)[0].shape == (3, 3, 32, 32)
    write_tiny_c(tmp_path / "tc", ["fog"])
    tiny = source_for(EvalConfig(corruptions=("fog",), source="published", path=str(tmp_path / "tc")),
                      images, labels, 64, classes=["n01", "n02", "n03"])
    assert isinstance(tiny, TinyImageNetCSource) and tiny.load("fog", 2)[1].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(DatasetError, match="not found"):
        source_for(EvalConfig(source="published", path=str(tmp_path / "nope")), images, labels, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="neither CIFAR-10-C"):
        source_for(EvalConfig(source="published", path=str(tmp_path / "empty")), images, labels, 32)


# ------------------------------------------------------------------ command line
def test_cli_corrupt_writes_set_and_preview(tmp_path, capsys):
    from v1sweep.cli import main

    out = tmp_path / "set"
    code = main(["corrupt", "--dataset", "synthetic", "--max-images", "8", "--corruptions", "fog,contrast",
                 "--severities", "1,3", "--seed", "4", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "4 corruption/severity pairs" in printed and "preview.png" in printed
    # only the set and the preview: no lock file (or anything else) left in the output folder
    assert sorted(p.name for p in out.iterdir()) == ["contrast.npy", "fog.npy", "labels.npy", "manifest.json",
                                                     "preview.png"]
    source = GeneratedSource(out, ["fog", "contrast"], [1, 3])
    x, y = source.load("contrast", 3)
    assert x.shape[0] == 8 and y.shape == (8,)
    grid = np.asarray(Image.open(out / "preview.png").convert("RGB"))
    assert grid.shape == (22 + 2 * 100, 140 + 6 * 100, 3)  # 2 rows; clean + 5 severity columns
    # row "contrast" (second), column "severity 3": the stored image, nearest-upscaled to 96 px
    tile = grid[22 + 100:22 + 100 + 96, 140 + 3 * 100:140 + 3 * 100 + 96]
    expected = np.kron(x[0].permute(1, 2, 0).numpy(), np.ones((3, 3, 1), dtype=np.uint8))
    assert np.array_equal(tile, expected)
    assert (grid[22:22 + 96, 140 + 2 * 100:140 + 2 * 100 + 96] == 255).all()  # severity 2 not made: blank
    assert main(["corrupt", "--dataset", "synthetic", "--corruptions", "fogg", "--out", str(out)]) == 2
    assert "unknown corruption(s) fogg" in capsys.readouterr().err


def test_bench_corruptions_reports_consistent_rates(capsys):
    """The benchmark's table: per-corruption rates of the batched suite, the imagecorruptions
    package and the reference formulation, ratios = batched / baseline; fog's package function no
    longer runs on current numpy (np.float_), so its row is timed with the reference and marked."""
    from v1sweep.cli import main

    assert main(["bench", "corruptions", "--images", "6", "--reference-images", "2",
                 "--corruptions", "contrast,pixelate,fog"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("contrast", "pixelate", "fog")}
    assert set(rows) == {"contrast", "pixelate", "fog"}
    for name, cells in rows.items():
        fast, pkg, ratio_pkg = float(cells[1]), float(cells[2].rstrip("*")), float(cells[3].rstrip("x"))
        ref, ratio_ref = float(cells[4]), float(cells[5].rstrip("x"))
        assert fast > 0 and pkg > 0 and ref > 0
        assert abs(ratio_pkg - fast / pkg) <= 0.06 * ratio_pkg + 0.06
        assert abs(ratio_ref - fast / ref) <= 0.06 * ratio_ref + 0.06
        assert cells[2].endswith("*") == (name == "fog"), cells
    assert "no longer runs on current numpy / scikit-image" in out
    assert "all requested" in out and "needs all 19 corruptions at 32 px" in out
    import sys

    assert "pkg_resources" not in sys.modules or hasattr(sys.modules["pkg_resources"], "require")


def test_bench_imports_the_package_through_its_shim_only():
    """The shim makes `imagecorruptions` importable without setuptools' pkg_resources, leaves no
    fake module behind, and its frost function finds the photographs (run on one image)."""
    import sys

    from v1sweep.bench.corruptions import import_imagecorruptions, package_runner

    module = import_imagecorruptions()
    assert module is not None and hasattr(module, "frost")
    assert "pkg_resources" not in sys.modules or hasattr(sys.modules["pkg_resources"], "require")
    assert package_runner(module, "frost") is not None
    assert package_runner(module, "contrast") is not None
    assert package_runner(module, "glass_blur") is None  # skimage removed `multichannel`
