"""`v1sweep analyze SWEEP`: robustness vs similarity to V1 over a sweep — report, figures, MLflow run."""
from __future__ import annotations

import argparse

HELP = "analyse a finished sweep from MLflow: robustness vs similarity to V1, with CIs, figures and a report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP", help="sweep name, sweep YAML file or sweep output directory")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store (default: $MLFLOW_TRACKING_URI, "
                        "else sqlite:///./mlflow.db)")
    parser.add_argument("--out", metavar="DIR", default=None, help="report folder (default: ./analysis/<sweep>)")
    parser.add_argument("--metric", default="corruption_acc", help="robustness metric (default corruption_acc)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--ci", type=float, default=0.95, help="confidence level (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--partial", action="store_true", help="analyse the finished trials of a sweep still running")
    parser.add_argument("--all-parents", action="store_true", help="pool trials of every run of the sweep")
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
                          models=not args.no_models)
    res = report.result
    c = report.counts
    print(f"sweep {report.sweep}: analysed {res.n_trials} finished trials "
          f"(failed {c['failed']}, stopped {c['stopped']}, running {c['running']}, interrupted {c['interrupted']})")
    for row in res.variants.itertuples():
        print(f"  {row.variant:<28} {res.metric} {row.mean:.4f} [{row.ci_lo:.4f}, {row.ci_hi:.4f}] n={row.n}"
              + (f"  ({row.note})" if row.note else ""))
    for row in res.relative[res.relative["metric"] == res.metric].itertuples():
        print(f"  {row.reference} vs {row.other}: {_pct(row.rel_diff)} [{_pct(row.ci_lo)}, {_pct(row.ci_hi)}]")
    for row in res.correlations.head(3).itertuples():
        print(f"  {res.metric} ~ {row.measure}: pearson {row.pearson_r:+.3f} [{row.pearson_lo:+.3f}, "
              f"{row.pearson_hi:+.3f}], spearman {row.spearman_rho:+.3f}, n={row.n}")
    for warning in res.warnings:
        print(f"  warning: {warning}")
    print(f"report: {report.files['report.md']} and {report.files['report.html']} ({len(report.files)} files)")
    if report.analysis_run_id:
        print(f"logged to MLflow as analysis run {report.analysis_run_id} under parent run {report.parent_run_id}")
    return 0
