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
from v1sweep.testing.analysis import AnalysisContract
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


def test_ci_note_gives_no_interval_below_three_seeds_and_the_seeds_needed():
    assert "no interval" in rb.ci_note(1) and "unknown" in rb.ci_note(1) and rb.ci_note(3, 0.01) == ""
    note = rb.ci_note(2, 0.01, precision=0.005)
    # textbook: smallest n with t_{n-1} * sd / sqrt(n) <= 0.005 at sd = 0.01
    need = next(n for n in range(2, 1000) if stats.t.ppf(0.975, n - 1) * 0.01 / np.sqrt(n) <= 0.005)
    assert "no interval" in note and f"needs {need} seeds" in note and need == 18


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


def test_variant_summary_means_t_intervals_and_notes():
    frame = sweep_frame()
    table = rb.variant_summary(frame)
    expected = frame.groupby("params.rf.strategy", sort=False)["metrics.corruption_acc"]
    assert list(table["variant"]) == list(expected.groups)
    for row in table.itertuples():
        vals = frame.loc[frame["params.rf.strategy"] == row.variant, "metrics.corruption_acc"].to_numpy()
        assert row.n == 5 and row.mean == pytest.approx(vals.mean()) and row.std == pytest.approx(vals.std(ddof=1))
        ref = stats.t.interval(0.95, 4, loc=vals.mean(), scale=stats.sem(vals))
        assert (row.ci_lo, row.ci_hi) == pytest.approx(ref, rel=1e-12)
        assert row.note == ""
    few = sweep_frame(seeds=(0,), strategies=("biological",)).pipe(
        lambda f: pd.concat([f, sweep_frame(seeds=(0, 1), strategies=("unif1",))], ignore_index=True))
    table = rb.variant_summary(few).set_index("variant")
    assert np.isnan(table.loc["biological", "ci_lo"]) and "no interval" in table.loc["biological", "note"]
    assert np.isnan(table.loc["unif1", "ci_lo"]) and "seeds" in table.loc["unif1", "note"]


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


