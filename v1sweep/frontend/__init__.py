"""V1 front-end: a fixed Gabor filter bank built from sampled RF parameters (`VOneBlock`)."""
from __future__ import annotations

from v1sweep.frontend.gabor import check_rf, gabor, gabor_kernels, pixels_per_degree
from v1sweep.frontend.vone import NOISE_MODES, VOneBlock

__all__ = ["VOneBlock", "gabor_kernels", "gabor", "check_rf", "pixels_per_degree", "NOISE_MODES"]
