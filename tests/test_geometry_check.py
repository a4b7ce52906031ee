"""`python -m v1sweep.bench.geometry`: the truncation error of the V1 kernels (effective SF at
the config's ksize vs the same filter at a large support), which backs the CPU study's geometry."""
from __future__ import annotations

import dataclasses

import numpy as np

from v1sweep.config import trial as config
from v1sweep.bench import geometry

CFG = config.from_dict({"name": "g", "data": {"dataset": "synthetic", "image_size": 32},
                        "frontend": {"n_simple": 24, "n_complex": 24, "ksize": 31, "visual_degrees": 1.0,
                                     "sf_max": 11.5}})


def with_ksize(k: int):
    return dataclasses.replace(CFG, frontend=dataclasses.replace(CFG.frontend, ksize=k))


def peak_sf_one_gabor(sf_cpd: float, sigma_deg: float, ksize: int, ppd: float = 32.0, pad: int = 512) -> float:
    """A cosine Gabor written out here, its amplitude-spectrum peak read on a fine grid (cpd)."""
    r = np.arange(ksize) - ksize // 2
    x, y = np.meshgrid(r / ppd, r / ppd)
    g = np.exp(-(x ** 2 + y ** 2) / (2 * sigma_deg ** 2)) * np.cos(2 * np.pi * sf_cpd * x)
    spec = np.abs(np.fft.fft2(g, s=(pad, pad)))
    fx = np.fft.fftfreq(pad)
    iy, ix = np.unravel_index(np.argmax(spec), spec.shape)
    return float(np.hypot(fx[ix], fx[iy]) * ppd)


def test_no_truncation_error_against_itself_and_more_with_a_smaller_kernel():
    same, _ = geometry.octave_errors(CFG, reference_ksize=31)
    assert np.all(same == 0)
    small, _ = geometry.octave_errors(with_ksize(7))
    large, _ = geometry.octave_errors(with_ksize(31))
    assert np.mean(small > 0.25) > np.mean(large > 0.25)


def test_a_wide_low_sf_gabor_is_shifted_by_a_small_kernel_only():
    # 1 cpd, sigma 0.5 deg: a 7-px (0.2 deg) kernel sees a fraction of a cycle, 127 px the whole filter
    cut, full = peak_sf_one_gabor(1.0, 0.5, 7), peak_sf_one_gabor(1.0, 0.5, 127)
    assert abs(np.log2(full / 1.0)) < 0.1
    assert not 2 ** -0.25 <= cut / full <= 2 ** 0.25  # the cut kernel peaks at DC here (cut == 0)


def test_measure_rows():
    rows = geometry.measure(CFG, ("biological",), banks=2)
    assert rows[0]["units"] == 2 * 48 and 0 <= rows[0]["frac_over_tol"] <= 1
    assert rows[0]["worst_octave"] >= rows[0]["p99_octave"]
