"""The one list of corruption names and their categories (Hendrycks & Dietterich 2019).

Kept free of torch so configs can validate corruption names without importing the suite.
"""
from __future__ import annotations

# name -> category; the first 15 are the benchmark, the last 4 the held-out extras
# (categorised as in the published code: speckle noise, gaussian blur, spatter, saturate).
CORRUPTIONS: dict[str, str] = {
    "gaussian_noise": "noise",
    "shot_noise": "noise",
    "impulse_noise": "noise",
    "defocus_blur": "blur",
    "glass_blur": "blur",
    "motion_blur": "blur",
    "zoom_blur": "blur",
    "snow": "weather",
    "frost": "weather",
    "fog": "weather",
    "brightness": "weather",
    "contrast": "digital",
    "elastic_transform": "digital",
    "pixelate": "digital",
    "jpeg_compression": "digital",
    "speckle_noise": "noise",
    "gaussian_blur": "blur",
    "spatter": "weather",
    "saturate": "digital",
}
BENCHMARK_CORRUPTIONS: tuple[str, ...] = tuple(list(CORRUPTIONS)[:15])
EXTRA_CORRUPTIONS: tuple[str, ...] = tuple(list(CORRUPTIONS)[15:])
CATEGORIES: tuple[str, ...] = ("noise", "blur", "weather", "digital")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)


def category_of(name: str) -> str:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    return CORRUPTIONS[name]
