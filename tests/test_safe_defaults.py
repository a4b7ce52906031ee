"""Safe defaults (issue 7, section 3): nothing a user hands v1sweep runs as code, no secret is printed.

Each property is tested by behaviour first -- a payload that *would* run (shown by a control that
runs it through an unsafe loader) is handed to the product, which must refuse it without running
it -- and guarded by an AST scan of the package source, so a new call site cannot slip past:

- checkpoints load with ``torch.load(weights_only=True)``; pickled datasets with a restricted unpickler;
- YAML only through safe loaders; nothing in a config is evaluated (no eval/exec/compile, no shell);
- tracking URIs with credentials are never printed nor part of a trial's params;
- `v1sweep ui` (and anything else that serves) binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import v1sweep
from v1sweep.config import trial as cfg
from v1sweep.errors import ConfigError, DatasetError, V1SweepError

PACKAGE = Path(v1sweep.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


# ---------------------------------------------------------------------------------------------
# payloads: each creates `marker` when (and only when) it is deserialised unsafely
# ---------------------------------------------------------------------------------------------
class Payload:
    """Unpickling this calls ``open(marker, 'w')``: the file appearing proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def yaml_payload(marker: Path) -> str:
    return f"!!python/object/apply:builtins.open [{str(marker)!r}, w]"


