"""Statistics of v1sweep.analysis.robustness checked against scipy and direct textbook formulas."""
from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from v1sweep.analysis import AnalysisError, get_analysis, list_analyses
from v1sweep.analysis import robustness as rb


def sweep_frame(seeds=(0, 1, 2, 3, 4), strategies=("biological", "unif1", "unif2"), seed=0) -> pd.DataFrame:
    """A `query.runs`-like table: strategy x seed, similarity driving robustness, plus noise."""
    rng = np.random.default_rng(seed)
    base = {"biological": 0.9, "unif1": 0.5, "unif2": 0.6, "unif3": 0.65}
    rows = []
    for s in strategies:
        for k in seeds:
            sim = base[s] + rng.normal(0, 0.04)
            clean = 0.6 + rng.normal(0, 0.02)
            corr = 0.2 + 0.15 * sim + 0.3 * (clean - 0.6) + rng.normal(0, 0.01)
            row = {"run_id": f"{s}{k}", "trial_id": f"{s}-{k}", "status": "finished", "params.name": f"trial-{s}-{k}",
                   "params.rf.strategy": s, "params.train.seed": k, "params.rf.seed": k, "params.frontend.k_exc": 25.0,
                   "params.eval.corruptions": ("gaussian_noise", "fog"), "metrics.clean_acc": clean,
                   "metrics.corruption_acc": corr, "metrics.rf_similarity": sim,
                   "metrics.rf_similarity/ori": sim + rng.normal(0, 0.05),
                   "metrics.rf_wasserstein/sf": 1 - sim + rng.normal(0, 0.05)}
            for cat in ("noise", "blur", "weather", "digital"):
                row[f"metrics.corruption_acc/{cat}"] = corr + rng.normal(0, 0.02)
            rows.append(row)
    return pd.DataFrame(rows)


def direct_bootstrap(values, n_boot, ci, seed, stat=np.mean):
    """The textbook percentile bootstrap, one resample at a time."""
    rng = np.random.default_rng(seed)
    x = np.asarray(values, dtype=float)
    boots = [stat(x[rng.integers(0, len(x), len(x))]) for _ in range(n_boot)]
    return tuple(np.percentile(boots, [100 * (1 - ci) / 2, 100 * (1 + ci) / 2]))


def residual_partial(x, y, z):
    """Partial correlation as the Pearson r of regression residuals (np.polyfit, degree 1)."""
    rx = x - np.polyval(np.polyfit(z, x, 1), z)
    ry = y - np.polyval(np.polyfit(z, y, 1), z)
    return stats.pearsonr(rx, ry).statistic


def ols_t_pvalue(x, y, z):
    """Two-sided p-value of x's coefficient in y ~ 1 + z + x (equals the partial-correlation test)."""
    design = np.column_stack([np.ones_like(x), z, x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    dof = len(y) - 3
    sigma2 = resid @ resid / dof
    se = np.sqrt(sigma2 * np.linalg.inv(design.T @ design)[2, 2])
    return 2 * stats.t.sf(abs(beta[2] / se), dof)


# ---------------------------------------------------------------------------------------------
# primitives
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, ci, seed", [(5, 0.95, 0), (2, 0.9, 3), (40, 0.8, 7)])
def test_bootstrap_ci_equals_direct_percentile_bootstrap(n, ci, seed):
    values = np.random.default_rng(100 + n).normal(0.4, 0.05, n)
    got = rb.bootstrap_ci(values, n_boot=500, ci=ci, seed=seed)
    assert got == pytest.approx(direct_bootstrap(values, 500, ci, seed), abs=1e-12)
    assert got[0] <= values.mean() <= got[1]
    median = rb.bootstrap_ci(values, np.median, n_boot=300, ci=ci, seed=seed)
    assert median == pytest.approx(direct_bootstrap(values, 300, ci, seed, np.median), abs=1e-12)


def test_bootstrap_ci_undefined_below_two_values():
    assert all(np.isnan(rb.bootstrap_ci([0.5])))
    assert all(np.isnan(rb.bootstrap_ci([])))
    assert rb.ci_note(1) == "n=1: CI undefined" and "wide" in rb.ci_note(2) and rb.ci_note(3) == ""


def test_relative_difference_and_its_two_sample_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.39, 0.01, 5), rng.normal(0.36, 0.01, 6)
    value, lo, hi = rb.relative_difference(a, b, n_boot=400, ci=0.95, seed=5)
    assert value == pytest.approx((a.mean() - b.mean()) / b.mean())
    # direct: resample a (all B draws), then b, from one generator, as documented
    g = np.random.default_rng(5)
    ia = [g.integers(0, 5, 5) for _ in range(400)]
    ib = [g.integers(0, 6, 6) for _ in range(400)]
    boots = [(a[i].mean() - b[j].mean()) / b[j].mean() for i, j in zip(ia, ib)]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(boots, [2.5, 97.5])), abs=1e-12)
    v, lo, hi = rb.relative_difference([0.4], [0.3, 0.31])
    assert v == pytest.approx(0.4 / 0.305 - 1) and np.isnan(lo) and np.isnan(hi)


