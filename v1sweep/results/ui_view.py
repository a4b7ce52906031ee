"""How a sweep's experiment opens in MLflow's UI: the saved runs-table view and its URL.

Separate from the writer because it is presentation, not results (and `v1sweep ui` needs only this):
the experiment tag that makes MLflow 3 show training runs rather than GenAI traces, the shared view
state (the sweep's trials flat, best first, headline metrics as columns) and the page URLs.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

from v1sweep import contracts as C
from v1sweep.contracts import ROLE, SWEEP

# MLflow 3's UI reads this experiment tag to choose the experiment's view (training runs vs GenAI).
EXPERIMENT_KIND, TRAINING_KIND = C.EXPERIMENT_KIND, C.TRAINING_KIND


# A view of the runs table saved in the experiment (MLflow's "share view": tag
# mlflow.sharedViewState.<key>, opened by ?viewStateShareKey=<key>): the sweep's trials, flat (not
# folded under the parent run), best first, with the headline metrics and swept params as columns.
SHARED_VIEW_PREFIX = C.SHARED_VIEW_PREFIX
VIEW_METRICS = (C.CLEAN_ACC, C.CORRUPTION_ACC, C.RF_SIMILARITY)


def view_key(sweep_name: str) -> str:
    return "v1sweep-" + re.sub(r"[^A-Za-z0-9_.-]", "_", sweep_name)


def view_state(sweep_name: str, metric: str = C.CORRUPTION_ACC, mode: str = "max",
               params: Sequence[str] = ()) -> dict[str, Any]:
    """The runs-table state MLflow's UI restores from the shared-view tag (plain JSON)."""
    metrics = [m for m in (metric, *VIEW_METRICS) if m]
    columns = [f"metrics.`{m}`" for m in dict.fromkeys(metrics)] + [f"params.`{p}`" for p in params]
    name = sweep_name.replace("\\", "\\\\").replace("'", "\\'")
    return {"searchFilter": f"tags.`{SWEEP}` = '{name}' AND tags.`{ROLE}` = '{C.ROLE_TRIAL}'",
            "orderByKey": f"metrics.`{metric}`", "orderByAsc": mode == "min", "selectedColumns": columns}


def experiment_url(base: str, experiment_id: str | None = None, view: str | None = None) -> str:
    """The MLflow UI page of an experiment's runs table (the classic machine-learning view, not
    the GenAI overview MLflow 3 opens by default), in the saved `view` when given; without an
    experiment id, the experiments list."""
    base = base.rstrip("/")
    if not experiment_id:
        return f"{base}/#/experiments?workflowType=machine_learning"
    shared = f"viewStateShareKey={view}&" if view else ""
    return f"{base}/#/experiments/{experiment_id}/runs?{shared}workflowType=machine_learning"
