"""Real services for the sweep tests: an `mlflow server`, a two-node loopback Ray cluster, and
deterministic trial functions.

Everything started here is started by the tests themselves and stopped by id: every process gets
an environment marker (``V1SWEEP_TEST_OWNER=<uuid>``) so teardown can find the children Ray leaves
behind (its agents re-parent to init) and kill exactly those, never anything by name.
The trial functions follow `v1sweep.trial.run_trial`'s signature and compute their metrics from the
config alone (`expected_final`), so tests can compare what MLflow holds against a reference.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from v1sweep.corruptions.catalog import CATEGORIES, CORRUPTIONS
from v1sweep.trial.functions import register

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


# ---------------------------------------------------------------------------------------------
# Deterministic trial functions (the signature of v1sweep.trial.run_trial)
# ---------------------------------------------------------------------------------------------
_STRATEGY_SCORE = {"biological": 0.30, "unif1": 0.10, "uniform": 0.10, "unif2": 0.15, "unif3": 0.20,
                   "interpolated": 0.25, "custom": 0.05}


def expected_val(config: Any, epoch: int) -> float:
    """val_acc after `epoch` epochs: rises with epochs, higher for 'better' configs."""
    base = _STRATEGY_SCORE.get(config.rf.strategy, 0.0) + 0.01 * config.train.seed
    return round(min(0.99, 0.1 + base * epoch / max(1, config.train.epochs)), 6)


def expected_final(config: Any) -> dict[str, float]:
    """The final metrics (contract names) the fake trial reports for `config`."""
    clean = round(0.4 + _STRATEGY_SCORE.get(config.rf.strategy, 0.0) + 0.01 * config.train.seed
                  + 0.001 * config.rf.seed + 0.0001 * config.frontend.k_exc, 6)
    out = {"clean_acc": clean, "clean_top5": min(1.0, clean + 0.2)}
    per_name = {}
    for i, name in enumerate(config.eval.corruptions):
        per_name[name] = round(clean * (0.5 + 0.02 * i), 6)
        out[f"corruption_acc/{name}"] = per_name[name]
    for cat in CATEGORIES:
        vals = [v for n, v in per_name.items() if CORRUPTIONS[n] == cat]
        if vals:
            out[f"corruption_acc/{cat}"] = sum(vals) / len(vals)
    out["corruption_acc"] = sum(per_name.values()) / len(per_name) if per_name else clean
    out["rf_similarity"] = 0.9 if config.rf.strategy == "biological" else 0.4
    for prop in ("orientation", "sf", "nxny"):
        out[f"rf_similarity/{prop}"] = out["rf_similarity"]
    out["train_images_per_s"] = 1000.0
    out["wall_time_s"] = 0.01
    return out


@register
def fake_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None, log: Callable | None = None,
               epoch_s: float = 0.0, crash_after: int | None = None) -> dict[str, float]:
    """Epochs with deterministic metrics; resumes from ``checkpoint.json`` in `out_dir`; writes
    config.yaml, rf_params.csv and summary.json like run_trial. `crash_after`: os._exit after that
    many epochs of this process (an OOM-like kill), once per out_dir."""
    from v1sweep.config.trial import to_yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(to_yaml(config))
    (out_dir / "rf_params.csv").write_text("sf,theta\n1.0,0.0\n")
    ckpt = out_dir / "checkpoint.json"
    start = json.loads(ckpt.read_text())["epoch"] + 1 if ckpt.exists() else 1
    ran = 0
    for epoch in range(start, config.train.epochs + 1):
        if epoch_s:
            time.sleep(epoch_s)
        metrics = {"train_loss": 2.0 / epoch, "train_acc": expected_val(config, epoch) - 0.05,
                   "val_acc": expected_val(config, epoch), "lr": config.train.lr, "images_per_s": 1000.0}
        ckpt.write_text(json.dumps({"epoch": epoch}))
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        ran += 1
        marker = out_dir / "crashed_once"
        if crash_after is not None and ran >= crash_after and not marker.exists():
            marker.write_text("1")
            os._exit(17)
    final = expected_final(config)
    (out_dir / "summary.json").write_text(json.dumps({"status": "finished", "metrics": final}))
    return final


@register
def slow_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None,
               log: Callable | None = None) -> dict[str, float]:
    """fake_trial taking 0.6 s per epoch (for killing a driver mid-sweep)."""
    return fake_trial(config, out_dir, on_epoch=on_epoch, log=log, epoch_s=0.6)


@register
def raising_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None,
                  log: Callable | None = None) -> dict[str, float]:
    """Raises for strategy unif1 after one epoch; otherwise fake_trial."""
    if config.rf.strategy == "unif1":
        if on_epoch is not None:
            on_epoch(1, {"train_loss": 1.0, "train_acc": 0.1, "val_acc": 0.1, "lr": 0.1, "images_per_s": 1.0})
        raise RuntimeError(f"injected failure for seed {config.train.seed}")
    return fake_trial(config, out_dir, on_epoch=on_epoch, log=log)


@register
def filling_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None,
                  log: Callable | None = None) -> dict[str, float]:
    """fake_trial that also writes 1 MiB per epoch into out_dir (fills a small disk)."""
    def fill(epoch: int, metrics: dict) -> None:
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        with open(Path(out_dir) / f"blob-{epoch}.bin", "wb") as f:
            f.write(b"\0" * 2**20)

    return fake_trial(config, out_dir, on_epoch=fill, log=log)


@register
def crashing_trial(config: Any, out_dir: str | Path, *, on_epoch: Callable | None = None,
                   log: Callable | None = None) -> dict[str, float]:
    """The worker process dies (os._exit) after 2 epochs, once per trial; the retry resumes."""
    return fake_trial(config, out_dir, on_epoch=on_epoch, log=log, crash_after=2)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def trial_runs(uri: str, parent: str) -> dict[str, Any]:
    """trial id -> MLflow run of a sweep's parent run, deleted runs included (so a test sees a run
    that a code path deleted); fails if a trial has two runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_run(parent).info.experiment_id
    out = {}
    for run in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'", run_view_type=3):
        tid = run.data.tags["trial_id"]
        assert tid not in out, f"two runs for trial {tid}"
        out[tid] = run
    return out


