"""A plain baseline (frontend.enabled false) pooled with V1 variants (sweeps/study_cifar10_cpu*.yaml)
is its own variant, `baseline`, paired by seed with the reference strategy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from v1sweep.analysis import robustness as rb


def study_frame() -> pd.DataFrame:
    """biological and unif1 with the V1 block, and a baseline that kept rf.strategy=biological."""
    rng = np.random.default_rng(3)
    rows = []
    for arm, strategy, enabled, level in (("b", "biological", True, 0.50), ("u", "unif1", True, 0.45),
                                          ("p", "biological", False, 0.40)):
        for k in range(5):
            rows.append({"run_id": f"{arm}{k}", "trial_id": f"{arm}-{k}", "status": "finished",
                         "params.rf.strategy": strategy, "params.frontend.enabled": enabled,
                         "params.train.seed": k, "params.rf.seed": k,
                         "metrics.clean_acc": 0.6 + rng.normal(0, 0.01),
                         "metrics.corruption_acc": level + 0.01 * k + rng.normal(0, 0.005)})
    return pd.DataFrame(rows)


def test_baseline_is_its_own_variant_and_pairs_with_the_reference_by_seed():
    frame = study_frame()
    result = rb.analyze_frame(frame, "corruption_acc")
    assert sorted(set(result.labels)) == ["baseline", "biological", "unif1"]
    assert set(result.variants["variant"]) == {"baseline", "biological", "unif1"}
    rel = result.relative.set_index(["metric", "other"]).loc[("corruption_acc", "baseline")]
    bio = frame[frame["params.frontend.enabled"] & (frame["params.rf.strategy"] == "biological")]
    base = frame[~frame["params.frontend.enabled"]]
    x = bio.sort_values("params.train.seed")["metrics.corruption_acc"].to_numpy()
    y = base.sort_values("params.train.seed")["metrics.corruption_acc"].to_numpy()
    assert rel["n_pairs"] == 5 and rel["method"] == "paired Fieller"
    assert rel["rel_diff"] == pytest.approx(x.mean() / y.mean() - 1)   # the baseline is not in the biological group
    assert rel["p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)


def test_frames_without_a_baseline_are_unchanged():
    frame = study_frame()
    v1 = frame[frame["params.frontend.enabled"]].reset_index(drop=True)
    assert rb.baseline_as_variant(v1) is v1
    no_col = v1.drop(columns=["params.frontend.enabled"])
    assert rb.baseline_as_variant(no_col) is no_col