def test_correlation_cis_equal_direct_loops_with_scipy():
    rng = np.random.default_rng(2)
    z = rng.normal(size=12)
    x = rng.normal(size=12) + 0.5 * z
    y = 0.6 * x + 0.4 * z + rng.normal(0, 0.5, 12)
    for kind, fn in (("pearson", lambda i: stats.pearsonr(x[i], y[i]).statistic),
                     ("spearman", lambda i: stats.spearmanr(x[i], y[i]).statistic),
                     ("partial", lambda i: residual_partial(x[i], y[i], z[i]))):
        got = rb.correlation_ci(x, y, kind, z=z if kind == "partial" else None, n_boot=300, ci=0.9, seed=4)
        g = np.random.default_rng(4)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant resamples (NaN, dropped below)
            boots = np.array([fn(g.integers(0, 12, 12)) for _ in range(300)])
        boots = boots[np.isfinite(boots)]
        assert got == pytest.approx(tuple(np.percentile(boots, [5, 95])), abs=1e-9), kind


def test_bootstrap_cis_of_tiny_samples_stay_in_range():
    # Four trials of a smoke sweep: resamples with two distinct points make the closed-form partial
    # correlation 0/0 (round-off gave 1.06 here before degenerate resamples became NaN).
    x = np.array([0.88906787, 0.72477564, 0.91667672, 0.74316631])
    y = np.array([0.219, 0.14077778, 0.17822222, 0.15855556])
    z = np.array([0.225, 0.145, 0.205, 0.17])
    for kind in ("pearson", "spearman", "partial"):
        lo, hi = rb.correlation_ci(x, y, kind, z=z, n_boot=2000)
        assert -1 <= lo <= hi <= 1, kind


def test_partial_corr_against_residuals_closed_form_and_ols():
    rng = np.random.default_rng(3)
    z = rng.normal(size=30)
    x = z + rng.normal(size=30)
    y = 0.5 * x - 0.8 * z + rng.normal(size=30)
    r, p = rb.partial_corr(x, y, z)
    assert r == pytest.approx(residual_partial(x, y, z), abs=1e-12)
    rxy, rxz, ryz = (stats.pearsonr(u, v).statistic for u, v in ((x, y), (x, z), (y, z)))
    assert r == pytest.approx((rxy - rxz * ryz) / np.sqrt((1 - rxz ** 2) * (1 - ryz ** 2)), abs=1e-12)
    assert p == pytest.approx(ols_t_pvalue(x, y, z), rel=1e-9)
    assert all(np.isnan(rb.partial_corr(x[:3], y[:3], z[:3])))


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def test_variants_are_the_varying_params_without_seeds_or_names():
    frame = sweep_frame()
    assert rb.variant_columns(frame) == ["params.rf.strategy"]
    assert list(rb.variant_labels(frame).unique()) == ["biological", "unif1", "unif2"]
    frame["params.frontend.k_exc"] = [25.0, 23.0] * 7 + [25.0]
    assert rb.variant_columns(frame) == ["params.rf.strategy", "params.frontend.k_exc"]
    assert rb.variant_labels(frame).iloc[1] == "biological, frontend.k_exc=23.0"
    one = sweep_frame(strategies=("biological",))
    assert rb.variant_columns(one) == [] and set(rb.variant_labels(one)) == {"all"}


