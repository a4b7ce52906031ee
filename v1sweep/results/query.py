"""Read a sweep's results back out of MLflow: trial tables, best trials, Pareto fronts, configs.

MLflow is the single source of truth; this module reads the layout `v1sweep.results.tracking` writes
(docs/architecture.md, "MLflow layout"): a parent run per sweep (tag ``v1sweep.role=sweep``) and a
child run per trial (``v1sweep.role=trial``, ``trial_id``, ``v1sweep.status``, params = the flat
dotted trial config, final metrics). A sweep is named by its name, its YAML file or its output
directory. Failed and stopped trials are left out unless asked for.

    >>> from v1sweep import query
    >>> query.best("smoke", "corruption_acc", k=3)
    >>> cfg = query.config_of(run_id)          # a TrialConfig ready for `v1sweep train`
"""
from __future__ import annotations

import ast
import json
import os
import re
import tempfile
import types
import typing
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from v1sweep import contracts as C

from v1sweep.errors import QueryError, V1SweepError  # noqa: F401 - defined there, importable from here too
from v1sweep.io import scoped_env
from v1sweep.results.store import all_experiment_ids, is_local, mask_uri, resolve_tracking_uri, search_all_runs, \
    store_exists

if TYPE_CHECKING:
    import pandas as pd

    from v1sweep.config.trial import TrialConfig

# "interrupted": ended by Ctrl-C or a dead driver, waiting for `v1sweep resume` (tracking tags it).
STATES = C.TRIAL_STATES
SWEEP_ROLE, TRIAL_ROLE, ANALYSIS_ROLE = C.ROLE_SWEEP, C.ROLE_TRIAL, C.ROLE_ANALYSIS
BASE_COLUMNS = ("run_id", "trial_id", "status", "run_name", "parent_run_id", "experiment_id",
                "start_time", "end_time", "error")
# Files of a sweep output directory that name the sweep (checked in this order): `v1sweep.sweep`
# writes sweep.json (name, tracking URI, experiment, parent run id, search metric) and sweep.yaml.
SWEEP_DIR_FILES = (C.SWEEP_JSON, C.SPEC_YAML)


@dataclass(frozen=True)
class SweepRef:
    """Where a sweep's runs are: its name, the store, and optionally experiment / dir / parent."""
    name: str | None
    tracking_uri: str
    experiment: str | None = None
    sweep_dir: str | None = None
    parent_run_id: str | None = None
    metric: str | None = None
    mode: str | None = None
    alias: str | None = None  # a bare name that is also a local folder: tried as a name if the folder is no sweep's


# ---------------------------------------------------------------------------------------------
# Resolving what the user named
# ---------------------------------------------------------------------------------------------
def resolve_sweep(sweep: str | Path | SweepRef, *, tracking_uri: str | None = None) -> SweepRef:
    """Turn a sweep name, sweep YAML path or sweep output directory into a `SweepRef`."""
    if isinstance(sweep, SweepRef):
        if tracking_uri is None:
            return sweep
        return SweepRef(**{**sweep.__dict__, "tracking_uri": resolve_tracking_uri(tracking_uri)})
    text = str(sweep)
    path = Path(text).expanduser()
    if path.is_dir():
        ref = _ref_from_dir(path, tracking_uri)
        bare = not any(sep in text for sep in ("/", "\\")) and text not in (".", "..")
        return SweepRef(**{**ref.__dict__, "alias": text}) if bare and ref.name is None else ref
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise QueryError(f"sweep file not found: {path}")
        info = _read_sweep_file(path)
        return _ref_from_info(info, tracking_uri, file=str(path))
    if not text.strip() or "/" in text or "\\" in text:
        raise QueryError(f"{text!r} is neither a sweep name, a sweep YAML file nor a sweep directory")
    return SweepRef(name=text, tracking_uri=resolve_tracking_uri(tracking_uri))


def _read_sweep_file(path: Path) -> Mapping[str, Any]:
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise QueryError(f"{path}: cannot read sweep metadata: {exc}") from None
    else:
        from v1sweep.config.trial import read_yaml

        data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise QueryError(f"{path}: expected a mapping with a 'name:' key")
    return data


