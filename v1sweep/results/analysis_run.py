"""The analysis run (`v1sweep analyze`): analysis builds the results, this writes them to MLflow.

Separate from the sweep's writer because it is synchronous and written by another command, long
after the sweep: one run under the sweep's parent run, created RUNNING, then given its params,
metrics and artifacts and ended FINISHED, or ended FAILED.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from v1sweep import contracts as C
from v1sweep.contracts import PARENT, ROLE, SWEEP
from v1sweep.results import store as _store  # noqa: F401 - sets MLflow's environment defaults before mlflow loads


class AnalysisRun:
    """An analysis run under a sweep's parent run (tags ``mlflow.parentRunId``,
    ``v1sweep.role=analysis``, ``v1sweep.sweep``, ``v1sweep.analysis``), written synchronously.

    Created RUNNING by `start_analysis_run`; `finish` logs params, metrics (step 0) and a folder of
    artifacts and ends it FINISHED; `fail` ends it FAILED (the report could not be built)."""

    def __init__(self, client: Any, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def finish(self, *, params: Mapping[str, Any], metrics: Mapping[str, float], folder: str | Path) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        param_list = [Param(k, str(v)) for k, v in params.items()]
        batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
        for i in range(0, max(len(batch), 1), 900):  # log_batch takes at most 1000 entries
            self.client.log_batch(self.run_id, metrics=batch[i:i + 900], params=param_list if i == 0 else [])
        self.client.log_artifacts(self.run_id, str(folder))
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self) -> None:
        self.client.set_terminated(self.run_id, "FAILED")


def start_analysis_run(uri: str, *, experiment_id: str, parent_run_id: str, sweep_name: str,
                       analysis: str = C.ANALYSIS_ROBUSTNESS) -> AnalysisRun:
    """Create the RUNNING analysis run ``analysis-<sweep_name>`` under `parent_run_id`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(experiment_id, run_name=f"analysis-{sweep_name}", tags={
        PARENT: parent_run_id, ROLE: C.ROLE_ANALYSIS, SWEEP: sweep_name, C.ANALYSIS: analysis})
    return AnalysisRun(client, run.info.run_id)
