"""Counter-based random numbers: each value is a hash of (seed, corruption, severity, image index,
stream, element), so a corrupted image never depends on batch size, batch order or device.

A stateful generator (torch.Generator) would tie image i's noise to the images drawn before it.
Here every value is a pure function of its coordinates, computed with a 32-bit integer hash
(two rounds of Wellons' `lowbias32`) in int32 tensor arithmetic, which runs identically on CPU
and CUDA. Uniforms carry 24 bits; normals come from Box-Muller; Poisson draws use inversion
(rate < 10) and Hormann's PTRS rejection (rate >= 10), the same split numpy makes.
"""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_LO_MASK = (1 << 20) - 1  # poisson_levels: low 20 bits of a packed table entry


def _i32(value: int) -> int:
    """An unsigned 32-bit constant as the signed int32 with the same bits."""
    value &= _MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


_C1 = _i32(0x7FEB352D)
_C2 = _i32(0x846CA68B)


def _mix(x: Tensor, tmp: Tensor | None = None) -> Tensor:
    """lowbias32, in place on an int32 tensor (logical shifts emulated by masking); returns x.

    `tmp` is scratch space of x's shape (allocated when None)."""
    t = torch.empty_like(x) if tmp is None else tmp
    torch.bitwise_right_shift(x, 16, out=t)
    x.bitwise_xor_(t.bitwise_and_(0xFFFF))
    x.mul_(_C1)
    torch.bitwise_right_shift(x, 15, out=t)
    x.bitwise_xor_(t.bitwise_and_(0x1FFFF))
    x.mul_(_C2)
    torch.bitwise_right_shift(x, 16, out=t)
    x.bitwise_xor_(t.bitwise_and_(0xFFFF))
    return x