def _ref_from_info(info: Mapping[str, Any], tracking_uri: str | None, *, file: str,
                   sweep_dir: str | None = None) -> SweepRef:
    tracking: Mapping[str, Any] = info["tracking"] if isinstance(info.get("tracking"), Mapping) else {}
    name = info.get("name") or info.get("sweep")
    if not name:
        raise QueryError(f"{file}: no 'name:' key; cannot tell which sweep it describes")
    uri = tracking.get("uri") or info.get("tracking_uri")
    if info.get("tracking_uri_masked") and not tracking_uri:  # sweep.json never stores credentials
        raise QueryError(f"{file}: the sweep's tracking URI holds credentials and was not stored "
                         f"({uri}); pass it with --tracking-uri")
    search: Mapping[str, Any] = info["search"] if isinstance(info.get("search"), Mapping) else {}
    metric = search.get("metric") or info.get("metric")
    mode = search.get("mode") or info.get("mode")
    metrics, modes = search.get("metrics"), search.get("modes")
    if not metric and isinstance(metrics, (list, tuple)) and metrics:  # optuna-multi: the first objective
        metric = metrics[0]
        mode = modes[0] if isinstance(modes, (list, tuple)) and modes else "max"
    return SweepRef(name=str(name), tracking_uri=resolve_tracking_uri(tracking_uri, fallback=uri),
                    experiment=tracking.get("experiment") or info.get("experiment"),
                    sweep_dir=sweep_dir or info.get("sweep_dir"),
                    parent_run_id=info.get("parent_run_id"),
                    metric=metric if isinstance(metric, str) else None,
                    mode=mode if isinstance(mode, str) else None)


def _ref_from_dir(path: Path, tracking_uri: str | None) -> SweepRef:
    path = path.resolve()
    for fname in SWEEP_DIR_FILES:
        candidate = path / fname
        if candidate.is_file():
            info = _read_sweep_file(candidate)
            if info.get("name") or info.get("sweep"):
                return _ref_from_info(info, tracking_uri, file=str(candidate), sweep_dir=str(path))
    # Nothing we recognise: find the parent run by its `v1sweep.sweep_dir` tag.
    return SweepRef(name=None, tracking_uri=resolve_tracking_uri(tracking_uri), sweep_dir=str(path))


# ---------------------------------------------------------------------------------------------
# MLflow access
# ---------------------------------------------------------------------------------------------
def _client(uri: str):
    if not store_exists(uri):
        raise QueryError(f"no MLflow store at {mask_uri(uri)} (run a sweep first, or pass "
                         f"--tracking-uri / set MLFLOW_TRACKING_URI)")
    from v1sweep.results.store import check_readable

    check_readable(uri)  # a store being created by a sweep: wait; a half-migrated one: named
    if not is_local(uri):  # a server: fail with one clear line, not a retry storm and a traceback
        from v1sweep.results.tracking import TrackingError, check_store

        try:
            check_store(uri)
        except TrackingError as exc:
            raise QueryError(str(exc)) from None
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _experiment_ids(client, experiment: str | None = None) -> list[str]:
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            return [exp.experiment_id]
    return all_experiment_ids(client)


def _search(client, experiment_ids: Sequence[str], filter_string: str,
            order_by: Sequence[str] | None = None, *, shown: str | None = None) -> list:
    from mlflow.exceptions import MlflowException

    if not experiment_ids:
        return []
    try:
        return search_all_runs(client, experiment_ids, filter_string, order_by=list(order_by or []))
    except MlflowException as exc:
        raise QueryError(f"MLflow rejected the filter {shown or filter_string!r}: {exc.message}") from None


