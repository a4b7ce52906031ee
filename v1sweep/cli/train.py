"""`v1sweep train CONFIG.yaml [--set key=value ...] --out DIR`: run one trial without Ray or MLflow."""
from __future__ import annotations

import argparse

from v1sweep import contracts as C
from v1sweep.corruptions.catalog import CATEGORIES

HELP = "train and evaluate one trial from a trial config (no Ray, no MLflow)"

# Headline metrics printed at the end, in this order (all are in DIR/summary.json).
_SHOWN = (C.CLEAN_ACC, C.CLEAN_TOP5, C.CORRUPTION_ACC, *(C.corruption_metric(c) for c in CATEGORIES),
          C.RF_SIMILARITY, C.TRAIN_IMAGES_PER_S, C.WALL_TIME_S)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="trial config YAML (e.g. sweeps/trials/smoke.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.epochs=3 (repeatable)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder: summary.json, rf_params.csv, config.yaml, checkpoint.pt, ...")
    parser.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (overrides train.device)")


def main(args: argparse.Namespace) -> int:
    from v1sweep.config import trial as cfg

    overrides = cfg.parse_overrides(args.overrides)
    if args.device is not None:
        overrides["train.device"] = args.device
    config = cfg.load(args.config, overrides)  # before importing torch: a typo is reported at once
    # Importing torch and building the data and corruption sets takes a while on a CPU: say so.
    print(f"trial {config.name!r}: config OK; loading PyTorch, the {config.data.dataset} data and the "
          f"corruption sets ...", flush=True)
    from v1sweep.trial.run import run_trial

    result = run_trial(config, args.out, log=lambda msg: print(msg, flush=True))
    print("metrics:")
    shown = list(_SHOWN) + [k for k in result.metrics if k.startswith("adv_acc/")]
    for key in shown:
        if key in result.metrics:
            print(f"  {key:<26} {result.metrics[key]:.4g}")
    print(f"wrote {args.out}/summary.json and {args.out}/rf_params.csv")
    return 0
