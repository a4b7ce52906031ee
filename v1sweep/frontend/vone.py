"""`VOneBlock`: a fixed V1-like front-end (simple + complex Gabor cells, optional noise).

Published formulation (Dapello et al. 2020, VOneNet): every filter convolves all three colour
channels with a kernel that is zero except on one channel, and both filters of the quadrature pair
are computed for every unit. That spends ~4x the arithmetic needed. Here each filter reads only its
channel: filters are grouped by channel and each group is one single-input-channel convolution, and
the quadrature (phase + 90 deg) filter exists only for complex units. The output is identical (up
to float rounding) and keeps the RFParams channel order: simple units first, then complex.

Which channel a filter reads comes from `RFParams`: `color` for the phase filter, and
`color_quadrature` for a complex unit's quadrature filter. In the 2020 VOneNet code the two filter
banks draw their channels independently, so the quadrature filter of a complex cell may read
another channel than its phase filter (sampling preset ``vonenet2020``); the 2023 study's code and
the ``tinyimagenet2023`` preset use one channel per unit (``color_quadrature == color``).

`k_exc` (and the 1/sqrt(2) of the energy model) are folded into the convolution weights, which is
exact since relu(k y) = k relu(y) and sqrt((k a)^2 + (k b)^2) = k sqrt(a^2 + b^2) for k >= 0.
The unscaled kernels (published convention, comparable with VOneNet weights) stay available as the
buffers `kernels` (phase filter of every unit) and `kernels_quadrature` (complex units only).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from v1sweep.frontend.gabor import check_rf, gabor_kernels, pixels_per_degree
from v1sweep.rf.params import RFParams

NOISE_MODES = ("none", "gaussian", "neuronal")
IMPLS = ("split", "grouped")
# Published VOneNet: `eps = 10e-5` inside the square root of the Poisson-like noise.
NEURONAL_EPS = 1e-4


def _rebuild_after_load(module: "VOneBlock", incompatible_keys: object) -> None:
    module._build_conv_weights()


class VOneBlock(nn.Module):
    """V1 front-end from `rf`: (B, 3, H, W) -> (B, n_simple + n_complex, ceil(H/stride), ceil(W/stride)).

    simple = k_exc * relu(g_phase * x); complex = k_exc * sqrt((g_phase * x)^2 + (g_phase+90 * x)^2) / sqrt(2),
    where `*` is a convolution over the unit's colour channel with padding ksize // 2.

    Noise (applied in train and eval mode alike, as published; freeze it with `freeze_noise`):
    - ``gaussian``: relu(r + noise_scale * N(0, 1)).
    - ``neuronal`` (Poisson-like, published VOneBlock.noise_f): the response is mapped to a rate
      u = noise_scale * r + noise_level, perturbed with Gaussian noise of variance ~ rate,
      u' = u + N(0, 1) * sqrt(relu(u) + 1e-4), mapped back r' = (u' - noise_level) / noise_scale
      and rectified: relu(r'). The published code undoes both the offset and the scale.

    The `noise_scale` / `noise_level` defaults are the 2020 VOneNet's (0.35 / 0.07); trial configs
    pass the `rf.preset`'s values (the 2023 study's code: 1 / 1), see `TrialConfig.noise_params`.

    `impl`: ``split`` (one single-channel convolution per colour; fastest on CPU) or ``grouped``
    (one grouped convolution, colour groups zero-padded to equal size). Both give the same output.
    """

    def __init__(self, rf: RFParams, *, image_size: int, visual_degrees: float, ksize: int, stride: int,
                 k_exc: float, noise: str = "none", noise_scale: float = 0.35, noise_level: float = 0.07,
                 impl: str = "split") -> None:
        super().__init__()
        if not isinstance(ksize, (int, np.integer)) or ksize < 1 or ksize % 2 == 0:
            raise ValueError(f"ksize must be a positive odd number of pixels, got {ksize!r}")
        if not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if not (math.isfinite(k_exc) and k_exc >= 0):
            raise ValueError(f"k_exc must be finite and >= 0, got {k_exc}")
        if noise not in NOISE_MODES:
            raise ValueError(f"unknown noise {noise!r}; valid: {', '.join(NOISE_MODES)}")
        if not (noise_scale >= 0 and noise_level >= 0):
            raise ValueError(f"noise_scale and noise_level must be >= 0, got {noise_scale}, {noise_level}")
        if noise == "neuronal" and noise_scale == 0:
            raise ValueError("noise 'neuronal' needs noise_scale > 0 (the response is divided by it)")
        if impl not in IMPLS:
            raise ValueError(f"unknown impl {impl!r}; valid: {', '.join(IMPLS)}")
        check_rf(rf, image_size, visual_degrees)
        self.rf = rf
        self.image_size = int(image_size)
        self.visual_degrees = float(visual_degrees)
        self.ppd = pixels_per_degree(image_size, visual_degrees)
        self.ksize = int(ksize)
        self.stride = int(stride)
        self.k_exc = float(k_exc)
        self.noise = noise
        self.noise_scale = float(noise_scale)
        self.noise_level = float(noise_level)
        self.impl = impl
        self.n_simple = rf.n_simple
        self.n_complex = rf.n_complex
        self.out_channels = len(rf)
        self._frozen_seed: int | None = None
        self._frozen_noise: torch.Tensor | None = None

        geometry: dict[str, Any] = dict(image_size=image_size, visual_degrees=visual_degrees, ksize=self.ksize)
        self.register_buffer("kernels", gabor_kernels(rf, **geometry))
        quad = (gabor_kernels(rf.subset(rf.complex), phase_offset=90.0, **geometry) if self.n_complex
                else torch.zeros(0, self.ksize, self.ksize))
        self.register_buffer("kernels_quadrature", quad)

        # Per colour: output positions of its simple units, of the complex units whose phase filter
        # reads it, and of the complex units whose quadrature filter reads it (RFParams order).
        color, color_q = np.asarray(rf.color), np.asarray(rf.color_quadrature)
        cplx = np.asarray(rf.complex, dtype=bool)
        self._split_colour = rf.split_colour
        self._counts: list[tuple[int, int, int]] = []
        for c in range(3):
            positions = {"simple": np.flatnonzero(~cplx & (color == c)),
                         "complex": np.flatnonzero(cplx & (color == c)),
                         "quad": np.flatnonzero(cplx & (color_q == c))}
            self._counts.append(tuple(len(p) for p in positions.values()))  # type: ignore[arg-type]
            for kind, pos in positions.items():
                self.register_buffer(f"_{kind}_pos{c}", torch.as_tensor(pos, dtype=torch.long), persistent=False)
        self._build_conv_weights()
        # Loading a state dict replaces `kernels`; the derived convolution weights follow.
        self.register_load_state_dict_post_hook(_rebuild_after_load)

    # ---------------------------------------------------------------- weights
    def _build_conv_weights(self) -> None:
        """Per-colour weights [simple phase; complex phase; complex quadrature] scaled by k_exc."""
        kern: torch.Tensor = self.get_buffer("kernels")
        quad: torch.Tensor = self.get_buffer("kernels_quadrature")
        s_scale, c_scale = self.k_exc, self.k_exc / math.sqrt(2.0)
        per_colour = []
        for c in range(3):
            spos, cpos, qpos = (getattr(self, f"_{kind}_pos{c}").to(kern.device)
                                for kind in ("simple", "complex", "quad"))
            rows = torch.cat([kern[spos] * s_scale, kern[cpos] * c_scale, quad[qpos - self.n_simple] * c_scale])
            per_colour.append(rows.unsqueeze(1).contiguous())  # (m_c, 1, k, k)
        if self.impl == "split":
            for c, w in enumerate(per_colour):
                self.register_buffer(f"_weight{c}", w, persistent=False)
        else:
            width = max(w.shape[0] for w in per_colour)
            padded = [F.pad(w, (0, 0, 0, 0, 0, 0, 0, width - w.shape[0])) for w in per_colour]
            self._group_width = width
            self.register_buffer("_weight", torch.cat(padded).contiguous(), persistent=False)

    def _colour_responses(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Raw (scaled) filter responses, one (B, m_c, H', W') tensor per colour."""
        pad = self.ksize // 2
        if self.impl == "split":
            out: list[Any] = []  # None for a colour without units (its counts are 0: never read)
            for c in range(3):
                w = getattr(self, f"_weight{c}")
                if w.shape[0] == 0:
                    out.append(None)
                else:
                    out.append(F.conv2d(x[:, c:c + 1], w, None, self.stride, pad))
            return out
        y = F.conv2d(x, self.get_buffer("_weight"), None, self.stride, pad, 1, 3)
        m = self._group_width
        return [y[:, c * m:(c + 1) * m] for c in range(3)]

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VOneBlock expects (batch, 3, height, width) RGB images, got shape {tuple(x.shape)}")
        if x.shape[2] != self.image_size or x.shape[3] != self.image_size:
            raise ValueError(
                f"VOneBlock was built for {self.image_size}x{self.image_size} px images (its spatial frequencies "
                f"assume {self.ppd:g} px/deg), got {x.shape[2]}x{x.shape[3]}; build it with image_size matching the input")
        responses = self._colour_responses(x)
        # Without autograd through x, rectify / combine in place in the convolution outputs:
        # on CPU every fresh response-sized tensor costs as much as a pass over it (page faults).
        inplace = not (torch.is_grad_enabled() and x.requires_grad)
        ref = next(r for r in responses if r is not None)
        out = ref.new_empty((x.shape[0], self.out_channels, ref.shape[2], ref.shape[3]))
        for c, y in enumerate(responses):
            n_s, n_c, _ = self._counts[c]
            if n_s:
                simple = y[:, :n_s]
                out.index_copy_(1, getattr(self, f"_simple_pos{c}"),
                                torch.relu_(simple) if inplace else torch.relu(simple))
            if n_c and not self._split_colour:  # quadrature partners sit in the same colour group
                q0, q1 = y[:, n_s:n_s + n_c], y[:, n_s + n_c:n_s + 2 * n_c]
                out.index_copy_(1, getattr(self, f"_complex_pos{c}"),
                                torch.hypot(q0, q1, out=q0) if inplace else torch.hypot(q0, q1))
        if self._split_colour:
            out = self._combine_split_colour(responses, out, inplace)
        return self._add_noise(out)

    def _combine_split_colour(self, responses: list[torch.Tensor], out: torch.Tensor, inplace: bool) -> torch.Tensor:
        """Complex units whose quadrature filter reads another channel (vonenet2020): gather both
        filters' responses across the colour groups, then combine them."""
        n_s = self.n_simple
        q0 = out[:, n_s:]
        q1 = out.new_empty(q0.shape)
        for c, y in enumerate(responses):
            m_s, m_c, m_q = self._counts[c]
            if m_c:
                q0.index_copy_(1, getattr(self, f"_complex_pos{c}") - n_s, y[:, m_s:m_s + m_c])
            if m_q:
                q1.index_copy_(1, getattr(self, f"_quad_pos{c}") - n_s, y[:, m_s + m_c:m_s + m_c + m_q])
        if inplace:
            torch.hypot(q0, q1, out=q0)
            return out
        return torch.cat([out[:, :n_s], torch.hypot(q0, q1)], 1)

    # ---------------------------------------------------------------- noise
    def _add_noise(self, r: torch.Tensor) -> torch.Tensor:
        if self.noise == "none":
            return r
        eps = self._standard_normal(r)
        if self.noise == "gaussian":
            return torch.relu(r + self.noise_scale * eps)
        rate = r * self.noise_scale + self.noise_level
        rate = rate + eps * torch.sqrt(torch.relu(rate) + NEURONAL_EPS)
        return torch.relu((rate - self.noise_level) / self.noise_scale)

    def _standard_normal(self, r: torch.Tensor) -> torch.Tensor:
        if self._frozen_seed is None:
            return torch.randn_like(r)
        batch, shape = r.shape[0], tuple(r.shape[1:])
        cache = self._frozen_noise
        if cache is None or tuple(cache.shape[1:]) != shape or cache.shape[0] < batch:
            have = 0 if cache is None or tuple(cache.shape[1:]) != shape else cache.shape[0]
            new = [torch.randn(shape, generator=torch.Generator().manual_seed(self._sample_seed(i)))
                   for i in range(have, batch)]
            fresh = torch.stack(new).to(r.device)
            cache = fresh if cache is None or have == 0 else torch.cat([cache.to(r.device), fresh])
        self._frozen_noise = cache.to(r.device)
        return self._frozen_noise[:batch].to(r.dtype)

    def _sample_seed(self, index: int) -> int:
        return (int(self._frozen_seed or 0) * 1_000_003 + index) % (2 ** 63)

    def freeze_noise(self, seed: int = 0) -> None:
        """Fix the noise: sample i of every batch gets the same draw (from `seed` and i) on any device.

        The draws are cached (one response-sized tensor per sample position), so evaluation batches
        see reproducible noise regardless of batch size or order.
        """
        self._frozen_seed = int(seed)
        self._frozen_noise = None

    def unfreeze_noise(self) -> None:
        """Back to fresh noise on every forward (from torch's global generator)."""
        self._frozen_seed = None
        self._frozen_noise = None

    @property
    def noise_frozen(self) -> bool:
        return self._frozen_seed is not None

    def extra_repr(self) -> str:
        return (f"simple={self.n_simple}, complex={self.n_complex}, image_size={self.image_size}, "
                f"visual_degrees={self.visual_degrees:g}, ksize={self.ksize}, stride={self.stride}, "
                f"k_exc={self.k_exc:g}, noise={self.noise!r}, impl={self.impl!r}")
