"""Python and Ray Tune values turned into what an MLflow run accepts.

Separate from the writer because the sweep callback and the trainable need these (which result keys
are metrics, how long a param or tag may be) without the tracker: numeric metrics of a Tune result
without Ray's bookkeeping keys, params and tags cut to MLflow's length limits, and the parent run's
``command`` (credentials masked) and ``git_commit`` tags. No mlflow import at module level.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from v1sweep.results.store import mask_text, mask_uri

# Keys Ray Tune adds to every result; never logged as metrics.
RAY_KEYS = frozenset({
    "done", "trial_id", "experiment_tag", "date", "timestamp", "pid", "hostname", "node_ip", "config",
    "checkpoint_dir_name", "should_checkpoint", "training_iteration", "time_this_iter_s", "time_total_s",
    "time_since_restore", "iterations_since_restore", "timesteps_total", "episodes_total",
    "timesteps_since_restore", "warmup_time", "__duplicate__", "__trial_info__",
})


def git_commit(where: str | Path | None = None) -> str | None:
    """HEAD of the git checkout holding `where` (None outside git, or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(where or Path.cwd()), capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def metric_items(result: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics of a Tune result, without Ray's bookkeeping and our private keys."""
    out: dict[str, float] = {}
    for key, value in result.items():
        if key in RAY_KEYS or key.startswith("_") or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[key] = float(value)
        elif hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
            out[key] = float(value.item())
    return out


def param_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    text = str(value)
    return text if len(text) <= MAX_PARAM_VAL_LENGTH else text[:MAX_PARAM_VAL_LENGTH - 3] + "..."


def _tag_value(value: Any) -> str:
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    text = str(value)
    return text if len(text) <= MAX_TAG_VAL_LENGTH else text[:MAX_TAG_VAL_LENGTH - 3] + "..."



def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def command_line(argv: list[str] | None = None, uri: str | None = None) -> str:
    """The command line for the parent run's tag, with credentials in URIs masked."""
    argv = sys.argv if argv is None else argv
    text = _URI.sub(lambda m: mask_uri(m.group(0)), " ".join(argv))
    return mask_text(text, uri) if uri else text


_URI = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"<>()]+")