def mount_tmpfs(path: Path, size: str = "5m") -> None:
    """A real small disk at `path` (root only); skips the calling test where mounting is not allowed."""
    import pytest

    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'mount failed'}); needs root")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened\n{tail}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{host}:{port} did not open within {timeout} s\n{tail}")


def marked_pids(marker: str) -> list[int]:
    """Processes whose environment holds V1SWEEP_TEST_OWNER=<marker> (ours, found by id)."""
    needle = f"V1SWEEP_TEST_OWNER={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def pids_in(folder: Path) -> list[int]:
    """Processes whose working directory lies in `folder` (a test's own temporary folder): Ray's
    agents overwrite their environment with their process title, so the marker cannot find them."""
    folder = Path(folder).resolve()
    me = {os.getpid(), os.getppid()}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in me:
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(int(entry.name))
    return found


def marked_tree(marker: str, folder: Path | None = None) -> list[int]:
    """Marked processes (and those working in `folder`) with all their descendants."""
    children = _children_map()
    todo, seen = list(marked_pids(marker)) + (pids_in(folder) if folder else []), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid == os.getpid():
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
    return sorted(seen)


def kill_marked(marker: str, *, grace: float = 5.0, folder: Path | None = None) -> list[int]:
    """End what a test started: processes carrying `marker`, those working in `folder`, and their
    descendants (SIGTERM, then SIGKILL after `grace`)."""
    pids = marked_tree(marker, folder)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    for pid in sorted(set(pids) | set(marked_pids(marker))):
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def marked_env(marker: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, V1SWEEP_TEST_OWNER=marker, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(extra)
    return env


class MlflowServer:
    """`mlflow server` on 127.0.0.1 (a free port) with a sqlite backend and proxied artifacts."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.marker = uuid.uuid4().hex
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "server.log"

    def start(self, timeout: float = 180.0) -> "MlflowServer":
        cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts")]
        self.proc = subprocess.Popen(cmd, env=marked_env(self.marker), cwd=self.root, stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port("127.0.0.1", self.port, timeout, self.proc, self.log)
        self._wait_healthy(timeout)
        return self

    def _wait_healthy(self, timeout: float) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"mlflow server at {self.uri} not healthy after {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        kill_marked(self.marker, grace=2, folder=self.root)
        self.proc = None


class RayCluster:
    """A two-node Ray cluster on loopback: head on 127.0.0.2, worker on 127.0.0.3, token auth
    (a fresh token in `env`: RAY_AUTH_MODE=token, RAY_AUTH_TOKEN; drivers must use `env`).

    Ray rewrites 127.0.0.1 to the host's address, so the nodes use other loopback addresses. Each
    `ray start --block` stays in the foreground; teardown ends them and every process carrying the
    cluster's marker. `--temp-dir` keeps the session files inside the test's folder.
    """

    def __init__(self, root: Path, *, cpus_per_node: int = 1) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp = Path(f"/tmp/v1s-{uuid.uuid4().hex[:8]}")  # Unix socket paths must stay short
        self.marker = uuid.uuid4().hex
        self.cpus = cpus_per_node
        self.port = free_port("127.0.0.2")
        self.address = f"127.0.0.2:{self.port}"
        # The cluster's own token (not ~/.ray/auth_token, which a fresh machine does not have).
        self.env = marked_env(self.marker, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        self.env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.procs: list[subprocess.Popen] = []

    def _start(self, args: list[str], log: str) -> subprocess.Popen:
        cmd = [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", "--num-cpus", str(self.cpus),
               "--temp-dir", str(self.temp), "--dashboard-agent-listen-port", str(free_port()), *args]
        proc = subprocess.Popen(cmd, env=self.env, cwd=self.root, stdout=open(self.root / log, "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 240.0) -> "RayCluster":
        head = self._start(["--head", "--node-ip-address", "127.0.0.2", "--port", str(self.port),
                            "--include-dashboard", "false", "--dashboard-port", str(free_port())], "head.log")
        wait_port("127.0.0.2", self.port, timeout, head, self.root / "head.log")
        self._start(["--address", self.address, "--node-ip-address", "127.0.0.3"], "worker.log")
        self.wait_nodes(2, timeout)
        return self

    def wait_nodes(self, n: int, timeout: float) -> None:
        code = ("import ray,time,sys\nray.init(address=sys.argv[1],logging_level='ERROR')\n"
                "t=time.time()\nwhile len([x for x in ray.nodes() if x['Alive']])<int(sys.argv[2]):\n"
                "    assert time.time()-t<float(sys.argv[3]), 'nodes did not join'\n    time.sleep(0.3)\n")
        subprocess.run([sys.executable, "-c", code, self.address, str(n), str(timeout)], env=self.env, check=True,
                       timeout=timeout + 60, capture_output=True)

    def kill_worker_node(self) -> None:
        """SIGKILL the worker node's raylet and workers (a machine lost mid-trial)."""
        worker = self.procs[1]
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in marked_pids(self.marker):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"127.0.0.3" in cmd:
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM both nodes, a few seconds' grace (a node whose peer is gone can take 30 s to
        give up), then SIGKILL whatever of ours is left."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        kill_marked(self.marker, grace=2, folder=self.root)
        import shutil

        shutil.rmtree(self.temp, ignore_errors=True)


def run_cli(args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "v1sweep"), *args], cwd=cwd, env=dict(env), capture_output=True, text=True,
                          timeout=timeout)
