"""`v1sweep status SWEEP`: how far a sweep got — trials by state and the best so far, from MLflow."""
from __future__ import annotations

import argparse

from v1sweep import contracts as C
from v1sweep.cli import options as opt

HELP = "a sweep's progress from MLflow: trials finished / failed / stopped / running, best so far"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    opt.add_sweep(parser)
    parser.add_argument("--metric", "-m", default=None,
                        help=f"metric for 'best so far' (default: the sweep file's metric, else {opt.DEFAULT_METRIC})")
    opt.add_mode(parser)
    opt.add_tracking_uri(parser)
    opt.add_all_parents(parser, help="count trials of earlier runs of the sweep too")
    opt.add_json(parser)


def sweep_status(sweep, *, metric: str | None = None, mode: str | None = None, tracking_uri: str | None = None,
                 all_parents: bool = False) -> dict:
    """Counts by state, the parent run and the best finished trial, as a JSON-ready dict."""
    from v1sweep.results import query as query
    from v1sweep.results.store import mask_uri

    ref = query.resolve_sweep(sweep, tracking_uri=tracking_uri)
    parents = query.parent_runs(ref)
    metric = metric or ref.metric or opt.DEFAULT_METRIC
    mode = mode or (ref.mode if ref.mode in opt.MODES else None) or "max"
    table = query.runs(ref, include_failed=True, include_stopped=True, include_running=True,
                       all_parents=all_parents)
    parent = parents[0]
    out = {"sweep": parent.data.tags.get(C.SWEEP, ref.name), "parent_run_id": parent.info.run_id,
           "parent_status": parent.info.status, "experiment_id": parent.info.experiment_id,
           "sweep_dir": parent.data.tags.get(C.SWEEP_DIR), "parents": len(parents),
           "tracking_uri": mask_uri(ref.tracking_uri), "counts": query.status_counts(table),
           "metric": metric, "mode": mode, "best": None,
           "failed": [{"trial_id": r["trial_id"], "run_id": r["run_id"], "error": r["error"]}
                      for r in table[table["status"] == "failed"].to_dict(orient="records")]}
    finished = table[table["status"] == "finished"]
    col = f"metrics.{metric}"
    if col in finished.columns and finished[col].notna().any():
        top = query.best(finished, metric, k=1, mode=mode)
        out["best"] = {"trial_id": top.loc[0, "trial_id"], "run_id": top.loc[0, "run_id"],
                       "value": float(top.loc[0, col])}
    return out


def main(args: argparse.Namespace) -> int:
    import json

    info = sweep_status(args.sweep, metric=args.metric, mode=args.mode, tracking_uri=args.tracking_uri,
                        all_parents=args.all_parents)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    c = info["counts"]
    print(f"sweep {info['sweep']}  parent run {info['parent_run_id']} ({info['parent_status']}), "
          f"experiment {info['experiment_id']}")
    print(f"store {info['tracking_uri']}" + (f"; sweep dir {info['sweep_dir']}" if info["sweep_dir"] else ""))
    if info["parents"] > 1:
        print(f"{info['parents']} runs of this sweep in the store; counting "
              f"{'all' if args.all_parents else 'the latest (--all-parents for all)'}")
    print(f"trials {c['total']}: finished {c['finished']}, failed {c['failed']}, stopped {c['stopped']}, "
          f"running {c['running']}" + (f", interrupted {c['interrupted']}" if c["interrupted"] else ""))
    if c["interrupted"] or (c["running"] and info["parent_status"] != "RUNNING"):
        print("  (unfinished trials of a sweep whose driver ended were interrupted: "
              "`v1sweep resume SWEEP_DIR` continues them)")
    best = info["best"]
    if best:
        print(f"best so far by {info['metric']} ({info['mode']}): {best['value']:.4f}  "
              f"trial {best['trial_id']}  run {best['run_id']}")
    else:
        print(f"best so far by {info['metric']}: none (no finished trial logged it yet)")
    for fail in info["failed"][:10]:
        error = (fail["error"] or "no error recorded").strip().splitlines()
        print(f"  failed {fail['trial_id']}: {error[-1] if error else ''}")
    if len(info["failed"]) > 10:
        print(f"  ... and {len(info['failed']) - 10} more failed trials")
    return 0
