"""Coverage of the sweep intervals at the study's seed counts, on synthetic sweeps with a known truth.

Each synthetic sweep: `n` seeds; seed k trains a biological and a uniform model that share the
seed's effect u_k (same initialisation and data order), plus independent trial noise:

    acc_bio[k] = mu_bio + u_k + e_k,   acc_uni[k] = mu_uni + u_k + f_k.

The truth of the relative difference is mu_bio / mu_uni - 1. Every interval is computed for
N_SIM sweeps at once (vectorised), and the share of sweeps whose interval holds the truth must lie
within [0.92, 0.98] for a nominal 95 % interval. Fixed seeds: deterministic, well under a second.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from v1sweep.analysis import stats

N_SIM = 2000
MU_BIO, MU_UNI = 0.45, 0.41
SD_SEED, SD_TRIAL = 0.012, 0.006


def synthetic_sweeps(n: int, seed: int, paired: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(0, SD_SEED, (N_SIM, n))
    a = MU_BIO + u + rng.normal(0, SD_TRIAL, (N_SIM, n))
    b = MU_UNI + (u if paired else rng.normal(0, SD_SEED, (N_SIM, n))) + rng.normal(0, SD_TRIAL, (N_SIM, n))
    return a, b


def coverage(lo: np.ndarray, hi: np.ndarray, truth: float) -> float:
    return float(np.mean((lo <= truth) & (truth <= hi)))


@pytest.mark.parametrize("n", [3, 5, 8])
def test_paired_ratio_interval_covers(n):
    a, b = synthetic_sweeps(n, seed=100 + n)
    res = stats.ratio_paired(a, b)
    assert 0.92 <= coverage(res["lo"], res["hi"], MU_BIO / MU_UNI - 1) <= 0.98


@pytest.mark.parametrize("n", [3, 5, 8])
def test_unpaired_ratio_interval_covers(n):
    a, b = synthetic_sweeps(n, seed=200 + n, paired=False)
    res = stats.ratio_unpaired(a, b)
    assert 0.92 <= coverage(res["lo"], res["hi"], MU_BIO / MU_UNI - 1) <= 0.98


@pytest.mark.parametrize("n", [3, 5, 8])
def test_mean_t_interval_covers(n):
    a, _ = synthetic_sweeps(n, seed=300 + n)
    m, s = a.mean(1), a.std(1, ddof=1)
    half = sps.t.ppf(0.975, n - 1) * s / np.sqrt(n)
    assert 0.92 <= coverage(m - half, m + half, MU_BIO) <= 0.98
    # the module's scalar function gives the same interval as the formula above
    for k in range(3):
        assert stats.t_interval(a[k]) == pytest.approx((m[k] - half[k], m[k] + half[k]), rel=1e-12)


def test_paired_interval_is_narrower_than_unpaired_when_seeds_share_variance():
    a, b = synthetic_sweeps(5, seed=7)
    p, u = stats.ratio_paired(a, b), stats.ratio_unpaired(a, b)
    assert np.median(p["hi"] - p["lo"]) < 0.6 * np.median(u["hi"] - u["lo"])
