"""Fidelity of the deterministic corruptions against straightforward per-image numpy / scipy /
PIL / colorsys formulations of the published generator (written here, independent of the suite):
PSNR >= 35 dB on generated images and on real CIFAR-10 test images."""
from __future__ import annotations

import colorsys
import io
import tarfile

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from PIL import Image

from v1sweep.corruptions import apply
from v1sweep.corruptions.base import REGISTRY
from v1sweep.corruptions.catalog import CORRUPTIONS
from v1sweep.corruptions.params import TABLES

DETERMINISTIC = tuple(n for n in CORRUPTIONS if REGISTRY.meta(n)["deterministic"])


# ------------------------------------------------------------------ reference formulations
def ref_brightness(img: np.ndarray, c: float) -> np.ndarray:
    out = np.empty_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*img[i, j])
            out[i, j] = colorsys.hsv_to_rgb(h, s, min(max(v + c, 0.0), 1.0))
    return out


def ref_saturate(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    out = np.empty_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            h, s, v = colorsys.rgb_to_hsv(*img[i, j])
            out[i, j] = colorsys.hsv_to_rgb(h, min(max(s * c[0] + c[1], 0.0), 1.0), v)
    return out


def ref_contrast(img: np.ndarray, c: float) -> np.ndarray:
    means = img.mean(axis=(0, 1), keepdims=True)
    return (img - means) * c + means


def ref_pixelate(img: np.ndarray, c: float) -> np.ndarray:
    h, w = img.shape[:2]
    pil = Image.fromarray(np.round(img * 255).astype(np.uint8))
    pil = pil.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX)
    return np.asarray(pil, dtype=np.float64) / 255


def ref_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float64) / 255


