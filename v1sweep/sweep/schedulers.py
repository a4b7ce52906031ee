"""The trial schedulers a sweep file may name (``scheduler.type``), each one builder with its facts.

An entry is a builder ``(scheduler, epochs) -> Ray Tune scheduler`` registered with its metadata,
where `scheduler` is the sweep's validated ``scheduler:`` section (`SchedulerSpec`) and `epochs`
the base trial's ``train.epochs``. Optional metadata: `check(scheduler)` raises `ConfigError` for
options that are valid one by one but not together (checked when the sweep file loads), and
`summary(scheduler, epochs)` is the dry run's one-line description of its options.

Like `v1sweep.sweep.algorithms`, a torch-, Ray- and Optuna-free catalogue that the config layer
validates sweep files from; the builders import Ray when called.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from v1sweep.errors import ConfigError
from v1sweep.registry import Registry
from v1sweep.sweep.algorithms import MODES, Option

# Per-epoch metrics a scheduler can compare at its rungs (what the trainable reports every epoch).
EPOCH_METRICS = ("val_acc", "train_acc", "train_loss")

# The keys of ``scheduler:`` besides `type` (`v1sweep.config.sweep_file.SchedulerSpec` is built from it).
SCHEDULER_OPTIONS: Mapping[str, Option] = {
    "metric": Option("str", "val_acc", choices=EPOCH_METRICS,
                     doc="asha: the per-epoch metric compared at each rung"),
    "mode": Option("str", "max", choices=MODES),
    "grace_period": Option("int", 1, range=(1, 100000), doc="asha: epochs before a trial can be stopped"),
    "reduction_factor": Option("float", 2.0, range=(1.01, 100), doc="asha: keep 1/reduction_factor at each rung"),
    "max_t": Option("int | None", None, range=(1, 100000), doc="asha: epochs of a full trial (default train.epochs)"),
}

SchedulerBuilder = Callable[[Any, int], Any]
SCHEDULERS: Registry[SchedulerBuilder] = Registry("scheduler", required=("description", "options"))


def scheduler_names() -> tuple[str, ...]:
    """The registered names (the sweep file's allowed ``scheduler.type``)."""
    return tuple(SCHEDULERS.names())


@SCHEDULERS.register("fifo", description="run every trial to the end", options=())
def fifo(scheduler: Any, epochs: int) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


def _asha_check(scheduler: Any) -> None:
    if scheduler.max_t is not None and scheduler.grace_period > scheduler.max_t:
        raise ConfigError(f"grace_period {scheduler.grace_period} > max_t {scheduler.max_t}",
                          key="scheduler.grace_period")


def _asha_summary(scheduler: Any, epochs: int) -> str:
    return (f"{scheduler.metric} {scheduler.mode}, grace {scheduler.grace_period}, reduction "
            f"{scheduler.reduction_factor:g}, max_t {scheduler.max_t or epochs}")


@SCHEDULERS.register("asha", description="stop weak trials early (asynchronous successive halving)",
                     options=tuple(SCHEDULER_OPTIONS), check=_asha_check, summary=_asha_summary)
def asha(scheduler: Any, epochs: int) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    max_t = scheduler.max_t or max(1, epochs)
    return ASHAScheduler(time_attr="epoch", metric=scheduler.metric, mode=scheduler.mode, max_t=max_t,
                         grace_period=min(scheduler.grace_period, max_t),
                         reduction_factor=scheduler.reduction_factor, stop_last_trials=False)
