"""`v1sweep best SWEEP`: the best trials of a sweep from MLflow, as a table, JSON or a config file."""
from __future__ import annotations

import argparse

from v1sweep import contracts as C
from v1sweep.cli import options as opt

HELP = "the best trials of a sweep (from MLflow); --export writes the winner's config for `v1sweep train`"

DEFAULT_METRIC = opt.DEFAULT_METRIC
SHOWN_METRICS = (C.CLEAN_ACC, C.CORRUPTION_ACC, C.RF_SIMILARITY)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    opt.add_sweep(parser)
    parser.add_argument("--metric", "-m", default=None,
                        help=f"final metric to rank by (default: the sweep file's metric, else {DEFAULT_METRIC})")
    parser.add_argument("-k", type=int, default=5, help="how many trials (default 5)")
    opt.add_mode(parser, help="max (default) or min")
    parser.add_argument("--filter", default=None,
                        help="MLflow filter, e.g. \"params.rf.strategy = 'biological'\" (dotted keys may be bare)")
    opt.add_json(parser, help="print JSON instead of a table")
    parser.add_argument("--export", metavar="FILE", default=None,
                        help="write the best trial's config YAML here (ready for `v1sweep train`)")
    opt.add_tracking_uri(parser)
    opt.add_all_parents(parser, help="include trials of earlier runs of the sweep, not only the latest")
    parser.add_argument("--include-failed", action="store_true", help="rank failed trials too")
    parser.add_argument("--include-stopped", action="store_true", help="rank early-stopped trials too")


def main(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from v1sweep.config import trial as cfg
    from v1sweep.results import query as query
    from v1sweep.results.store import mask_uri

    ref = query.resolve_sweep(args.sweep, tracking_uri=args.tracking_uri)
    metric = args.metric or ref.metric or DEFAULT_METRIC
    metric = metric[len("metrics."):] if metric.startswith("metrics.") else metric
    mode = args.mode or (ref.mode if args.metric is None and ref.mode in ("max", "min") else None) or "max"
    table = query.runs(ref, args.filter, include_failed=args.include_failed,
                       include_stopped=args.include_stopped, all_parents=args.all_parents)
    if table.empty:
        raise query.QueryError(f"sweep {args.sweep!r} has no finished trials"
                               f"{' matching the filter' if args.filter else ''} yet; see `v1sweep status`")
    top = query.best(table, metric, k=args.k, mode=mode)
    if top.empty:
        raise query.QueryError(f"no trial of sweep {args.sweep!r} logged {metric!r}")

    if args.export:
        config = query.config_of(top.loc[0, "run_id"], tracking_uri=ref.tracking_uri)
        out = Path(args.export)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(f"# best trial {top.loc[0, 'trial_id']} of sweep {args.sweep} by {metric} ({mode}); "
                       f"MLflow run {top.loc[0, 'run_id']}\n" + cfg.to_yaml(config))

    if args.json:
        doc = {"sweep": ref.name or args.sweep, "metric": metric, "mode": mode,
               "tracking_uri": mask_uri(ref.tracking_uri), "exported": args.export,
               "trials": [{"rank": i + 1, "value": rec["metrics"].get(metric), **rec}
                          for i, rec in enumerate(query.to_records(top))]}
        print(json.dumps(doc, indent=2, default=str))
        return 0

    print(format_table(top, metric, exclude_params=("params.name",)))
    print(f"\n{len(top)} of {len(table)} finished trials by {metric} ({mode}); store {mask_uri(ref.tracking_uri)}")
    if args.export:
        print(f"wrote {args.export}: config of trial {top.loc[0, 'trial_id']} (run {top.loc[0, 'run_id']}); "
              f"train it with `v1sweep train {args.export} --out DIR`")
    return 0


def format_table(top, metric: str, exclude_params=()) -> str:
    """A compact text table: rank, trial, run, the metric, headline metrics, the params that vary."""
    from v1sweep.results import query as query

    col = metric if metric.startswith("metrics.") else f"metrics.{metric}"
    shown = [col] + [f"metrics.{m}" for m in SHOWN_METRICS if f"metrics.{m}" in top.columns and f"metrics.{m}" != col]
    varying = [c for c in query.varying_params(top, exclude=exclude_params)]
    view = top[["trial_id", "run_id"] + shown + varying].copy()
    view.insert(0, "rank", range(1, len(view) + 1))
    view.columns = [c.split(".", 1)[1] if c.startswith(("metrics.", "params.")) else c for c in view.columns]
    return view.to_string(index=False, float_format=lambda v: f"{v:.4f}")