def ref_disk(radius: float, alias_blur: float) -> np.ndarray:
    grid = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-((np.arange(ksize) - ksize // 2) ** 2) / (2 * alias_blur ** 2))
    g /= g.sum()
    return ndi.correlate(disk, np.outer(g, g), mode="mirror")  # cv2.GaussianBlur, reflect-101


def ref_defocus(img: np.ndarray, p: tuple[float, float]) -> np.ndarray:
    kernel = ref_disk(*p)
    return np.stack([ndi.correlate(img[..., d], kernel, mode="mirror") for d in range(3)], -1)


def ref_gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return ndi.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


def ref_clipped_zoom(img: np.ndarray, zoom: float) -> np.ndarray:
    h = img.shape[0]
    ch = int(np.ceil(h / zoom))
    top = (h - ch) // 2
    out = ndi.zoom(img[top:top + ch, top:top + ch], (zoom, zoom, 1), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim:trim + h, trim:trim + h]


def ref_zoom_blur(img: np.ndarray, factors: np.ndarray) -> np.ndarray:
    out = np.zeros_like(img)
    for f in factors:
        out += ref_clipped_zoom(img, f)
    return (img + out) / (len(factors) + 1)


REFERENCES = {"brightness": ref_brightness, "saturate": ref_saturate, "contrast": ref_contrast,
              "pixelate": ref_pixelate, "jpeg_compression": ref_jpeg, "defocus_blur": ref_defocus,
              "gaussian_blur": ref_gaussian_blur, "zoom_blur": ref_zoom_blur}


# ------------------------------------------------------------------ images
def generated_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Natural-ish uint8 images (n, H, W, 3): smooth colour fields, edges, texture, a gray patch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for _ in range(n):
        img = np.zeros((size, size, 3))
        for c in range(3):
            for _ in range(3):
                fx, fy, ph = rng.uniform(0.5, 4), rng.uniform(0.5, 4), rng.uniform(0, 2 * np.pi)
                img[..., c] += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        img += 0.5
        mask = (xx - rng.uniform(0.2, 0.8)) ** 2 + (yy - rng.uniform(0.2, 0.8)) ** 2 < rng.uniform(0.02, 0.1)
        img[mask] = rng.uniform(0, 1, 3)
        img += rng.normal(0, 0.03, img.shape)
        img[: size // 6, : size // 6] = rng.uniform(0, 1)  # a gray (zero-saturation) patch
        imgs.append(np.clip(img, 0, 1))
    return np.round(np.stack(imgs) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cifar_images(shared_cifar_tarball) -> np.ndarray:
    """Up to 3 test images of each CIFAR-10 class, read straight from the shared JPEG tarball."""
    per_class: dict[str, int] = {}
    imgs = []
    with tarfile.open(shared_cifar_tarball) as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or "test" not in parts or not member.name.endswith(".jpg"):
                continue
            cls = parts[-2]
            if per_class.get(cls, 0) >= 3:
                if len(per_class) == 10 and all(v >= 3 for v in per_class.values()):
                    break
                continue
            per_class[cls] = per_class.get(cls, 0) + 1
            with Image.open(tar.extractfile(member)) as im:
                imgs.append(np.asarray(im.convert("RGB")))
    assert len(imgs) >= 10, "too few CIFAR-10 test images in the tarball"
    return np.stack(imgs)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def check_fidelity(images_u8: np.ndarray, name: str, table: str) -> list[float]:
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255
    values = []
    for severity in range(1, 6):
        ours = apply(x, name, severity).permute(0, 2, 3, 1).double().numpy()
        param = TABLES[table][name][severity - 1]
        ref = np.stack([np.clip(REFERENCES[name](img.astype(np.float64) / 255, param), 0, 1)
                        for img in images_u8])
        values.append(psnr(ours, ref))
    return values


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_fidelity_generated_32px(name):
    values = check_fidelity(generated_images(6, 32, seed=1), name, "cifar10")
    assert min(values) >= 35.0, f"{name}: PSNR per severity {np.round(values, 1)}"


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_fidelity_generated_64px(name):
    values = check_fidelity(generated_images(3, 64, seed=2), name, "tinyimagenet")
    assert min(values) >= 35.0, f"{name}: PSNR per severity {np.round(values, 1)}"


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_fidelity_real_cifar10(name, cifar_images):
    values = check_fidelity(cifar_images[:12], name, "cifar10")
    assert min(values) >= 35.0, f"{name}: PSNR per severity {np.round(values, 1)}"


def test_every_deterministic_corruption_has_an_independent_formulation():
    """The registry's `deterministic` flags pick the fidelity tests above: none may slip through."""
    assert set(REFERENCES) == set(DETERMINISTIC)


def test_references_are_not_trivially_equal_to_input():
    """Guard: every reference changes the image at severity 5, so the PSNR checks have teeth."""
    imgs = generated_images(2, 32, seed=3).astype(np.float64) / 255
    for name in DETERMINISTIC:
        param = TABLES["cifar10"][name][4]
        changed = np.clip(REFERENCES[name](imgs[0], param), 0, 1)
        assert psnr(changed, imgs[0]) < 33, name


# ------------------------------------------------------------------ the benchmark's baseline path
@pytest.mark.parametrize("name", [n for n in CORRUPTIONS if REGISTRY.meta(n)["reference"] is not None])
def test_benchmark_reference_agrees_with_the_suite(name):
    """`v1sweep.corruptions.reference` (the per-image numpy baseline of `v1sweep bench corruptions`)
    computes the same corruptions: equal for deterministic ones, the same mean absolute change
    (within sampling noise) for random ones."""
    from v1sweep.corruptions.reference import apply_reference

    u8 = generated_images(12, 32, seed=4)
    xn = u8.astype(np.float64) / 255
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255
    for sev in (1, 5):
        ours = apply(x, name, sev).permute(0, 2, 3, 1).double().numpy()
        ref = apply_reference(xn, name, sev)
        if REGISTRY.meta(name)["deterministic"]:
            assert psnr(ours, ref) >= 35, (name, sev)
        else:
            a, b = np.abs(ours - xn).mean(), np.abs(ref - xn).mean()
            assert abs(a - b) < 0.25 * max(a, b), (name, sev, a, b)