def test_variant_summary_means_cis_and_notes():
    frame = sweep_frame()
    table = rb.variant_summary(frame, n_boot=300, seed=2)
    expected = frame.groupby("params.rf.strategy", sort=False)["metrics.corruption_acc"]
    assert list(table["variant"]) == list(expected.groups)
    for row in table.itertuples():
        vals = frame.loc[frame["params.rf.strategy"] == row.variant, "metrics.corruption_acc"].to_numpy()
        assert row.n == 5 and row.mean == pytest.approx(vals.mean()) and row.std == pytest.approx(vals.std(ddof=1))
        assert (row.ci_lo, row.ci_hi) == pytest.approx(direct_bootstrap(vals, 300, 0.95, 2), abs=1e-12)
        assert row.note == ""
    few = sweep_frame(seeds=(0,), strategies=("biological",)).pipe(
        lambda f: pd.concat([f, sweep_frame(seeds=(0, 1), strategies=("unif1",))], ignore_index=True))
    table = rb.variant_summary(few).set_index("variant")
    assert np.isnan(table.loc["biological", "ci_lo"]) and "undefined" in table.loc["biological", "note"]
    assert np.isfinite(table.loc["unif1", "ci_lo"]) and "wide" in table.loc["unif1", "note"]


def test_relative_differences_table():
    frame = sweep_frame(strategies=("biological", "unif1", "unif3"))
    rel = rb.relative_differences(frame, n_boot=200)
    assert list(zip(rel["metric"], rel["other"])) == [("corruption_acc", "unif1"), ("corruption_acc", "unif3"),
                                                     ("clean_acc", "unif1"), ("clean_acc", "unif3")]
    row = rel.iloc[0]
    bio = frame.loc[frame["params.rf.strategy"] == "biological", "metrics.corruption_acc"].mean()
    uni = frame.loc[frame["params.rf.strategy"] == "unif1", "metrics.corruption_acc"].mean()
    assert row["rel_diff"] == pytest.approx((bio - uni) / uni) and row["rel_diff"] > 0
    assert row["ci_lo"] < row["rel_diff"] < row["ci_hi"]
    assert rb.relative_differences(sweep_frame(strategies=("unif1", "unif2"))).empty


def test_correlations_match_scipy():
    frame = sweep_frame(seed=4)
    table = rb.correlations(frame, n_boot=200).set_index("measure")
    assert list(table.index) == ["rf_similarity", "rf_similarity/ori", "rf_wasserstein/sf"]
    y, z = frame["metrics.corruption_acc"].to_numpy(), frame["metrics.clean_acc"].to_numpy()
    for measure, row in table.iterrows():
        x = frame[f"metrics.{measure}"].to_numpy()
        pr, sr = stats.pearsonr(x, y), stats.spearmanr(x, y)
        assert (row.pearson_r, row.pearson_p) == pytest.approx((pr.statistic, pr.pvalue), rel=1e-9)
        assert (row.spearman_rho, row.spearman_p) == pytest.approx((sr.statistic, sr.pvalue), rel=1e-9)
        assert row.partial_r == pytest.approx(residual_partial(x, y, z), abs=1e-12)
        assert row.partial_p == pytest.approx(ols_t_pvalue(x, y, z), rel=1e-9)
        assert row.pearson_lo <= row.pearson_r <= row.pearson_hi and row.n == 15
    assert table.loc["rf_similarity", "pearson_r"] > 0.5 > -0.5 > table.loc["rf_wasserstein/sf", "pearson_r"]
    assert "distance" in table.loc["rf_wasserstein/sf", "note"]