def fieller_textbook(a, b, paired, level=0.95):
    """Fieller's interval for E[a]/E[b] by brute force: the rho on a fine grid whose t statistic
    |mean_a - rho mean_b| / SE(mean_a - rho mean_b) is within the t quantile."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rho = np.linspace(0.5, 1.6, 220001)
    if paired:
        d = a[None, :] - rho[:, None] * b[None, :]
        se, df = d.std(axis=1, ddof=1) / np.sqrt(len(a)), len(a) - 1
        tstat = np.abs(d.mean(axis=1)) / se
        inside = tstat <= stats.t.ppf(0.5 + level / 2, df)
    else:
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        r = a.mean() / b.mean()
        df = (va + r * r * vb) ** 2 / (va ** 2 / (len(a) - 1) + (r * r * vb) ** 2 / (len(b) - 1))
        tstat = np.abs(a.mean() - rho * b.mean()) / np.sqrt(va + rho ** 2 * vb)
        inside = tstat <= stats.t.ppf(0.5 + level / 2, df)
    return rho[inside].min() - 1, rho[inside].max() - 1


def test_relative_difference_paired_when_seeds_pair_unpaired_otherwise():
    frame = sweep_frame(strategies=("biological", "unif1"))
    rel = rb.relative_differences(frame, ["corruption_acc"]).iloc[0]
    a = frame.loc[frame["params.rf.strategy"] == "biological"].sort_values("params.train.seed")
    b = frame.loc[frame["params.rf.strategy"] == "unif1"].sort_values("params.train.seed")
    x, y = a["metrics.corruption_acc"].to_numpy(), b["metrics.corruption_acc"].to_numpy()
    assert rel.method == "paired Fieller" and rel.n_pairs == 5 and "paired on 5 seed pairs" in rel.note
    assert rel.rel_diff == pytest.approx(x.mean() / y.mean() - 1)
    assert (rel.ci_lo, rel.ci_hi) == pytest.approx(fieller_textbook(x, y, True), abs=2e-5)
    assert rel.p == pytest.approx(stats.ttest_rel(x, y).pvalue)
    # the same trials with seeds that do not pair (unif1 ran seeds 10..14): unpaired Welch-Fieller
    frame.loc[frame["params.rf.strategy"] == "unif1", ["params.train.seed", "params.rf.seed"]] += 10
    rel = rb.relative_differences(frame, ["corruption_acc"]).iloc[0]
    assert rel.method.startswith("unpaired") and rel.n_pairs == 0 and "0 seed pair(s) shared" in rel.note
    assert (rel.ci_lo, rel.ci_hi) == pytest.approx(fieller_textbook(x, y, False), abs=2e-5)
    assert rel.p == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)


def test_relative_difference_below_three_seeds_has_no_interval_and_says_how_many():
    frame = sweep_frame(seeds=(0, 1), strategies=("biological", "unif1"))
    rel = rb.relative_differences(frame, ["corruption_acc"]).iloc[0]
    assert rel.method == "none" and np.isnan(rel.ci_lo) and np.isfinite(rel.rel_diff)
    assert "no interval" in rel.note and "seeds per strategy" in rel.note


def confounded_frame(seed=4, n_seeds=6):
    """Variant identity drives both similarity and robustness; within variants a weaker true link."""
    rng = np.random.default_rng(seed)
    rows = []
    for s, (sim0, acc0) in {"biological": (0.9, 0.45), "unif1": (0.5, 0.40), "unif2": (0.6, 0.38),
                            "unif3": (0.7, 0.44)}.items():
        for k in range(n_seeds):
            dev = rng.normal(0, 0.03)
            clean = 0.6 + rng.normal(0, 0.01)
            rows.append({"run_id": f"{s}{k}", "params.rf.strategy": s, "params.train.seed": k,
                         "metrics.rf_similarity": sim0 + dev, "metrics.clean_acc": clean,
                         "metrics.corruption_acc": acc0 + 0.1 * dev + 0.2 * (clean - 0.6) + rng.normal(0, 0.002),
                         "metrics.rf_wasserstein/sf": 1 - sim0 - dev + rng.normal(0, 0.01)})
    return pd.DataFrame(rows)


def test_correlations_between_and_within_variants_against_textbook():
    frame = confounded_frame()
    table = rb.correlations(frame).set_index("measure")
    assert list(table.index) == ["rf_similarity", "rf_wasserstein/sf"]
    g = frame.groupby("params.rf.strategy")
    for measure, row in table.iterrows():
        col = f"metrics.{measure}"
        # between: scipy on the 4 variant means, Fisher-z interval with n - 3 = 1
        mx, my = g[col].mean(), g["metrics.corruption_acc"].mean()
        ref = stats.pearsonr(mx, my)
        assert row.n_variants == 4 and (row.between_r, row.between_p) == pytest.approx((ref.statistic, ref.pvalue))
        z = np.arctanh(ref.statistic)
        assert (row.between_lo, row.between_hi) == pytest.approx(np.tanh([z - 1.959964, z + 1.959964]), abs=1e-5)
        # within = the OLS t-test of x in y ~ variant dummies + x (df = n - 4 - 1)
        dummies = pd.get_dummies(frame["params.rf.strategy"]).to_numpy(float)
        x, y = frame[col].to_numpy(), frame["metrics.corruption_acc"].to_numpy()
        design = np.column_stack([dummies, x])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ beta
        dof = len(y) - design.shape[1]
        se = np.sqrt(resid @ resid / dof * np.linalg.inv(design.T @ design)[-1, -1])
        assert row.within_df == dof and row.within_p == pytest.approx(2 * stats.t.sf(abs(beta[-1] / se), dof))
        # within partial given clean acc = the OLS t-test of x in y ~ dummies + clean + x
        design = np.column_stack([dummies, frame["metrics.clean_acc"], x])
        beta, *_ = np.linalg.lstsq(design, y, rcond=None)
        resid = y - design @ beta
        dof = len(y) - design.shape[1]
        se = np.sqrt(resid @ resid / dof * np.linalg.inv(design.T @ design)[-1, -1])
        assert row.within_partial_p == pytest.approx(2 * stats.t.sf(abs(beta[-1] / se), dof))
    assert table.loc["rf_similarity", "within_r"] > 0.5 and table.loc["rf_wasserstein/sf", "within_r"] < -0.5
    assert "distance" in table.loc["rf_wasserstein/sf", "note"]


def test_correlations_with_too_few_or_constant_values():
    frame = sweep_frame(seeds=(0,), strategies=("biological", "unif1"))
    row = rb.correlations(frame).iloc[0]
    assert row.n_trials == 2 and np.isnan(row.between_r) and np.isnan(row.within_r) and "undefined" in row.note
    frame = sweep_frame()
    frame["metrics.rf_similarity"] = 0.7
    row = rb.correlations(frame, measures=["rf_similarity"]).iloc[0]
    assert np.isnan(row.between_r) and np.isnan(row.within_r)


def test_holm_and_bh_match_statsmodels():
    from statsmodels.stats.multitest import multipletests

    from v1sweep.analysis import stats as st

    p = np.array([0.01, 0.04, np.nan, 0.03, 0.5, 0.002])
    ok = np.isfinite(p)
    for mine, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        got = st.adjust_pvalues(p, mine)
        assert np.isnan(got[2]) and got[ok] == pytest.approx(multipletests(p[ok], method=theirs)[1])


def test_category_breakdown_means():
    frame = sweep_frame()
    table = rb.category_breakdown(frame, n_boot=100)
    assert list(table["category"].unique()) == ["noise", "blur", "weather", "digital"]
    assert len(table) == 12
    for row in table.itertuples():
        mask = frame["params.rf.strategy"] == row.variant
        assert row.mean == pytest.approx(frame.loc[mask, f"metrics.corruption_acc/{row.category}"].mean())


def test_alpha_curves_and_seed_clustered_trend():
    rng = np.random.default_rng(6)
    rows = []
    for seed in range(4):
        offset = rng.normal(0, 0.01)  # a seed effect shared by all alphas of that seed
        for alpha in (0.0, 0.25, 0.5, 1.0):
            rows.append({"params.rf.strategy": "interpolated", "params.rf.alpha": alpha, "params.rf.alpha_sf": None,
                         "params.train.seed": seed, "metrics.clean_acc": 0.6,
                         "metrics.corruption_acc": 0.35 + offset + 0.04 * alpha + rng.normal(0, 0.003)})
    frame = pd.DataFrame(rows)
    assert rb.alpha_params(frame) == ["rf.alpha"]
    curves, trend = rb.alpha_curves(frame)
    assert list(curves["alpha"]) == [0.0, 0.25, 0.5, 1.0] and set(curves["n"]) == {4}
    for row in curves.itertuples():
        at_alpha = frame.loc[frame["params.rf.alpha"] == row.alpha, "metrics.corruption_acc"]
        assert row.mean == pytest.approx(at_alpha.mean())
    x, y = frame["params.rf.alpha"].to_numpy(), frame["metrics.corruption_acc"].to_numpy()
    t = trend.iloc[0]
    slopes = [stats.linregress(g["params.rf.alpha"], g["metrics.corruption_acc"]).slope
              for _, g in frame.groupby("params.train.seed")]
    ref = stats.ttest_1samp(slopes, 0.0)
    assert t.n_seeds == 4 and t.slope == pytest.approx(np.mean(slopes)) and t.slope_p == pytest.approx(ref.pvalue)
    assert (t.slope_lo, t.slope_hi) == pytest.approx(stats.t.interval(0.95, 3, np.mean(slopes), stats.sem(slopes)))
    assert t.spearman_rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert t.pooled_slope == pytest.approx(np.polyfit(x, y, 1)[0]) and 0.02 < t.slope < 0.06


def test_analyze_frame_warns_about_few_seeds_and_errors_clearly():
    frame = pd.concat([sweep_frame(seeds=(0, 1), strategies=("biological",)),
                       sweep_frame(seeds=(0, 1, 2), strategies=("unif1",))], ignore_index=True)
    result = rb.analyze_frame(frame)
    assert result.n_trials == 5 and result.variant_columns == ["params.rf.strategy"]
    assert any("'biological' has 2 seed(s)" in w and "no interval" in w for w in result.warnings)
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


class TestEveryRegisteredAnalysis(AnalysisContract):
    """Each registered analysis resolves to a callable (`check_analysis`) and declares its metadata."""