def test_controls_show_the_payloads_are_live(tmp_path):
    """Without the safe paths the payloads do run, so the tests below can fail."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "pickle")))
    assert (tmp_path / "pickle").exists()
    torch.save({"x": Payload(tmp_path / "torch")}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert (tmp_path / "torch").exists()
    yaml.unsafe_load(f"name: {yaml_payload(tmp_path / 'yaml')}\n")
    assert (tmp_path / "yaml").exists()


# ---------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------
def _evil_checkpoint(path: Path, marker: Path) -> Path:
    from v1sweep.trial.training import CHECKPOINT_FORMAT

    torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": "0" * 16, "epoch": 1, "evil": Payload(marker)}, path)
    return path


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    from v1sweep.trial.training import load_checkpoint

    path = _evil_checkpoint(tmp_path / "checkpoint.pt", tmp_path / "ran")
    with pytest.raises(ConfigError, match="cannot read checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_trial_resume_refuses_a_planted_checkpoint(tmp_path):
    """A checkpoint dropped into a trial's out dir is never unpickled with code."""
    from v1sweep.trial.run import run_trial

    out = tmp_path / "out"
    out.mkdir()
    _evil_checkpoint(out / "checkpoint.pt", tmp_path / "ran")
    config = cfg.from_dict({"data": {"dataset": "synthetic", "image_size": 16, "train_size": 20, "test_size": 10},
                            "frontend": {"enabled": False}, "model": {"backbone": "tiny", "bottleneck": 8},
                            "train": {"epochs": 1, "batch_size": 10, "device": "cpu"},
                            "eval": {"corruptions": []}})
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        run_trial(config, out, log=None)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------
# YAML files: trial configs, sweep files, custom RF histograms
# ---------------------------------------------------------------------------------------------
def test_trial_config_with_a_python_tag_is_rejected(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"name: {yaml_payload(tmp_path / 'ran')}\n")
    with pytest.raises(ConfigError, match="python/object/apply") as info:
        cfg.load(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_override_with_a_python_tag_stays_a_string(tmp_path):
    """`--set` values are parsed as YAML scalars, safely: a tag is not constructed."""
    value = cfg.parse_overrides([f"name={yaml_payload(tmp_path / 'ran')}"])["name"]
    assert isinstance(value, str)
    assert not (tmp_path / "ran").exists()


def test_cli_train_with_a_python_tag_exits_2_and_runs_nothing(tmp_path, capsys):
    from v1sweep.cli import main

    (tmp_path / "cfg.yaml").write_text(f"name: {yaml_payload(tmp_path / 'ran')}\n")
    assert main(["train", "cfg.yaml", "--out", "out"]) == 2
    assert "cfg.yaml: malformed YAML" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


def test_sweep_file_with_a_python_tag_is_rejected_by_the_query_side(tmp_path):
    """`v1sweep best/status SWEEP.yaml` read the sweep file: safely."""
    from v1sweep.results import query as query

    path = tmp_path / "sweep.yaml"
    path.write_text(f"name: {yaml_payload(tmp_path / 'ran')}\n")
    with pytest.raises(V1SweepError) as info:
        query.resolve_sweep(path)
    assert str(path) in str(info.value)
    assert not (tmp_path / "ran").exists()


def test_sweep_and_search_space_files_with_a_python_tag_are_rejected(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path / "home"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    for name, sweep, space in (
            ("in-sweep", f"name: {yaml_payload(tmp_path / 'ran')}\ninclude: [space.yaml]\n",
             "space:\n  train.seed: {grid: [0]}\n"),
            ("in-space", "name: s\ninclude: [space.yaml]\n", f"space:\n  train.seed: {yaml_payload(tmp_path / 'ran')}\n")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "sweep.yaml").write_text(sweep)
        (folder / "space.yaml").write_text(space)
        proc = subprocess.run([sys.executable, "-m", "v1sweep.cli", "run", "sweep.yaml", "--dry-run"], cwd=folder,
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr
        assert "malformed YAML" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert not (tmp_path / "ran").exists()
        assert not (tmp_path / "m.db").exists()
        assert sorted(p.name for p in folder.iterdir()) == ["space.yaml", "sweep.yaml"]


def test_custom_rf_histogram_with_a_python_tag_is_rejected(tmp_path):
    from v1sweep.rf import sample

    path = tmp_path / "hist.yaml"
    path.write_text(f"orientation: {yaml_payload(tmp_path / 'ran')}\n")
    with pytest.raises(ValueError, match="not valid YAML") as info:
        sample("custom", 4, 4, seed=0, path=str(path))
    assert str(path) in str(info.value)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------
# pickled datasets
# ---------------------------------------------------------------------------------------------
def test_cifar_batches_with_pickled_code_are_refused(tmp_path):
    from v1sweep.data import load_dataset

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        (folder / name).write_bytes(pickle.dumps({b"data": [], b"labels": []}))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": Payload(tmp_path / "ran")}))
    data = cfg.from_dict({"data": {"dataset": "cifar10", "path": str(tmp_path), "image_size": 16},
                          "frontend": {"enabled": False}}).data
    with pytest.raises(DatasetError, match=r"refusing to load (io|builtins)\.open") as info:
        load_dataset(data)
    assert "batches.meta" in str(info.value)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------
# nothing in a config is evaluated
# ---------------------------------------------------------------------------------------------
CODE = "__import__('os').system('touch ran')"


def test_config_values_that_look_like_code_stay_strings(tmp_path):
    config = cfg.from_flat({"name": CODE, "train.device": "cpu"})
    assert config.name == CODE
    again = cfg.from_flat(cfg.to_flat(config))
    assert again.name == CODE
    assert not (tmp_path / "ran").exists()


def test_logged_params_are_parsed_back_without_evaluation(tmp_path):
    """`config_of(run_id)` turns MLflow param strings back into values: literals only."""
    from v1sweep.results.query import parse_value

    for text in (CODE, f"[{CODE}]", "(lambda: 1)()", "{'a': __import__('os')}"):
        assert parse_value(text) == text
    assert parse_value("[1, 'a']") == (1, "a")
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------
# secrets: never printed, never a param
# ---------------------------------------------------------------------------------------------
SECRET_URI = "http://alice:s3cr3t-pw@127.0.0.1:{port}/mlflow?token=t0k3n-value&x=1"
SECRETS = ("s3cr3t-pw", "t0k3n-value", "alice")


def test_trial_params_have_no_tracking_fields():
    flat = cfg.to_flat(cfg.from_dict({}))
    assert not [k for k in flat if k.split(".")[0] in ("tracking", "mlflow") or "uri" in k or "token" in k]
    with pytest.raises(ConfigError, match="unknown key"):
        cfg.from_flat({"tracking.uri": "http://u:p@host"})


@pytest.mark.parametrize("text", [
    "API request to http://alice:s3cr3t-pw@127.0.0.1:5000/api/2.0/x failed",
    "url: /mlflow?token=t0k3n-value/api/2.0/mlflow/runs/search (Caused by ...)",
    "store 'postgresql://alice:s3cr3t-pw@db/mlflow' and https://h/?api_key=t0k3n-value&alice=1",
])
def test_cli_scrub_masks_credentials_in_any_text(text):
    from v1sweep.cli import scrub

    masked = scrub(text)
    assert "s3cr3t-pw" not in masked and "t0k3n-value" not in masked
    assert "***" in masked


def test_mask_uri_keeps_everything_but_the_secrets():
    from v1sweep.results.store import mask_uri

    masked = mask_uri(SECRET_URI.format(port=5000))
    assert masked == "http://***@127.0.0.1:5000/mlflow?token=***&x=1"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("via", ["option", "environment"])
def test_cli_never_prints_credentials_of_an_unreachable_store(via, tmp_path):
    """Even when the store fails (here: nothing listens), the output shows the URI masked."""
    uri = SECRET_URI.format(port=_free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5", HOME=str(tmp_path))
    argv = [sys.executable, "-m", "v1sweep.cli", "status", "smoke"]
    if via == "option":
        argv += ["--tracking-uri", uri]
    else:
        env["MLFLOW_TRACKING_URI"] = uri
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "127.0.0.1" in output  # it does say which store failed...
    for secret in SECRETS:
        assert secret not in output, output[-3000:]  # ...without its credentials


def test_ui_for_a_server_store_prints_it_masked_and_starts_nothing(capsys):
    from v1sweep.cli import main

    assert main(["ui", "--tracking-uri", SECRET_URI.format(port=5999)]) == 0
    out = capsys.readouterr()
    assert "http://***@127.0.0.1:5999" in out.out
    for secret in SECRETS:
        assert secret not in out.out + out.err


CI_MARKERS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
              "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
              "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID")


def test_mlflow_usage_telemetry_is_off_for_users(tmp_path):
    """MLflow >= 3 reports usage to its vendor unless told not to; a research tool should not.

    MLflow switches telemetry off by itself under pytest and CI, so the command runs with those
    markers removed, as a user's shell would. An enabled telemetry client writes its
    installation id to ~/.config/mlflow/telemetry.json.
    """
    (tmp_path / "sweep.yaml").write_text("name: t\nspace:\n  train.seed: {grid: [0]}\n")
    env = {k: v for k, v in os.environ.items()
           if k not in CI_MARKERS and k not in ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "XDG_CONFIG_HOME")}
    env.update(HOME=str(tmp_path / "home"), MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    proc = subprocess.run([sys.executable, "-m", "v1sweep.cli", "run", "sweep.yaml", "--tracking-uri",
                           f"http://127.0.0.1:{_free_port()}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr  # the store is unreachable: it stops before any trial
    assert not (tmp_path / "home" / ".config" / "mlflow" / "telemetry.json").exists()


# ---------------------------------------------------------------------------------------------
# servers bind 127.0.0.1
# ---------------------------------------------------------------------------------------------
def test_ui_binds_loopback_by_default():
    from v1sweep.cli import build_parser
    from v1sweep.cli.ui import server_command

    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    params = inspect.signature(server_command).parameters
    extra = {"uri": "sqlite:///x.db"} if "uri" in params else {}
    argv = server_command(host=args.host, port=args.port, **extra)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in argv


def test_ui_help_says_what_the_default_binds():
    proc = subprocess.run([sys.executable, "-m", "v1sweep.cli", "ui", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "default 127.0.0.1" in " ".join(proc.stdout.split())


# ---------------------------------------------------------------------------------------------
# AST guards over the package source
# ---------------------------------------------------------------------------------------------
def _trees():
    for path in SOURCES:
        yield path, ast.parse(path.read_text(), filename=str(path))


def _dotted(node: ast.AST) -> str:
    """'torch.load' for torch.load, 'np.load' for np.load, '' when not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> full dotted name, from the module's imports (`import torch as T`, `from yaml import load`)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _resolve(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    full = aliases.get(head, head)
    return f"{full}.{rest}" if rest else full


def _calls(tree: ast.AST):
    """(full dotted name, Call node) of every call, with import aliases resolved."""
    aliases = _aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func):
            yield _resolve(_dotted(node.func), aliases), node


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def scan_torch_load(trees) -> tuple[list[str], int]:
    """torch.load calls without ``weights_only=True`` (and loaders that always unpickle code)."""
    bad, seen = [], 0
    for path, tree in trees:
        for name, call in _calls(tree):
            if name in ("torch.load", "torch.serialization.load"):
                seen += 1
                flag = _kw(call, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    bad.append(f"{_where(path, call)} {name}")
            elif name in ("torch.jit.load", "torch.package.PackageImporter"):
                bad.append(f"{_where(path, call)} {name}")
    return bad, seen


def _is_safe_loader(path: Path, node: ast.AST | None) -> bool:
    """`Loader=` names yaml.SafeLoader/CSafeLoader or a subclass of it defined in that module."""
    name = _dotted(node) if node is not None else ""
    if name in ("yaml.SafeLoader", "yaml.CSafeLoader"):
        return True
    if not name or "." in name:
        return False
    try:
        module = importlib.import_module(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    except ImportError:
        return False
    obj = getattr(module, name, None)
    return isinstance(obj, type) and issubclass(obj, yaml.SafeLoader)


def scan_yaml(trees) -> list[str]:
    unsafe = {"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"}
    loaders = {"yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.CLoader", "yaml.CUnsafeLoader",
               "yaml.CFullLoader"}
    bad = []
    for path, tree in trees:
        aliases = _aliases(tree)
        for name, call in _calls(tree):
            if name in unsafe:
                bad.append(f"{_where(path, call)} {name}")
            elif name in ("yaml.load", "yaml.load_all") and not _is_safe_loader(path, _kw(call, "Loader")):
                bad.append(f"{_where(path, call)} {name} without a SafeLoader")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _resolve(_dotted(node), aliases) in loaders:
                bad.append(f"{_where(path, node)} {_dotted(node)}")
    return bad


def scan_code_execution(trees) -> list[str]:
    """eval/exec/compile, shells, and deserialisers that run code (pickle, marshal, dill, ...)."""
    forbidden = {"eval", "exec", "compile", "os.system", "os.popen", "pickle.load", "pickle.loads",
                 "marshal.loads", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
                 "joblib.load", "pandas.read_pickle", "shelve.open"}
    bad = []
    for path, tree in trees:
        for name, call in _calls(tree):
            if name in forbidden:
                bad.append(f"{_where(path, call)} {name}")
            shell = _kw(call, "shell")
            if name.startswith("subprocess.") and not (shell is None or (isinstance(shell, ast.Constant)
                                                                         and shell.value is False)):
                bad.append(f"{_where(path, call)} {name}(shell=...)")
            if name == "numpy.load":  # numpy refuses pickles by default; never opt in
                allow = _kw(call, "allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    bad.append(f"{_where(path, call)} {name}(allow_pickle=...)")
    return bad


def scan_unpicklers(trees) -> tuple[list[str], int]:
    """A pickle.Unpickler is only safe as a subclass that restricts `find_class`."""
    bad, seen = [], 0
    for path, tree in trees:
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = {_resolve(_dotted(b), aliases) for b in node.bases if _dotted(b)}
                if bases & {"pickle.Unpickler", "_pickle.Unpickler"}:
                    seen += 1
                    if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                        bad.append(f"{_where(path, node)} {node.name} without find_class")
        for name, call in _calls(tree):
            if name in ("pickle.Unpickler", "_pickle.Unpickler"):
                bad.append(f"{_where(path, call)} plain {name}")
    return bad, seen


def scan_binds(trees) -> list[str]:
    """host/dashboard_host/default/bind set to all interfaces."""
    bad = []
    for path, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("host", "dashboard_host", "default", "bind"):
                value = node.value.value if isinstance(node.value, ast.Constant) else None
                if value in ("0.0.0.0", "::") or (value == "" and node.arg != "default"):
                    bad.append(f"{_where(path, node.value)} {node.arg}={value!r}")
    return bad


def test_ast_every_torch_load_uses_weights_only_true():
    bad, seen = scan_torch_load(_trees())
    assert seen >= 1, "the scan found no torch.load at all: is it still looking at the package?"
    assert bad == [], f"torch.load without weights_only=True (or a loader that runs code) at {bad}"


def test_ast_yaml_is_only_read_by_safe_loaders():
    assert scan_yaml(_trees()) == []


def test_ast_no_eval_exec_shell_or_code_deserialisers():
    assert scan_code_execution(_trees()) == []


def test_ast_restricted_unpicklers_override_find_class():
    bad, seen = scan_unpicklers(_trees())
    assert seen >= 1, "the scan found no restricted unpickler (the CIFAR reader has one): is it looking?"
    assert bad == []


def test_ast_nothing_binds_all_interfaces_by_default():
    assert scan_binds(_trees()) == []


SNIPPET = """
import pickle, subprocess, yaml
import torch as T
from yaml import load as yload
import numpy as np
T.load("a.pt")
T.load("b.pt", weights_only=False)
T.load("c.pt", weights_only=True)
torch.jit.load("d.pt")
yaml.load(text, Loader=yaml.Loader)
yload(text)
yaml.load(text, Loader=yaml.SafeLoader)
yaml.full_load(text)
eval("1 + 1")
exec("x = 1")
pickle.loads(blob)
np.load("x.npy", allow_pickle=True)
np.load("y.npy")
subprocess.run(cmd, shell=True)
subprocess.run(["ls"])
class Loose(pickle.Unpickler):
    pass
class Tight(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(name)
pickle.Unpickler(f).load()
server(host="0.0.0.0")
parser.add_argument("--host", default="0.0.0.0")
ray.init(dashboard_host="127.0.0.1")
model.eval()
"""


def test_ast_scanners_catch_known_violations():
    """The guards above can fail: each flags exactly the bad lines of a planted snippet."""
    trees = [(PACKAGE / "_snippet.py", ast.parse(SNIPPET))]

    def lines(found: list[str]) -> list[int]:
        return sorted(int(item.split(":")[1].split()[0]) for item in found)

    bad, seen = scan_torch_load(trees)
    assert (lines(bad), seen) == ([6, 7, 9], 3)
    assert lines(scan_yaml(trees)) == [10, 10, 11, 13]  # the call and the yaml.Loader reference on line 10
    assert lines(scan_code_execution(trees)) == [14, 15, 16, 17, 19]
    bad, seen = scan_unpicklers(trees)
    assert (lines(bad), seen) == ([21, 26], 2)
    assert lines(scan_binds(trees)) == [27, 28]


def test_sweep_file_with_credentials_in_tracking_uri_is_refused(tmp_path):
    """A sweep file is logged as an MLflow artifact and copied to the sweep folder: a password in
    its tracking URI would leak there, so it is refused and the message never shows the secret."""
    from v1sweep.config.sweep_file import load_sweep

    path = tmp_path / "s.yaml"
    path.write_text("name: t\nspace:\n  train.seed: {grid: [0]}\n"
                    "tracking: {uri: 'http://bob:hunter2@127.0.0.1:5000'}\n")
    with pytest.raises(ConfigError, match="tracking.uri") as info:
        load_sweep(path)
    assert "hunter2" not in str(info.value)
    assert "MLFLOW_TRACKING_PASSWORD" in str(info.value)