def test_correlations_with_too_few_or_constant_values():
    frame = sweep_frame(seeds=(0,), strategies=("biological", "unif1"))
    row = rb.correlations(frame).iloc[0]
    assert row.n == 2 and np.isnan(row.pearson_r) and np.isnan(row.pearson_lo) and "undefined" in row.note
    frame = sweep_frame()
    frame["metrics.rf_similarity"] = 0.7
    row = rb.correlations(frame, measures=["rf_similarity"]).iloc[0]
    assert np.isnan(row.pearson_r) and "constant" in row.note


def test_category_breakdown_means():
    frame = sweep_frame()
    table = rb.category_breakdown(frame, n_boot=100)
    assert list(table["category"].unique()) == ["noise", "blur", "weather", "digital"]
    assert len(table) == 12
    for row in table.itertuples():
        mask = frame["params.rf.strategy"] == row.variant
        assert row.mean == pytest.approx(frame.loc[mask, f"metrics.corruption_acc/{row.category}"].mean())


def test_alpha_curves_and_trend():
    rng = np.random.default_rng(6)
    rows = []
    for alpha in (0.0, 0.25, 0.5, 1.0):
        for seed in range(3):
            rows.append({"params.rf.strategy": "interpolated", "params.rf.alpha": alpha, "params.rf.alpha_sf": None,
                         "params.train.seed": seed, "metrics.clean_acc": 0.6,
                         "metrics.corruption_acc": 0.35 + 0.04 * alpha + rng.normal(0, 0.003)})
    frame = pd.DataFrame(rows)
    assert rb.alpha_params(frame) == ["rf.alpha"]
    curves, trend = rb.alpha_curves(frame, n_boot=100)
    assert list(curves["alpha"]) == [0.0, 0.25, 0.5, 1.0] and set(curves["n"]) == {3}
    for row in curves.itertuples():
        at_alpha = frame.loc[frame["params.rf.alpha"] == row.alpha, "metrics.corruption_acc"]
        assert row.mean == pytest.approx(at_alpha.mean())
    x, y = frame["params.rf.alpha"].to_numpy(), frame["metrics.corruption_acc"].to_numpy()
    t = trend.iloc[0]
    assert t.pearson_r == pytest.approx(stats.pearsonr(x, y).statistic)
    assert t.spearman_rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert t.slope == pytest.approx(np.polyfit(x, y, 1)[0]) and 0.02 < t.slope < 0.06


def test_analyze_frame_warns_about_few_seeds_and_errors_clearly():
    frame = pd.concat([sweep_frame(seeds=(0, 1), strategies=("biological",)),
                       sweep_frame(seeds=(0, 1, 2), strategies=("unif1",))], ignore_index=True)
    result = rb.analyze_frame(frame, n_boot=100)
    assert result.n_trials == 5 and result.variant_columns == ["params.rf.strategy"]
    assert any("'biological' has 2 seed(s)" in w and "wide" in w for w in result.warnings)
    assert not any("unif1' has" in w for w in result.warnings)
    assert any("biological vs unif1" in w for w in result.warnings)
    with pytest.raises(AnalysisError, match="no finished trials"):
        rb.analyze_frame(frame.iloc[:0])
    with pytest.raises(AnalysisError, match="metric 'acc' is not in the runs; metrics: .*clean_acc"):
        rb.analyze_frame(frame, "acc")


def test_registry_is_light_and_resolves():
    assert {"robustness", "report"} <= set(list_analyses())
    assert get_analysis("robustness") is rb.analyze_frame
    code = ("import sys, v1sweep.analysis, v1sweep.analysis.robustness; "
            "print(sorted(m for m in ('torch', 'mlflow', 'matplotlib', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("name", list_analyses())
def test_every_registered_analysis_resolves_to_a_callable(name):
    assert callable(get_analysis(name))
