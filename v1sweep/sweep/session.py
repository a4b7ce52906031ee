"""The Ray session a sweep runs in, and the process environment around it.

`ray_session` starts a fresh local Ray or attaches to a cluster (refusing Ray Client addresses up
front, `check_address`); `_tune_env` sets the Ray Tune environment variables v1sweep relies on;
`quiet_libraries` lowers the library loggers a user does not need. `_slots` and `_driver_node` read
the running session. Separate from `v1sweep.sweep.engine` because they concern Ray and the process,
not the sweep: run and resume share them unchanged. Ray is imported inside functions only.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from v1sweep.config.sweep_file import SweepSpec
from v1sweep.errors import V1SweepError
from v1sweep.io import scoped_env


# Library log lines a user of `v1sweep run` does not need (shown with --verbose): the token-auth
# notice of every local Ray, Tune's "Trials did not complete" (the summary counts failures), MLflow's
# schema-creation notes for a new sqlite store.
_NOISY_LOGGERS = {"ray._private.authentication.authentication_token_setup": "ERROR", "ray.tune.tune": "CRITICAL",
                  "mlflow.store.db.utils": "WARNING", "alembic.runtime.migration": "WARNING"}


@contextmanager
def quiet_libraries(verbose: int) -> Iterator[None]:
    """Lower the noisy library loggers while a sweep runs (nothing changes with verbose >= 2)."""
    import logging

    if verbose >= 2:
        yield
        return
    old = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name, level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, previous in old.items():
            logging.getLogger(name).setLevel(previous)


_TUNE_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",   # MLflow is the record; no result.json/progress.csv
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",  # per-epoch results lack the final metrics
    "RAY_AIR_NEW_OUTPUT": "0",                   # the CLIReporter table with our metric columns
    "TUNE_GLOBAL_CHECKPOINT_S": "5",             # save the experiment state often (resume loses less)
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # no "View run at" line (and GET) per ended run
}


@contextmanager
def _tune_env() -> Iterator[None]:
    import logging

    # With Tune's file loggers off, its result analysis warns that result.json is missing: not an issue.
    quiet = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    # The user's own TUNE_GLOBAL_CHECKPOINT_S / ..._THRESHOLD_S win; the others are always ours.
    try:
        with scoped_env(_TUNE_ENV, keep_existing=("TUNE_GLOBAL_CHECKPOINT_S",
                                                  "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S")):
            yield
    finally:
        quiet.setLevel(level)


@contextmanager
def ray_session(address: str | None, num_cpus: int | None, *, log: Callable[[str], Any] = print,
                verbose: int = 2) -> Iterator[dict]:
    """A fresh local Ray (address None) or the given cluster; a Ray already initialised *in this
    process* (by the caller) is used as is and left running. Below verbose 2 the workers' output
    stays in their trial.log and Ray's log files instead of the driver's terminal."""
    import ray

    if ray.is_initialized():
        yield {"owned": False, "address": "this process's Ray"}
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": verbose >= 2}
    if address is None:
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)
        where = "a fresh local Ray"
    else:
        check_address(address)
        _enable_token_auth_if_available()
        try:
            ray.init(address=address, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise V1SweepError(
                f"cannot connect to the Ray cluster at {address!r}: {str(exc).strip().splitlines()[-1][:300]}. "
                f"Check the address (auto or host:port of the head's GCS, e.g. 10.0.0.5:6379); a cluster started with token "
                f"authentication (the default of `ray start` in Ray 2.5x+) needs RAY_AUTH_MODE=token and its "
                f"token (~/.ray/auth_token or RAY_AUTH_TOKEN) on this machine") from None
        where = f"the Ray cluster at {address}"
    try:
        res = ray.cluster_resources()
        log(f"Ray: {where} ({len([n for n in ray.nodes() if n.get('Alive')])} node(s), "
            f"{res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU)")
        yield {"owned": True, "address": where}
    finally:
        ray.shutdown()


def check_address(address: str | None) -> None:
    """Refuse Ray Client addresses before anything starts (see the message)."""
    if address and address.strip().startswith("ray://"):
        raise V1SweepError(
            "Ray Client addresses (ray://) run Ray Tune's driver on the head node, out of reach of this "
            "process's MLflow logging; run the sweep on the head node instead: `v1sweep run SWEEP.yaml "
            "--address auto` there, or `ray job submit --address http://HEAD:8265 --working-dir . -- "
            "v1sweep run SWEEP.yaml --address auto`")


def _enable_token_auth_if_available() -> None:
    """Like `ray start --address`: use token auth when a token is present and RAY_AUTH_MODE is unset."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available)

        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except Exception:  # noqa: BLE001 - older/newer Ray without this helper
        pass


def _slots(spec: SweepSpec) -> int:
    import ray

    res = ray.cluster_resources()
    by_cpu = int(res.get("CPU", 1) // spec.resources.cpu) if spec.resources.cpu else 1
    by_gpu = int(res.get("GPU", 0) // spec.resources.gpu) if spec.resources.gpu else by_cpu
    return max(1, min(by_cpu, by_gpu))


def _driver_node() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        return None
