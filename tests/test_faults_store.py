"""First use of a new sqlite MLflow store by several processes (issue 12, part 2), with real MLflow.

Four processes start on a store that does not exist yet (what `v1sweep run` does before Ray starts:
check the store, create the experiment and the parent run); a `v1sweep status` races them. Every
writer must succeed, the store must end fully migrated, and `status` must answer with an exit code
and one line, never a traceback. A store left half-migrated is named by readers and repaired by
writers.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from v1sweep.results.store import check_readable, half_migrated_tables, prepare_store

WRITER = textwrap.dedent("""
    import sys, time
    from v1sweep.results.tracking import SweepTracker, check_store
    uri, start, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    while time.time() < start:
        time.sleep(0.001)
    check_store(uri)
    tracker = SweepTracker(uri, experiment="race", sweep_name=name, log=lambda m: None)
    run_id = tracker.start_sweep(spec_hash="x", sweep_dir="/tmp/" + name, command="test", files={})
    tracker.end_sweep("FINISHED")
    tracker.close()
    print(run_id)
""")


def _env(tmp_path: Path) -> dict:
    import os

    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "MLFLOW_TRACKING_URI": ""}


def test_four_processes_racing_on_a_new_store(tmp_path):
    db = tmp_path / "new.db"
    uri = f"sqlite:///{db}"
    start = time.time() + 4.0  # every interpreter has imported MLflow by then
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, uri, str(start), f"s{i}"], cwd=tmp_path,
                                env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(4)]
    statuses = []
    while any(w.poll() is None for w in writers):  # `status` racing the creation, again and again
        statuses.append(subprocess.run([sys.executable, "-m", "v1sweep.cli", "status", "s0", "--tracking-uri", uri],
                                       cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                                       timeout=300))
    outs = [w.communicate(timeout=300) for w in writers]
    for w, (out, err) in zip(writers, outs):
        assert w.returncode == 0, err[-3000:]
    run_ids = {out.strip().splitlines()[-1] for out, _err in outs}
    assert len(run_ids) == 4
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("race")
    assert {r.info.run_id for r in client.search_runs([exp.experiment_id])} == run_ids
    assert half_migrated_tables(db) == []
    assert statuses, "status never ran during the race"
    for proc in statuses:
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        assert proc.returncode in (0, 2), proc.stderr[-2000:]
        if proc.returncode:
            assert proc.stderr.startswith("v1sweep status: error: "), proc.stderr


def test_half_migrated_store_is_named_by_readers_and_repaired_by_writers(tmp_path, capsys):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    prepare_store(uri)
    client = MlflowClient(uri)
    exp_id = client.create_experiment("kept")
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")  # an interrupted migration
    con.commit()
    con.close()
    with pytest.raises(Exception, match="half-migrated .*_alembic_tmp_experiments"):
        check_readable(uri)
    from v1sweep import cli

    assert cli.main(["status", "kept", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert "half-migrated" in err and "Traceback" not in err
    assert prepare_store(uri) == ["_alembic_tmp_experiments"]
    assert half_migrated_tables(db) == []
    assert MlflowClient(uri).get_experiment(exp_id).name == "kept"  # nothing lost


def test_status_on_a_store_being_created_waits_for_it(tmp_path):
    """A writer holds the store lock; `status` neither tracebacks nor creates anything meanwhile."""
    from v1sweep.results.store import store_lock

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    with store_lock(uri):
        proc = subprocess.Popen([sys.executable, "-m", "v1sweep.cli", "status", "x", "--tracking-uri", uri],
                                cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "no MLflow store at" in err and "Traceback" not in err, err
    assert not db.exists()