def _words(*parts: object) -> tuple[int, ...]:
    """Four signed 32-bit words from a stable (process-independent) hash of `parts`."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return tuple(_i32(int.from_bytes(digest[i:i + 4], "little")) for i in range(0, 16, 4))


class CounterRNG:
    """Random numbers for a batch of images with dataset indices `indices`.

    `stream` separates independent draws of one corruption (e.g. the two axes of a field);
    the element counter is the flat position inside the per-image `shape`.
    """

    def __init__(self, seed: int, name: str, severity: int, indices: Tensor, device: torch.device | str) -> None:
        self.key = (int(seed), str(name), int(severity))
        self.device = torch.device(device)
        self.indices = indices.to(device=self.device, dtype=torch.int64)
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= 2**31):
            raise ValueError("image indices must lie in [0, 2**31)")
        self.batch = int(self.indices.numel())

    def _image_hashes(self, stream: int | str) -> tuple[Tensor, Tensor, int]:
        k0, k1, k2, k3 = _words(*self.key, stream)
        idx = self.indices.to(torch.int32)
        a = _mix(_mix(idx ^ k0).add_(k1))
        b = _mix(a ^ k2)
        return a, b, k3

    def bits(self, stream: int | str, shape: tuple[int, ...]) -> Tensor:
        """(B, *shape) int32 hashes, one per image and element."""
        n = math.prod(shape)
        a, b, k3 = self._image_hashes(stream)
        counter = _mix(torch.arange(n, device=self.device, dtype=torch.int32).bitwise_xor_(k3))
        x = counter.unsqueeze(0) ^ a.unsqueeze(1)
        tmp = torch.empty_like(x)
        _mix(x, tmp).add_(b.unsqueeze(1))
        return _mix(x, tmp).view(self.batch, *shape)

    def bits_at(self, stream: int | str, rows: Tensor, elements: Tensor) -> Tensor:
        """Hashes for selected (image row, element) pairs; equals `bits(stream, ...)` there."""
        a, b, k3 = self._image_hashes(stream)
        x = _mix(elements.to(torch.int32).bitwise_xor_(k3)).bitwise_xor_(a[rows])
        return _mix(_mix(x).add_(b[rows]))

    @staticmethod
    def _to_unit(bits: Tensor) -> Tensor:
        """int32 hashes -> float32 uniforms strictly inside (0, 1), 24-bit resolution."""
        u = bits.bitwise_right_shift(8).bitwise_and_(0xFFFFFF).to(torch.float32)
        return u.add_(0.5).mul_(1.0 / 16777216.0)

    def uniform(self, stream: int | str, shape: tuple[int, ...], low: float = 0.0, high: float = 1.0) -> Tensor:
        u = self._to_unit(self.bits(stream, shape))
        if low != 0.0 or high != 1.0:
            u = u.mul_(high - low).add_(low)
        return u

    def randint(self, stream: int | str, shape: tuple[int, ...], low: int, high: int) -> Tensor:
        """Integers in [low, high) (int64), like numpy's randint."""
        u = self._to_unit(self.bits(stream, shape))
        return (u * (high - low)).floor_().to(torch.int64).clamp_(max=high - low - 1) + low

    def normal(self, stream: int | str, shape: tuple[int, ...], mean: float = 0.0, std: float = 1.0) -> Tensor:
        """Box-Muller normals; both outputs of each pair are used."""
        n = math.prod(shape)
        half = (n + 1) // 2
        u = self._to_unit(self.bits(stream, (2, half)))
        r = u[:, 0].log_().mul_(-2.0).sqrt_()  # sqrt(-2 log u0), in place
        theta = u[:, 1].mul_(2.0 * math.pi)
        z = torch.empty(self.batch, 2 * half, dtype=u.dtype, device=u.device)
        torch.cos(theta, out=z[:, :half]).mul_(r)
        torch.sin(theta, out=z[:, half:]).mul_(r)
        z = z[:, :n]
        if std != 1.0:
            z = z.mul_(std)
        if mean != 0.0:
            z = z.add_(mean)
        return z.reshape(self.batch, *shape)

    def subset(self, rows: Tensor) -> "CounterRNG":
        """The generator of a sub-batch (same keys, the selected images' indices)."""
        out = CounterRNG.__new__(CounterRNG)
        out.key, out.device = self.key, self.device
        out.indices = self.indices[rows.to(self.indices.device)]
        out.batch = int(out.indices.numel())
        return out

    def poisson_levels(self, stream: int | str, levels: Tensor, scale: float, n_levels: int = 255) -> Tensor:
        """Poisson draws with rates scale * levels / n_levels for integer `levels` in [0, n_levels]
        (images stored as 8-bit), by exact inversion of tabulated CDFs: one uniform u per element,
        the answer is the smallest k with CDF(k) >= u. The uniform's top bits pick a bucket whose
        range [lo, hi] of possible answers is tabulated; most buckets hold one value, the others
        are settled by a short binary search over the CDF. float32 counts."""
        shape = levels.shape
        cdf, table, bits_m = _poisson_tables(float(scale), int(n_levels), str(self.device))
        length = cdf.shape[1]
        rows = levels.reshape(self.batch, -1).to(torch.int32)
        ubits = self.bits(stream, (rows.shape[1],)).bitwise_right_shift_(8).bitwise_and_(0xFFFFFF)
        u = ubits.to(torch.float32).add_(0.5).mul_(1.0 / 16777216.0)  # as _to_unit
        bucket = ubits.bitwise_right_shift_(24 - bits_m).add_(rows * (1 << bits_m)).view(-1)
        packed = table.index_select(0, bucket)  # lo + (hi - lo) * 2**20
        k = packed.bitwise_and(_LO_MASK)
        pos = torch.nonzero(packed > _LO_MASK, as_tuple=True)[0]
        if pos.numel():
            lo_s = k[pos]
            hi_s = lo_s + packed[pos].bitwise_right_shift_(20)
            base = rows.view(-1)[pos] * length
            u_s = u.view(-1)[pos]
            while True:
                open_ = lo_s < hi_s
                if not bool(open_.any()):
                    break
                mid = (lo_s + hi_s) >> 1
                above = cdf.view(-1).index_select(0, base + mid) >= u_s
                hi_s = torch.where(open_ & above, mid, hi_s)
                lo_s = torch.where(open_ & ~above, mid + 1, lo_s)
            k[pos] = lo_s
        return k.to(torch.float32).reshape(shape)

    def poisson(self, stream: int | str, rate: Tensor) -> Tensor:
        """Poisson draws with per-element rates `rate` (B, ...) >= 0, as float32 counts.

        Two uniforms (u, v) per element. Rates < 10: inversion with u (the smallest k whose CDF
        reaches u). Rates >= 10: PTRS; its squeeze accepts ~85-95 % in float32, the exact test
        runs in float64 on the rest, and rejected elements draw fresh (u, v) by counter.
        """
        shape = rate.shape
        lam = rate.reshape(self.batch, -1).to(torch.float32)
        n = lam.shape[1]
        u = self._to_unit(self.bits(f"{stream}/u", (n,)))
        v = self._to_unit(self.bits(f"{stream}/v", (n,)))
        small = lam < 10.0
        k, quick = _ptrs_candidates(torch.where(small, torch.full_like(lam, 10.0), lam), u, v)
        out = torch.where(small, torch.zeros_like(lam), k)
        flat_out = out.view(-1)
        # inversion for small rates: count the steps until the CDF reaches u; the working set is
        # compacted only when at least half of it is done (gathers cost more than masked updates)
        pos = torch.nonzero(small.view(-1), as_tuple=True)[0]
        if pos.numel():
            ls = lam.view(-1)[pos].to(torch.float64)
            uu = u.view(-1)[pos].to(torch.float64)
            p = torch.exp(-ls)
            cdf = p.clone()
            count = torch.zeros_like(ls)
            for i in range(1, 100):  # P(k >= 100 | rate < 10) < 1e-60: the bound is never binding
                more = uu > cdf
                remaining = int(more.count_nonzero())
                if remaining == 0:
                    break
                if remaining * 2 <= more.numel():
                    done = ~more
                    flat_out[pos[done]] = count[done].to(torch.float32)
                    pos, ls, uu, p, cdf, count, more = pos[more], ls[more], uu[more], p[more], cdf[more], count[more], more[more]
                count += more
                p.mul_(ls).div_(i)
                cdf += p
            flat_out[pos] = count.to(torch.float32)
        # exact PTRS test for what the squeeze did not accept, fresh draws for rejections
        pos = torch.nonzero((~small & ~quick).view(-1), as_tuple=True)[0]
        round_ = 0
        while pos.numel():
            lam_r = lam.view(-1)[pos]
            if round_ == 0:
                u_r, v_r = u.view(-1)[pos], v.view(-1)[pos]
            else:
                rows, cols = pos // n, pos % n
                u_r = self._to_unit(self.bits_at(f"{stream}/u{round_}", rows, cols))
                v_r = self._to_unit(self.bits_at(f"{stream}/v{round_}", rows, cols))
            k_r, accepted = _ptrs_exact(lam_r, u_r, v_r)
            flat_out[pos[accepted]] = k_r[accepted]
            pos = pos[~accepted]
            round_ += 1
            if round_ > 1000:  # acceptance is > 0.8 per round; never reached in practice
                raise RuntimeError("Poisson sampler did not converge")
        return out.reshape(shape)


