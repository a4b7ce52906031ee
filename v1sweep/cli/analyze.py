"""`v1sweep analyze SWEEP`: robustness vs similarity to V1 over a sweep — report, figures, MLflow run."""
from __future__ import annotations

import argparse

from v1sweep.cli import options as opt

HELP = "analyse a finished sweep from MLflow: robustness vs similarity to V1, with CIs, figures and a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    opt.add_sweep(parser)
    opt.add_tracking_uri(parser)
    parser.add_argument("--out", metavar="DIR", default=None, help="report folder (default: ./analysis/<sweep>)")
    parser.add_argument("--metric", default=opt.DEFAULT_METRIC, help=f"robustness metric (default {opt.DEFAULT_METRIC})")
    parser.add_argument("--n-boot", type=int, default=2000, help="random draws of the model analyses: CKA "
                        "permutation null, and a tenth of it for the V1-benchmark ceilings (default 2000)")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="seed of those draws (default 0)")
    parser.add_argument("--adjust", choices=("holm", "bh"), default="holm",
                        help="multiple-test correction of the association tests: holm (family-wise error, "
                        "default) or bh (Benjamini-Hochberg false discovery rate)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--partial", action="store_true", help="analyse the finished trials of a sweep still running")
    opt.add_all_parents(parser, help="pool trials of every run of the sweep")
    parser.add_argument("--no-log", action="store_true", help="write the report locally only, not to MLflow")
    parser.add_argument("--no-models", action="store_true",
                        help="skip the trained-model analyses (electrophysiology, CKA, sub-populations)")


def main(args: argparse.Namespace) -> int:
    from v1sweep.errors import ConfigError

    if args.n_boot < 100:
        raise ConfigError(f"{args.n_boot} is too few; allowed: >= 100", key="--n-boot")
    if not 0 < args.ci < 1:
        raise ConfigError(f"{args.ci} is out of range; allowed: (0, 1)", key="--ci")
    from v1sweep.analysis.report import _pct, build_report

    report = build_report(args.sweep, tracking_uri=args.tracking_uri, out_dir=args.out, metric=args.metric,
                          n_boot=args.n_boot, ci=args.ci, seed=args.seed, partial=args.partial,
                          all_parents=args.all_parents, log_to_mlflow=not args.no_log,
                          models=not args.no_models, adjust=args.adjust, progress=not args.quiet)
    res = report.result
    c = report.counts
    print(f"sweep {report.sweep}: analysed {res.n_trials} finished trials "
          f"(failed {c['failed']}, stopped {c['stopped']}, running {c['running']}, interrupted {c['interrupted']})")
    pct = round(100 * res.ci)
    for row in res.variants.itertuples():
        ci = f"[{row.ci_lo:.4f}, {row.ci_hi:.4f}]" if row.n >= 3 else "(no interval)"
        print(f"  {row.variant:<28} {res.metric} {row.mean:.4f} {ci} n={row.n}" + (f"  ({row.note})" if row.note else ""))
    for row in res.relative[res.relative["metric"] == res.metric].itertuples():
        ci = (f"[{_pct(row.ci_lo)}, {_pct(row.ci_hi)}] ({pct}%, {row.method}, {row.n_pairs} seed pairs)"
              if row.method != "none" else f"(no interval: {row.note})")
        print(f"  {row.reference} vs {row.other}: {_pct(row.rel_diff)} {ci}")
    for row in res.correlations.head(3).itertuples():
        print(f"  {res.metric} ~ {row.measure}: between variants r {_r(row.between_r)} (n={row.n_variants}), "
              f"within variants r {_r(row.within_r)} (df={_r(row.within_df, '.0f')}, {res.adjust} p "
              f"{_r(row.within_p_adj, '.3g')})")
    for warning in res.warnings:
        print(f"  warning: {warning}")
    print(f"report: {report.files['report.md']} and {report.files['report.html']} ({len(report.files)} files)")
    if report.analysis_run_id:
        print(f"logged to MLflow as analysis run {report.analysis_run_id} under parent run {report.parent_run_id}")
    return 0


def _r(value: float, fmt: str = "+.3f") -> str:
    import math

    return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)
