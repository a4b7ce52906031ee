"""v1sweep's Optuna searcher and the NSGA-II sampler that pickles: imports Ray Tune and Optuna.

Imported only by the builders of `v1sweep.sweep.algorithms` (when a sweep uses Optuna) and by
unpickling a sweep's saved state. The classes are plain module-level classes, so pickles name
them here; state saved before they moved names `v1sweep.sweep.callback.<Class>` (or
`v1sweep.sweep_callback.<Class>`), which `v1sweep.sweep.callback` forwards to this module.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import optuna
from ray.tune.search.optuna import OptunaSearch

from v1sweep.sweep.callback import SearchAlgorithmFailed


class FinalMetricOptunaSearch(OptunaSearch):
    """OptunaSearch that ignores per-epoch results lacking its (final) metric, and turns an
    exception of Optuna itself into `SearchAlgorithmFailed` so the driver can tell it from a
    trial's failure (the sweep stops with one error line naming the algorithm)."""

    algorithm = "optuna"

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, str) and self.metric not in result:
            return
        with _search_errors(self, "on_trial_result"):
            super().on_trial_result(trial_id, result)

    def suggest(self, trial_id: str) -> Any:
        with _search_errors(self, "suggest"):
            return super().suggest(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        with _search_errors(self, "on_trial_complete"):
            super().on_trial_complete(trial_id, result=result, error=error)


@contextmanager
def _search_errors(searcher: Any, where: str) -> Iterator[None]:
    try:
        yield
    except SearchAlgorithmFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - any fault inside Optuna ends the sweep, named
        sampler = type(getattr(searcher, "_sampler", None) or searcher).__name__
        raise SearchAlgorithmFailed(f"{searcher.algorithm} ({sampler})",
                                    f"{type(exc).__name__} in {where}: {exc}") from exc


_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def lock_free_state(obj: Any) -> dict:
    """`obj.__dict__` with its thread locks left out (their names are kept to recreate them)."""
    state = dict(obj.__dict__)
    locks = {k: isinstance(v, type(threading.RLock())) for k, v in state.items() if isinstance(v, _LOCK_TYPES)}
    for k in locks:
        del state[k]
    state["_v1sweep_locks"] = locks
    return state


def restore_locks(obj: Any, state: dict) -> None:
    """The inverse of `lock_free_state`: fresh locks under the saved names."""
    locks = state.pop("_v1sweep_locks", {})
    obj.__dict__.update(state)
    for k, reentrant in locks.items():
        setattr(obj, k, threading.RLock() if reentrant else threading.Lock())


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """NSGA-II that pickles: Optuna 5's genetic samplers (`optuna.samplers._ga.BaseGASampler`) keep
    a `threading.Lock` in `_thread_lock` and define no `__getstate__`, while Ray Tune pickles the
    searcher (with its sampler) when the Tuner is built and at every experiment checkpoint
    (`TypeError: cannot pickle '_thread.lock' object`). The lock guards a per-process cache, so a
    pickled copy gets a fresh one."""

    def __getstate__(self) -> dict:
        return lock_free_state(self)

    def __setstate__(self, state: dict) -> None:
        restore_locks(self, state)