def list_sweeps(*, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Every sweep parent run in the store: name, parent_run_id, experiment_id, start_time, status."""
    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    parents = _search(client, _experiment_ids(client), f"tags.`{C.ROLE}` = '{SWEEP_ROLE}'",
                      ["attributes.start_time DESC"])
    return [{"name": r.data.tags.get(C.SWEEP), "parent_run_id": r.info.run_id,
             "experiment_id": r.info.experiment_id, "start_time": r.info.start_time,
             "status": r.info.status, "sweep_dir": r.data.tags.get(C.SWEEP_DIR)}
            for r in parents]


def _local(uri: str):
    """The direct sqlite reader (`v1sweep.results.local_store`) for a local sqlite store, else None."""
    if os.environ.get("V1SWEEP_MLFLOW_CLIENT_ONLY"):
        return None
    from v1sweep.results.local_store import open_store

    return open_store(uri)


def _local_parents(local, ref: SweepRef) -> list:
    if ref.parent_run_id:
        found = local.runs([ref.parent_run_id])
        if found:
            return found
    tags = {C.ROLE: SWEEP_ROLE}
    if ref.name:
        tags[C.SWEEP] = ref.name
    if ref.sweep_dir and not ref.name:
        tags[C.SWEEP_DIR] = ref.sweep_dir
    exp = local.experiment_id(ref.experiment) if ref.experiment else None
    found = local.runs_tagged(tags, [exp] if exp else None)
    if not found and ref.alias:
        return _local_parents(local, SweepRef(name=ref.alias, tracking_uri=ref.tracking_uri,
                                              experiment=ref.experiment))
    return found


def parent_runs(sweep: str | Path | SweepRef, *, tracking_uri: str | None = None) -> list:
    """The sweep's parent runs (MLflow `Run` objects, or objects with the same attributes read from
    a local sqlite store directly), newest first; QueryError if there are none."""
    ref = resolve_sweep(sweep, tracking_uri=tracking_uri)
    local = _local(ref.tracking_uri)
    if local is not None:
        try:
            found = _local_parents(local, ref)
        finally:
            local.close()
        if found:
            return found  # none: MLflow's client below names what the store holds
    client = _client(ref.tracking_uri)
    if ref.parent_run_id:
        from mlflow.exceptions import MlflowException

        try:
            return [client.get_run(ref.parent_run_id)]
        except MlflowException:
            pass  # fall back to the tags
    clauses = [f"tags.`{C.ROLE}` = '{SWEEP_ROLE}'"]
    if ref.name:
        clauses.append(f"tags.`{C.SWEEP}` = {_quote(ref.name)}")
    if ref.sweep_dir and not ref.name:
        clauses.append(f"tags.`{C.SWEEP_DIR}` = {_quote(ref.sweep_dir)}")
    exp_ids = _experiment_ids(client, ref.experiment)
    found = _search(client, exp_ids, " AND ".join(clauses), ["attributes.start_time DESC"])
    if not found and ref.alias:
        return parent_runs(SweepRef(name=ref.alias, tracking_uri=ref.tracking_uri, experiment=ref.experiment))
    if not found:
        raise QueryError(_not_found_message(client, ref))
    return found


def _not_found_message(client, ref: SweepRef) -> str:
    what = f"sweep {ref.name!r}" if ref.name else f"a sweep run from directory {ref.sweep_dir}"
    parents = _search(client, _experiment_ids(client), f"tags.`{C.ROLE}` = '{SWEEP_ROLE}'")
    names = sorted({r.data.tags.get(C.SWEEP, "?") for r in parents})
    where = mask_uri(ref.tracking_uri)
    if not names:
        return f"no {what} in {where}: the store holds no sweeps yet"
    return f"no {what} in {where}; sweeps found: {', '.join(names)}"


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
_QUOTED = re.compile(r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`)")
_KEY = re.compile(r"\b(params|param|metrics|metric|tags|tag)\.([A-Za-z_][\w.\-/:]*[\w])")


def normalize_filter(filter_string: str | None) -> str:
    """Backtick-quote dotted keys: ``params.rf.strategy = 'x'`` -> ``params.`rf.strategy` = 'x'``.

    MLflow's grammar needs backticks around keys holding ``.``, ``/`` or ``-``; quoted values and
    keys already quoted are left alone. ``run_id``/``status`` and other attributes pass through.
    """
    if not filter_string or not filter_string.strip():
        return ""
    pieces = _QUOTED.split(filter_string)
    for i in range(0, len(pieces), 2):  # even pieces lie outside quotes
        pieces[i] = _KEY.sub(lambda m: f"{m.group(1)}.`{m.group(2)}`"
                             if re.search(r"[.\-/:]", m.group(2)) else m.group(0), pieces[i])
    return "".join(pieces).strip()


# ---------------------------------------------------------------------------------------------
# Parsing params back into values
# ---------------------------------------------------------------------------------------------
def parse_value(raw: Any) -> Any:
    """A logged param string back to a Python value: '3' -> 3, 'None' -> None, "['a']" -> ('a',)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text in ("None", "null", ""):
        return None if text else ""
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    value: Any = raw
    if text[:1] in "[({\"'-+.0123456789" or text in ("nan", "inf"):
        for parse in (json.loads, ast.literal_eval):
            try:
                value = parse(text)
                break
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
        else:
            try:
                value = float(text)
            except ValueError:
                value = raw
    if isinstance(value, list):
        value = tuple(value)
    return value