@lru_cache(maxsize=16)
def _poisson_tables(scale: float, n_levels: int, device: str) -> tuple[Tensor, Tensor, int]:
    """CDF rows of Poisson(scale * i / n_levels), i = 0..n_levels, computed in float64 and stored in
    float32 (whose spacing below 1 equals the 2**-24 resolution of the uniforms), each up to where
    the tail is below that resolution (last entry forced to 1); and, for 2**bits buckets of the
    uniform (its top bits), the smallest and the largest answer a uniform in the bucket can have:
    lo[i, m] = smallest k with CDF_i(k) >= max(m / M, 2**-25), hi[i, m] = smallest k with
    CDF_i(k) >= (m + 1) / M, packed into one int32 as lo + (hi - lo) * 2**20 (flattened)."""
    rates = scale * np.arange(n_levels + 1) / n_levels
    top = int(np.ceil(rates.max() + 12 * np.sqrt(rates.max() + 1) + 20))
    k = np.arange(top + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = k[None, :] * np.log(rates[:, None]) - rates[:, None] - _lgamma(k + 1)[None, :]
    logp[0] = np.where(k == 0, 0.0, -np.inf)  # rate 0: always 0
    cdf = np.cumsum(np.exp(logp), axis=1)
    cdf[:, -1] = 1.0
    cdf = np.minimum(cdf, 1.0).astype(np.float32)
    bits = min(16, max(8, int(np.ceil(np.log2(2 * (top + 1))))))
    buckets = 1 << bits
    edges = np.arange(buckets + 1) / buckets
    edges[0] = 0.5 / 16777216  # no uniform is below 2**-25
    bounds = np.stack([np.searchsorted(row.astype(np.float64), edges, side="left") for row in cdf])
    lo, hi = bounds[:, :-1], np.minimum(bounds[:, 1:], top)
    if top > _LO_MASK or (hi - lo).max() >= 2048:
        raise ValueError(f"Poisson scale {scale} is too large for the tabulated sampler")
    packed = (lo + (hi - lo) * (1 << 20)).astype(np.int32).reshape(-1)
    return (torch.as_tensor(cdf, dtype=torch.float32, device=device),
            torch.as_tensor(packed, dtype=torch.int32, device=device), bits)


def _lgamma(x: np.ndarray) -> np.ndarray:
    return np.array([math.lgamma(v) for v in x.tolist()])


def _ptrs_constants(lam: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    slam = torch.sqrt(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2)
    return a, b, invalpha, vr


def _ptrs_candidates(lam: Tensor, u01: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Candidate k of Hormann's PTRS and its squeeze acceptance (float32, full tensors, in place)."""
    b = torch.sqrt(lam).mul_(2.53).add_(0.931)
    vr = (b - 2).reciprocal_().mul_(-3.6224).add_(0.9277)
    quick = v <= vr
    del vr
    u = u01 - 0.5
    us = u.abs().neg_().add_(0.5)
    quick &= us >= 0.07
    k = (b * 0.02483 - 0.059).mul_(2).div_(us).add_(b).mul_(u).add_(lam).add_(0.43).floor_()
    return k, quick


def _ptrs_exact(lam: Tensor, u01: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """One full round of Hormann's transformed rejection with squeeze (PTRS), in float64."""
    lam = lam.to(torch.float64)
    a, b, invalpha, vr = _ptrs_constants(lam)
    u = u01.to(torch.float64) - 0.5
    v = v.to(torch.float64)
    us = 0.5 - u.abs()
    k = torch.floor((2 * a / us + b) * u + lam + 0.43)
    quick = (us >= 0.07) & (v <= vr)
    valid = (k >= 0) & ~((us < 0.013) & (v > us))
    lhs = torch.log(v) + torch.log(invalpha) - torch.log(a / (us * us) + b)
    rhs = -lam + k * torch.log(lam) - torch.lgamma(k + 1)
    accepted = quick | (valid & (lhs <= rhs))
    return k.to(torch.float32), accepted
