"""`v1sweep bench sweep`: per-trial platform overhead of a sweep, ours vs Ray Tune's stock MLflow path.

Both runs execute the same trivial trials (two reported epochs, the contract's final metrics, no
training) in the same Ray session, so the measured time is the platform's: scheduling, actor
start-up, result plumbing and MLflow writes (parent + child runs, ~60 params, per-epoch and final
metrics) into a fresh sqlite store each.

- ours: `v1sweep.sweep.run_sweep` (reused actors, driver-side batched MLflow writes on a thread);
- baseline: a `Tuner` with `ray.air.integrations.mlflow.MLflowLoggerCallback`, Tune's defaults.

Seconds per trial = the run's wall time (Tuner construction to the last MLflow write) / trials; Ray's
start-up and the creation of each sqlite store happen before the clock starts (paid once by both,
reported separately).
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HELP = "sweep platform overhead per trivial trial: v1sweep vs Tune + stock MLflowLoggerCallback (s/trial, ratio)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, default=40, help="trivial trials per run (default 40)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    parser.add_argument("--skip-baseline", action="store_true", help="measure v1sweep only")
    parser.add_argument("--keep", default=None, metavar="DIR", help="keep stores and sweep folders in DIR")


def trivial_trial(config: Any, out_dir: Any, *, on_epoch: Callable | None = None, log: Callable | None = None) -> dict:
    """No training: two epochs of constant metrics, then the final metric names of the contract."""
    for epoch in (1, 2):
        if on_epoch is not None:
            on_epoch(epoch, {"train_loss": 1.0 / epoch, "train_acc": 0.5, "val_acc": 0.5, "lr": 0.1,
                             "images_per_s": 1.0})
    return _final_metrics(config.eval.corruptions)


def _final_metrics(corruptions: Any) -> dict[str, float]:
    from v1sweep.corruptions.catalog import CORRUPTIONS

    out = {"clean_acc": 0.5, "clean_top5": 0.9, "corruption_acc": 0.4, "rf_similarity": 0.8,
           "train_images_per_s": 1.0, "wall_time_s": 0.0}
    for name in corruptions:
        out[f"corruption_acc/{name}"] = 0.4
        out[f"corruption_acc/{CORRUPTIONS[name]}"] = 0.4
    return out


def _spec(trials: int) -> Any:
    from v1sweep.config import sweep_file as sweep_spec

    return sweep_spec.from_dict({
        "name": "bench_sweep",
        "trial": {"data": {"dataset": "synthetic", "image_size": 32}, "frontend": {"visual_degrees": 1.0}},
        "space": {"train.seed": {"grid": list(range(trials))}},
        "resources": {"cpu": 1},
    }, file="<bench sweep>")


def _ours(spec: Any, root: Path) -> float:
    from v1sweep.sweep.engine import run_sweep

    start = time.perf_counter()
    outcome = run_sweep(spec, storage=root / "runs", tracking_uri=f"sqlite:///{root / 'ours.db'}",
                        trial_fn=trivial_trial, verbose=0, command="v1sweep bench sweep", out=lambda _m: None)
    seconds = time.perf_counter() - start
    if outcome is None or outcome.counts.get("finished") != len(spec.space["train.seed"].values):
        raise RuntimeError(f"v1sweep run did not finish every trial: {outcome and outcome.counts}")
    return seconds


def _stock_trainable(config: dict) -> None:
    from ray import tune

    for epoch in (1, 2):
        tune.report({"train_loss": 1.0 / epoch, "train_acc": 0.5, "val_acc": 0.5, "lr": 0.1, "images_per_s": 1.0,
                     "epoch": epoch})
    tune.report({**_final_metrics(config["eval.corruptions"]), "epoch": 2})


def _stock(spec: Any, root: Path) -> float:
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune import RunConfig, TuneConfig, Tuner

    base = spec.base_flat()
    space = {**base, "train.seed": tune.grid_search(list(spec.space["train.seed"].values))}
    start = time.perf_counter()
    callback = MLflowLoggerCallback(tracking_uri=f"sqlite:///{root / 'stock.db'}", experiment_name="bench_sweep")
    tuner = Tuner(tune.with_resources(_stock_trainable, {"cpu": 1}), param_space=space, tune_config=TuneConfig(),
                  run_config=RunConfig(name="stock", storage_path=str(root / "stock"), callbacks=[callback], verbose=0))
    grid = tuner.fit()
    seconds = time.perf_counter() - start
    if grid.num_errors:
        raise RuntimeError(f"stock run: {grid.num_errors} trials failed")
    return seconds


def run(args: argparse.Namespace) -> int:
    import os

    import ray

    if args.trials < 1:
        raise ValueError("--trials must be >= 1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    spec = _spec(args.trials)
    with tempfile.TemporaryDirectory(prefix="v1sweep-bench-") as tmp:
        root = Path(args.keep or tmp).absolute()
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
        startup = time.perf_counter() - t0
        from mlflow.tracking import MlflowClient

        t0 = time.perf_counter()
        for db in ("ours.db", "stock.db"):  # an existing store for both (creating one is paid once)
            MlflowClient(f"sqlite:///{root / db}").search_experiments(max_results=1)
        store_setup = (time.perf_counter() - t0) / 2
        try:
            ours = _ours(spec, root)
            stock = None if args.skip_baseline else _stock(spec, root)
        finally:
            ray.shutdown()
    n = args.trials
    print(f"sweep platform overhead, {n} trivial trials, local Ray with {args.num_cpus} CPUs "
          f"(paid once by both and not included: Ray start-up {startup:.1f} s, creating an MLflow "
          f"sqlite store {store_setup:.1f} s):")
    print(f"  v1sweep (reused actors, batched driver-side MLflow): {ours / n:7.3f} s/trial  ({ours:.1f} s)")
    if stock is not None:
        print(f"  Tune + stock MLflowLoggerCallback (baseline):        {stock / n:7.3f} s/trial  ({stock:.1f} s)")
        print(f"  speed-up vs baseline: {stock / ours:.2f}x")
    print(f"  including Ray start-up: v1sweep {(ours + startup) / n:.3f} s/trial")
    return 0