def _config_hints(cls: Any = None, prefix: str = "") -> dict[str, Any]:
    from v1sweep.config.trial import TrialConfig

    cls = cls or TrialConfig
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            out.update(_config_hints(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hint
    return out


def _typed(raw: Any, hint: Any) -> Any:
    """Parse `raw` for a config field: strings stay strings (so '123' named runs survive)."""
    args = typing.get_args(hint)
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allows_str = hint is str or (is_union and str in args)
    if isinstance(raw, str) and allows_str:
        return None if raw == "None" and type(None) in args else raw
    value = parse_value(raw)
    if isinstance(value, tuple):
        return list(value)
    return value


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------
def _status_of(run) -> str:
    tag = run.data.tags.get(C.STATUS)
    if tag in STATES or tag == C.SUPERSEDED:  # superseded: a duplicate the tracker retired
        return tag
    if run.data.tags.get(C.INTERRUPTED) == C.TRUE and run.info.status != "RUNNING":
        return "interrupted"
    return {"RUNNING": "running", "SCHEDULED": "running", "FINISHED": "finished",
            "FAILED": "failed", "KILLED": "stopped"}.get(run.info.status, "running")


def _row(run) -> dict[str, Any]:
    import pandas as pd

    info, data = run.info, run.data
    row: dict[str, Any] = {
        "run_id": info.run_id,
        "trial_id": data.tags.get(C.TRIAL_ID),
        "status": _status_of(run),
        "run_name": info.run_name,
        "parent_run_id": data.tags.get(C.PARENT),
        "experiment_id": info.experiment_id,
        "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
        "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT,
        "error": data.tags.get(C.ERROR),
    }
    row.update({f"params.{k}": parse_value(v) for k, v in data.params.items()})
    row.update({f"metrics.{k}": v for k, v in data.metrics.items()})
    return row


def runs(sweep: str | Path | SweepRef, filter: str | None = None, *, tracking_uri: str | None = None,
         include_failed: bool = False, include_stopped: bool = False, include_running: bool = False,
         all_parents: bool = False) -> "pd.DataFrame":
    """One row per trial child run of the sweep's latest parent run (all parents: `all_parents`).

    Columns: run_id, trial_id, status (finished|failed|stopped|running|interrupted), run_name, parent_run_id,
    experiment_id, start_time, end_time (UTC), error, ``params.<dotted key>`` (parsed back into
    numbers/bools/None/tuples), ``metrics.<name>`` (final values). `filter` is an MLflow search
    filter; dotted keys may be written bare (``params.rf.strategy = 'biological'``).
    Only finished trials unless `include_failed` / `include_stopped` / `include_running` (which
    also brings interrupted trials: unfinished ones waiting for `v1sweep resume`).
    """
    import pandas as pd

    ref = resolve_sweep(sweep, tracking_uri=tracking_uri)
    parents = parent_runs(ref)
    if not all_parents:
        parents = parents[:1]
    user = normalize_filter(filter)
    found = None if user else _local_children(ref.tracking_uri, parents)  # filters need MLflow's parser
    if found is None:
        client = _client(ref.tracking_uri)
        found = []
        for parent in parents:
            clause = (f"tags.`{C.PARENT}` = '{parent.info.run_id}' "
                      f"AND tags.`{C.ROLE}` = '{TRIAL_ROLE}'")
            if user:
                clause += f" AND {user}"
            found.extend(_search(client, [parent.info.experiment_id], clause, shown=filter))
    keep = {"finished"} | ({"failed"} if include_failed else set()) \
        | ({"stopped"} if include_stopped else set()) \
        | ({"running", "interrupted"} if include_running else set())
    rows = [_row(r) for r in found]
    rows = [r for r in rows if r["status"] in keep]
    frame = pd.DataFrame(rows, columns=None if rows else list(BASE_COLUMNS))
    params = sorted(c for c in frame.columns if c.startswith("params."))
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    frame = frame[list(BASE_COLUMNS) + params + metrics]
    if len(frame):
        frame = frame.sort_values(["start_time", "trial_id"], kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def _local_children(uri: str, parents: Sequence) -> list | None:
    """The trial runs of `parents` read from a local sqlite store directly; None: use MLflow."""
    local = _local(uri)
    if local is None:
        return None
    try:
        found = []
        for parent in parents:
            found.extend(local.runs_tagged({C.PARENT: parent.info.run_id, C.ROLE: TRIAL_ROLE},
                                           [parent.info.experiment_id]))
        return found
    finally:
        local.close()


def _metric_column(frame: "pd.DataFrame", metric: str) -> str:
    col = metric if metric.startswith("metrics.") else f"metrics.{metric}"
    if col not in frame.columns:
        have = sorted(c[len("metrics."):] for c in frame.columns if c.startswith("metrics."))
        raise QueryError(f"metric {metric!r} not logged by these runs; metrics: {', '.join(have) or 'none'}")
    return col


def _check_mode(mode: str) -> str:
    if mode not in ("max", "min"):
        raise QueryError(f"mode {mode!r} is not allowed; allowed: max, min")
    return mode


def _frame(sweep: Any, filter: str | None, kwargs: dict) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(sweep, pd.DataFrame):
        if filter:
            raise QueryError("a filter applies to a sweep name/file/dir, not to an already loaded table")
        return sweep
    return runs(sweep, filter, **kwargs)


def best(sweep: Any, metric: str, k: int = 5, mode: str = "max", filter: str | None = None,
         **kwargs: Any) -> "pd.DataFrame":
    """The `k` trials with the highest (`mode="max"`) or lowest final `metric`, best first.

    `sweep` may also be a table from `runs`. Trials that never logged `metric` are left out.
    Extra keyword arguments go to `runs` (tracking_uri, include_failed, ...).
    """
    _check_mode(mode)
    if k < 1:
        raise QueryError(f"k must be >= 1, got {k}")
    frame = _frame(sweep, filter, kwargs)
    if frame.empty:
        return frame
    col = _metric_column(frame, metric)
    ranked = frame[frame[col].notna()].sort_values(col, ascending=(mode == "min"), kind="stable")
    return ranked.head(k).reset_index(drop=True)


def pareto(sweep: Any, metrics: Sequence[str], modes: Sequence[str] | str | None = None,
           filter: str | None = None, **kwargs: Any) -> "pd.DataFrame":
    """The non-dominated trials over `metrics` (each maximised unless `modes` says "min").

    A trial is dominated when another is at least as good on every metric and better on one;
    ties survive together. Rows lacking any of the metrics are left out.
    """
    import numpy as np

    metrics = list(metrics)
    if not metrics:
        raise QueryError("pareto needs at least one metric")
    if modes is None:
        modes = ["max"] * len(metrics)
    elif isinstance(modes, str):
        modes = [modes] * len(metrics)
    modes = [_check_mode(m) for m in modes]
    if len(modes) != len(metrics):
        raise QueryError(f"{len(metrics)} metrics but {len(modes)} modes")
    frame = _frame(sweep, filter, kwargs)
    if frame.empty:
        return frame
    cols = [_metric_column(frame, m) for m in metrics]
    frame = frame.dropna(subset=cols).reset_index(drop=True)
    values = frame[cols].to_numpy(dtype=float) * np.array([1.0 if m == "max" else -1.0 for m in modes])
    ge = (values[:, None, :] >= values[None, :, :]).all(axis=2)  # ge[j, i]: j at least as good as i
    gt = (values[:, None, :] > values[None, :, :]).any(axis=2)
    dominated = (ge & gt).any(axis=0)
    front = frame[~dominated]
    return front.sort_values(cols[0], ascending=(modes[0] == "min"), kind="stable").reset_index(drop=True)


def _no_progress_bar() -> typing.ContextManager[None]:
    """MLflow draws a download progress bar on stderr; one small file does not need it."""
    return scoped_env({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})


def config_of(run_id: str, *, tracking_uri: str | None = None) -> "TrialConfig":
    """The trial config of a trial run, ready for `v1sweep train`.

    Read from the run's ``config.yaml`` artifact when present (exact), else rebuilt from its
    params with `v1sweep.config.from_flat`.
    """
    from mlflow.exceptions import MlflowException

    from v1sweep.config import trial as cfg

    uri = resolve_tracking_uri(tracking_uri)
    client = _client(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise QueryError(f"no run {run_id!r} in {mask_uri(uri)}") from None
    role = run.data.tags.get(C.ROLE)
    if role not in (None, TRIAL_ROLE):
        raise QueryError(f"run {run_id} is a {role!r} run, not a trial; pick a trial's run_id")
    try:
        names = {a.path for a in client.list_artifacts(run_id)}
    except Exception:  # artifact store unreachable: the params still tell
        names = set()
    if C.CONFIG_YAML in names:
        with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
            try:
                local = client.download_artifacts(run_id, C.CONFIG_YAML, tmp)
                tree = cfg.read_yaml(local)
                return cfg.from_dict(tree or {}, file=f"run {run_id}: {C.CONFIG_YAML}")
            except MlflowException:
                pass
    if not run.data.params:
        raise QueryError(f"run {run_id} has neither a config.yaml artifact nor params")
    hints = _config_hints()
    flat = {k: _typed(v, hints[k]) for k, v in run.data.params.items() if k in hints}
    return cfg.from_flat(flat, file=f"run {run_id} params")


def status_counts(frame: "pd.DataFrame") -> dict[str, int]:
    """{'finished': n, 'failed': n, 'stopped': n, 'running': n, 'interrupted': n, 'total': n}."""
    counts = {state: int((frame["status"] == state).sum()) if len(frame) else 0 for state in STATES}
    counts["total"] = int(len(frame))
    return counts


def varying_params(frame: "pd.DataFrame", *, exclude: Iterable[str] = ()) -> list[str]:
    """The ``params.*`` columns whose value differs between rows (lists compared as tuples)."""
    exclude = set(exclude)
    out = []
    for col in frame.columns:
        if not col.startswith("params.") or col in exclude:
            continue
        values = frame[col].map(lambda v: tuple(v) if isinstance(v, list) else v)
        if values.astype(str).nunique(dropna=False) > 1:
            out.append(col)
    return out


def to_records(frame: "pd.DataFrame") -> list[dict[str, Any]]:
    """JSON-ready dicts of a `runs` table: params and metrics nested, NaN -> None, times ISO."""
    import math

    import pandas as pd

    def clean(value: Any) -> Any:
        if isinstance(value, tuple):
            return [clean(v) for v in value]
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        if value is pd.NaT:
            return None
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            return value.item()
        return value

    out = []
    for row in frame.to_dict(orient="records"):
        rec: dict[str, Any] = {"params": {}, "metrics": {}}
        for key, value in row.items():
            if key.startswith("params."):
                rec["params"][key[len("params."):]] = clean(value)
            elif key.startswith("metrics."):
                if not (isinstance(value, float) and math.isnan(value)):
                    rec["metrics"][key[len("metrics."):]] = clean(value)
            else:
                rec[key] = clean(value)
        out.append(rec)
    return out
