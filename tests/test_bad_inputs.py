"""The bad-input catalogue (issue 7, section 2; docs/troubleshooting.md lists it).

Every bad input either makes the CLI exit non-zero -- exit code 2 for user errors -- with a
message naming the file, the key and the allowed values and no traceback, or makes the Python API
raise a typed error (`ConfigError`, `DatasetError`, `TrialFailed`, or `ValueError` naming the
option). And it leaves nothing behind: no output folder, no MLflow store, no cache file for an
input rejected before any work starts.

CLI cases run in their own folder with HOME, the dataset cache and the MLflow store pointed
inside it, so anything a rejected command creates shows up as a new file. Sweep and tracking cases,
and three `v1sweep train` cases end to end (malformed YAML, a bad RF histogram file, a NaN loss),
run the real command line in a subprocess (`python -m v1sweep.cli ...`), launched a few at a time
by one module fixture; the other `v1sweep train` cases go through `v1sweep.cli.main` in this process (the same parsing, dispatch and error handling, without a torch import per case;
V1SWEEP_TEST_ALL_SUBPROCESS=1 sends them through subprocesses too). Each case is its own test.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from v1sweep.config import trial as cfg
from v1sweep.errors import ConfigError, DatasetError, TrialFailed, V1SweepError


# A small trial that runs in seconds on CPU (used where the error only shows once a trial starts).
TINY = """\
name: tiny
data: {dataset: synthetic, image_size: 16, train_size: 40, test_size: 20}
frontend: {n_simple: 4, n_complex: 4, ksize: 7, visual_degrees: 1.0, sf_max: 4.0}
model: {backbone: tiny, bottleneck: 8}
train: {epochs: 1, batch_size: 20, device: cpu, schedule: constant}
eval: {corruptions: [], max_images: 20}
"""
GOOD_SPACE = "space:\n  train.seed: {grid: [0, 1]}\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class CliCase:
    """One command line, the files it needs, and what its error must say."""

    id: str
    argv: tuple[str, ...]
    files: dict[str, str | bytes] = field(default_factory=dict)
    # every fragment must appear in stderr; a tuple fragment means "any of these" (case-insensitive)
    expect: tuple[str | tuple[str, ...], ...] = ()
    code: int = 2
    leaves: tuple[str, ...] = ()      # files a runtime failure is documented to leave (e.g. a failed summary)
    process: bool = False             # run in a fresh interpreter (see PROCESS_CASES)
    needs_no_cuda: bool = False       # the bad input is "cuda" on a machine without it


def trial(*extra: str) -> tuple[str, ...]:
    """`v1sweep train cfg.yaml --out out [extra...]`."""
    return ("train", "cfg.yaml", "--out", "out", *extra)


CLI_CASES: list[CliCase] = [
    # ---- the trial config file itself
    CliCase("malformed-yaml", trial(), {"cfg.yaml": "train:\n  epochs: [1, 2\n"},
            ("cfg.yaml", "malformed YAML at line"), process=True),
    CliCase("not-utf8-text", trial(), {"cfg.yaml": b"\xff\xfe\x00\x89PNG binary"},
            ("cfg.yaml", "not a UTF-8 text file")),
    CliCase("duplicate-key", trial(), {"cfg.yaml": "train: {epochs: 3}\ntrain: {lr: 0.01}\n"},
            ("cfg.yaml", "duplicate key 'train'", "line 2")),
    CliCase("config-is-a-list", trial(), {"cfg.yaml": "- train: {epochs: 1}\n"},
            ("cfg.yaml", "must be a mapping")),
    CliCase("config-missing", ("train", "nope.yaml", "--out", "out"), {}, ("nope.yaml", "file not found")),
    CliCase("unknown-key", trial(), {"cfg.yaml": "train:\n  epocs: 3\n"},
            ("cfg.yaml", "train.epocs", "did you mean 'epochs'", "valid keys:")),
    CliCase("unknown-section", trial(), {"cfg.yaml": "trian:\n  epochs: 3\n"},
            ("cfg.yaml", "trian", "did you mean 'train'", "valid keys:")),
    CliCase("wrong-type-number", trial(), {"cfg.yaml": "train:\n  lr: fast\n"},
            ("cfg.yaml", "train.lr", "expected a number", "'fast'")),
    CliCase("wrong-type-section", trial(), {"cfg.yaml": "frontend: [1, 2]\n"},
            ("cfg.yaml", "frontend", "expected a mapping")),
    CliCase("wrong-type-list", trial(), {"cfg.yaml": "eval:\n  severities: 3\n"},
            ("cfg.yaml", "eval.severities", "expected a list")),
    CliCase("fractional-epochs", trial(), {"cfg.yaml": "train:\n  epochs: 2.5\n"},
            ("cfg.yaml", "train.epochs", "expected an integer")),
    CliCase("alpha-out-of-range", trial(), {"cfg.yaml": "rf:\n  strategy: interpolated\n  alpha: 1.5\n"},
            ("cfg.yaml", "rf.alpha", "allowed: [0, 1]")),
    CliCase("channels-too-many", trial(), {"cfg.yaml": "frontend:\n  n_simple: 5000\n"},
            ("cfg.yaml", "frontend.n_simple", "allowed: [0, 4096]")),
    CliCase("channels-negative", trial(), {"cfg.yaml": "frontend:\n  n_complex: -4\n"},
            ("cfg.yaml", "frontend.n_complex", "allowed: [0, 4096]")),
    CliCase("channels-zero", trial(), {"cfg.yaml": "frontend:\n  n_simple: 0\n  n_complex: 0\n"},
            ("cfg.yaml", "frontend.n_simple", "at least one channel")),
    CliCase("ksize-even", trial(), {"cfg.yaml": "frontend:\n  ksize: 30\n"},
            ("cfg.yaml", "frontend.ksize", "must be odd", "allowed: odd integers in [3, 127]")),
    CliCase("sf-beyond-nyquist", trial(),
            {"cfg.yaml": "data:\n  image_size: 32\nfrontend:\n  visual_degrees: 2.0\n  sf_max: 11.5\n"},
            ("cfg.yaml", "frontend.sf_max", "Nyquist frequency 8 cpd", "visual_degrees <= 1.39")),
    CliCase("negative-epochs", trial(), {"cfg.yaml": "train:\n  epochs: -1\n"},
            ("cfg.yaml", "train.epochs", "allowed: [0, 10000]")),
    CliCase("severity-6", trial(), {"cfg.yaml": "eval:\n  severities: [1, 6]\n"},
            ("cfg.yaml", "eval.severities", "allowed: [1, 5]")),
    CliCase("infinite-value", trial(), {"cfg.yaml": "frontend:\n  k_exc: .inf\n"},
            ("cfg.yaml", "frontend.k_exc", "finite")),
    CliCase("unknown-corruption", trial(), {"cfg.yaml": "eval:\n  corruptions: [gaussian_nois]\n"},
            ("cfg.yaml", "eval.corruptions", "did you mean 'gaussian_noise'", "allowed: gaussian_noise")),
    CliCase("unknown-strategy", trial(), {"cfg.yaml": "rf:\n  strategy: biologcal\n"},
            ("cfg.yaml", "rf.strategy", "did you mean 'biological'", "allowed: biological")),
    CliCase("unknown-backbone", trial(), {"cfg.yaml": "model:\n  backbone: ResNet18\n"},
            ("cfg.yaml", "model.backbone", "did you mean 'resnet18'", "allowed: resnet18")),
    CliCase("unknown-dataset", trial(), {"cfg.yaml": "data:\n  dataset: CIFAR10\n  path: data\n"},
            ("cfg.yaml", "data.dataset", "did you mean 'cifar10'", "allowed: synthetic")),
    CliCase("dataset-without-path", trial(), {"cfg.yaml": "data:\n  dataset: cifar10\n"},
            ("cfg.yaml", "data.path", "needs a path")),
    CliCase("custom-without-file", trial(), {"cfg.yaml": "rf:\n  strategy: custom\n"},
            ("cfg.yaml", "rf.custom_path")),
    CliCase("bad-device", trial("--device", "tpu"), {"cfg.yaml": TINY},
            ("cfg.yaml", "train.device", "allowed: auto, cpu, cuda, cuda:N")),
    # ---- --set overrides
    CliCase("set-without-equals", trial("--set", "train.epochs"), {"cfg.yaml": TINY},
            ("--set expects key=value", "'train.epochs'")),
    CliCase("set-unknown-key", trial("--set", "train.epocs=3"), {"cfg.yaml": TINY},
            ("train.epocs", "did you mean 'epochs'")),
    CliCase("set-conflicting-keys", trial("--set", "train=3"), {"cfg.yaml": TINY},
            ("cfg.yaml", "train", "expected a mapping")),
    # ---- inputs only a running trial can check
    CliCase("dataset-path-missing", trial(),
            {"cfg.yaml": TINY.replace("dataset: synthetic", "dataset: imagefolder, path: no/such/folder")},
            ("imagefolder", "path does not exist", "no/such/folder")),
    CliCase("custom-histogram-negative-counts", trial(),
            {"cfg.yaml": TINY + "rf: {strategy: custom, custom_path: neg.yaml}\n",
             "neg.yaml": "orientation: {edges: [0, 45, 90, 135, 180], counts: [3, -2, 4, 5]}\n"},
            ("neg.yaml", "orientation", "counts must be >= 0"), process=True),
    CliCase("nan-loss", trial(), {"cfg.yaml": TINY.replace("sf_max: 4.0", "sf_max: 4.0, k_exc: 1.0e+39")},
            ("diverged", "non-finite training loss"), process=True,
            leaves=("out", "out/summary.json", "out/config.yaml", "out/rf_params.csv", "out/rf_histograms.png")),
    CliCase("out-is-a-file", ("train", "cfg.yaml", "--out", "taken/out"), {"cfg.yaml": TINY, "taken": "a file"},
            ("taken/out", "is not a folder"), code=1),
    CliCase("published-corruptions-missing", trial(),
            {"cfg.yaml": TINY.replace("eval: {corruptions: [], max_images: 20}",
                                      "eval: {corruptions: [gaussian_noise], severities: [1], source: published, "
                                      "path: no/CIFAR-10-C, max_images: 20}")},
            ("no/CIFAR-10-C", "not found")),
    CliCase("cuda-unavailable", trial("--device", "cuda"), {"cfg.yaml": TINY},
            ("train.device", "CUDA is not available"), needs_no_cuda=True),
    # ---- sweep and search-space files (`v1sweep run --dry-run` validates and expands, nothing runs)
    CliCase("sweep-include-cycle", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: cycle\ninclude: [space_a.yaml]\n",
             "space_a.yaml": "include: [space_b.yaml]\nspace:\n  rf.seed: {grid: [0, 1]}\n",
             "space_b.yaml": "include: [space_a.yaml]\nspace:\n  train.seed: {grid: [0, 1]}\n"},
            ("space_a.yaml", "space_b.yaml", ("cycle", "circular"))),
    CliCase("sweep-empty-search-space", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: empty\ninclude: [space.yaml]\n", "space.yaml": "{}\n"},
            (("sweep.yaml", "space.yaml"), ("empty", "no parameters", "nothing to"))),
    CliCase("sweep-fractional-gpu-above-1", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: gpu\ninclude: [space.yaml]\nresources: {cpu: 1, gpu: 1.5}\n",
             "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "resources.gpu", "1.5", "allowed: a fraction in (0, 1]")),
    CliCase("sweep-unknown-key", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: typo\ninclude: [space.yaml]\nserch: {}\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "serch", "did you mean 'search'")),
    CliCase("sweep-unknown-distribution", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: dist\ninclude: [space.yaml]\n",
             "space.yaml": "space:\n  train.lr: {logunifrm: [1.0e-3, 1.0e-1]}\n"},
            ("space.yaml", "logunifrm", "loguniform")),
    CliCase("sweep-parameter-not-a-trial-key", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: key\ninclude: [space.yaml]\n",
             "space.yaml": "space:\n  rf.stratgy: {grid: [biological, unif1]}\n"},
            ("space.yaml", "rf.stratgy", "rf.strategy")),
    CliCase("sweep-malformed-yaml", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: broken\ninclude: [space.yaml\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "malformed YAML at line")),
    CliCase("sweep-bad-trial-key", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\ntrial: {train: {epocs: 3}}\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "trial.train.epocs", "did you mean 'epochs'")),
    CliCase("sweep-unknown-algorithm", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\nsearch: {algorithm: bayes}\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "search.algorithm", "allowed: grid, random, optuna, optuna-multi")),
    CliCase("sweep-optuna-without-metric", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\nsearch: {algorithm: optuna}\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "search.metric", "corruption_acc")),
    CliCase("sweep-include-missing", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ninclude: [spaec.yaml]\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "include", "'spaec.yaml' not found", "available: ")),
    CliCase("sweep-loguniform-reversed", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\nspace:\n  train.lr: {loguniform: [0.1, 0.001]}\n"},
            ("sweep.yaml", "space.train.lr", "low < high")),
    CliCase("sweep-grid-value-out-of-range", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\nspace:\n  train.epochs: {grid: [3, -1]}\n"},
            ("sweep.yaml", "space.train.epochs", "allowed: [0, 10000]")),
    CliCase("sweep-rejected-before-ray-or-mlflow-start", ("run", "sweep.yaml"),  # a real run, not --dry-run
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\nresources: {cpu: 1, gpu: 2.5}\n", "space.yaml": GOOD_SPACE},
            ("sweep.yaml", "resources.gpu", "2.5")),
    CliCase("sweep-set-unknown-key", ("run", "sweep.yaml", "--dry-run", "--set", "search.num_sampels=4"),
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\n", "space.yaml": GOOD_SPACE},
            ("num_sampels", "did you mean 'num_samples'")),
    CliCase("resume-not-a-sweep-folder", ("resume", "somewhere"), {"somewhere/notes.txt": "hi"},
            ("somewhere", "not a sweep folder", "sweep.json")),
    CliCase("resume-corrupt-sweep-json", ("resume", "swept"), {"swept/sweep.json": "{not json"},
            ("swept/sweep.json", ("not valid json", "cannot read", "corrupt", "malformed"))),
    # ---- issue 12: inputs that used to pass and fail later (or never)
    CliCase("sweep-float-domain-on-int-key", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ntrial: {}\nsearch: {algorithm: random, num_samples: 2}\n"
                           "space:\n  train.seed: {uniform: [0, 3]}\n"},
            ("sweep.yaml", "space.train.seed", "is an integer", "randint")),
    CliCase("run-num-cpus-zero", ("run", "sweep.yaml", "--num-cpus", "0"),
            {"sweep.yaml": "name: t\ntrial: {}\n" + GOOD_SPACE}, ("--num-cpus", "allowed: >= 1")),
    CliCase("run-num-cpus-negative", ("run", "sweep.yaml", "--num-cpus", "-1"),
            {"sweep.yaml": "name: t\ntrial: {}\n" + GOOD_SPACE}, ("--num-cpus", "allowed: >= 1")),
    CliCase("resume-num-cpus-zero", ("resume", "somewhere", "--num-cpus", "0"), {"somewhere/notes.txt": "hi"},
            ("--num-cpus", "allowed: >= 1")),
    CliCase("sweep-empty-trial-config", ("run", "sweep.yaml", "--dry-run"), {"sweep.yaml": "name: t\n" + GOOD_SPACE},
            ("sweep.yaml", "trial", "no base trial config", "trial: {}")),
    CliCase("sweep-trial-function-from-the-working-directory", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ntrial: {}\ntrial_function: evil:run\n" + GOOD_SPACE,
             "evil.py": "open('pwned', 'w').write('imported')\ndef run(*a, **k):\n    pass\n"},
            ("sweep.yaml", "trial_function", "working directory", "decorated with @v1sweep.trial.functions.register")),
    CliCase("sweep-trial-function-os-system", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ntrial: {}\ntrial_function: os:system\n" + GOOD_SPACE},
            ("sweep.yaml", "trial_function", "standard library")),
    CliCase("sweep-trial-function-not-registered", ("run", "sweep.yaml", "--dry-run"),
            {"sweep.yaml": "name: t\ntrial: {}\ntrial_function: mytrial\n" + GOOD_SPACE},
            ("sweep.yaml", "trial_function", "not a registered trial function", "entry point")),
    CliCase("sweep-gpu-on-a-machine-without", ("run", "sweep.yaml", "--num-cpus", "1"),
            {"sweep.yaml": "name: t\ntrial: {}\nresources: {cpu: 1, gpu: 1}\n" + GOOD_SPACE},
            ("sweep.yaml", "resources.gpu", "asks for 1 GPU", "0 GPU", "--set resources.gpu=0"), needs_no_cuda=True),
    CliCase("sweep-half-gpu-on-a-machine-without", ("run", "sweep.yaml", "--num-cpus", "1"),
            {"sweep.yaml": "name: t\ntrial: {}\nresources: {cpu: 1, gpu: 0.5}\n" + GOOD_SPACE},
            ("sweep.yaml", "resources.gpu", "asks for 0.5 GPU", "0 GPU"), needs_no_cuda=True),
    CliCase("sweep-cpu-beyond-num-cpus", ("run", "sweep.yaml", "--num-cpus", "2"),
            {"sweep.yaml": "name: t\ntrial: {}\nresources: {cpu: 8}\n" + GOOD_SPACE},
            ("sweep.yaml", "resources.cpu", "asks for 8 CPU", "2 CPU", "--set resources.cpu=2")),
    CliCase("bundled-sweep-gpu-set-to-0-still-too-many-cpus", ("run", "paper.yaml", "--num-cpus", "2", "--data-path",
                                                              "data", "--set", "resources.gpu=0"),
            {"paper.yaml": "name: p\ntrial: {}\nresources: {cpu: 4, gpu: 1}\n" + GOOD_SPACE},
            ("paper.yaml", "resources.cpu", "asks for 4 CPU", "--set resources.cpu=2")),
    CliCase("custom-path-is-a-folder", trial(), {"cfg.yaml": TINY + "rf: {strategy: custom, custom_path: hists}\n",
                                                 "hists/a.yaml": "{}\n"},
            ("hists", "is a folder", "histogram file"), process=True),
    CliCase("image-size-below-range", trial(), {"cfg.yaml": TINY.replace("image_size: 16", "image_size: 7")},
            ("cfg.yaml", "data.image_size", "allowed: [8, 512]")),
    # ---- materialising corrupted sets
    CliCase("corrupt-unknown-corruption", ("corrupt", "--corruptions", "gaussian_nois", "--out", "cout"), {},
            ("--corruptions", "gaussian_nois", "valid: gaussian_noise")),
    CliCase("corrupt-severity-6", ("corrupt", "--severities", "6", "--out", "cout"), {},
            ("--severities", "1-5", "[6]")),
    CliCase("corrupt-zero-images", ("corrupt", "--max-images", "0", "--corruptions", "gaussian_noise",
                                    "--severities", "1", "--out", "cout"), {},
            ("--max-images", (">= 1", "at least 1", "[1,"))),
    # ---- the tracking store and the analysis commands
    CliCase("tracking-store-missing", ("status", "nosuch"), {}, ("no MLflow store at", "mlflow.db")),
    CliCase("analyze-too-few-resamples", ("analyze", "nosuch", "--n-boot", "5"), {},
            ("--n-boot", "allowed: >= 100")),
    CliCase("run-tracking-server-unreachable", ("run", "sweep.yaml", "--tracking-uri", "http://127.0.0.1:{port}"),
            {"sweep.yaml": "name: t\ninclude: [space.yaml]\ntrial: {}\n", "space.yaml": GOOD_SPACE},
            ("127.0.0.1:{port}", "not reachable", "mlflow server")),
    CliCase("tracking-server-unreachable",
            ("status", "smoke", "--tracking-uri", "http://127.0.0.1:{port}"), {},
            ("127.0.0.1:{port}", ("not reachable", "unreachable", "cannot reach", "could not connect",
                                  "connection refused"))),
]
for _case in CLI_CASES:
    if _case.argv[0] not in ("train", "resume", "corrupt"):  # Ray Tune and MLflow: always in a real process
        _case.process = True
# A fresh interpreter per case costs a torch import (`v1sweep train` imports the trial path before
# it reads the config); config errors therefore run through `cli.main` in this process, the rest
# (runtime failures, the sweep engine, MLflow, one config error end to end) in real processes.
# V1SWEEP_TEST_ALL_SUBPROCESS=1 sends every case through a real process.
_ALL = os.environ.get("V1SWEEP_TEST_ALL_SUBPROCESS") == "1"
PROCESS_CASES = [c for c in CLI_CASES if c.process or _ALL]
IN_PROCESS_CASES = [c for c in CLI_CASES if not (c.process or _ALL)]


def _env(case_dir: Path) -> dict[str, str]:
    """HOME, cache and MLflow store inside the case folder, so whatever a command writes is seen."""
    return {"HOME": str(case_dir / "home"), "V1SWEEP_CACHE": str(case_dir / "cache"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{case_dir / 'mlflow.db'}", "RAY_USAGE_STATS_ENABLED": "0",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
            "MPLCONFIGDIR": str(case_dir.parent / "_matplotlib"), "PYTHONUNBUFFERED": "1"}


def _listing(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _prepare(case: CliCase, case_dir: Path) -> set[str]:
    (case_dir / "home").mkdir(parents=True)
    for name, content in case.files.items():
        path = case_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return _listing(case_dir)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    dir: Path
    before: set[str]
    port: int

    @property
    def created(self) -> set[str]:
        return _listing(self.dir) - self.before - {"home"}


def _argv(case: CliCase, port: int) -> list[str]:
    return [a.replace("{port}", str(port)) for a in case.argv]


@pytest.fixture(scope="module")
def subprocess_outcomes(tmp_path_factory) -> dict[str, Outcome]:
    """The cases that need a real process (`python -m v1sweep.cli ...`), 4 at a time; id -> outcome."""
    root = tmp_path_factory.mktemp("cli_cases")
    port = _free_port()  # nothing listens there: an unreachable tracking server
    base = {k: v for k, v in os.environ.items() if not k.startswith(("V1SWEEP_", "MLFLOW_"))}

    def run(case: CliCase) -> Outcome:
        case_dir = root / case.id
        before = _prepare(case, case_dir)
        proc = subprocess.run([sys.executable, "-m", "v1sweep.cli", *_argv(case, port)], cwd=case_dir,
                              env={**base, **_env(case_dir)}, capture_output=True, text=True, timeout=300)
        return Outcome(proc.returncode, proc.stdout, proc.stderr, case_dir, before, port)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return {case.id: out for case, out in zip(PROCESS_CASES, pool.map(run, PROCESS_CASES))}


def _in_process(case: CliCase, case_dir: Path, monkeypatch, capsys) -> Outcome:
    """`v1sweep.cli.main(argv)` in this process: the same parsing, dispatch and error handling."""
    from v1sweep import cli

    before = _prepare(case, case_dir)
    for key, value in _env(case_dir).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("V1SWEEP_TRACEBACK", raising=False)
    monkeypatch.chdir(case_dir)
    capsys.readouterr()
    try:
        code = cli.main(_argv(case, 0))
        extra = ""
    except SystemExit as exc:  # argparse usage errors, stubs that exit with a message
        code, extra = (exc.code, "") if isinstance(exc.code, int) else (1, f"{exc.code}\n")
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err + extra, case_dir, before, 0)


def _marks(case: CliCase) -> list:
    if case.needs_no_cuda:
        return [pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")]
    return []


def _params(cases: list[CliCase]) -> list:
    return [pytest.param(c, id=c.id, marks=_marks(c)) for c in cases]


def _check(case: CliCase, out: Outcome) -> None:
    err = out.stderr
    shown = f"exit {out.returncode}\nstdout:\n{out.stdout[-2000:]}\nstderr:\n{err[-3000:]}"
    assert "Traceback" not in err, shown
    assert out.returncode == case.code, shown
    assert f"v1sweep {case.argv[0]}: error: " in err, shown
    for fragment in case.expect:
        options = fragment if isinstance(fragment, tuple) else (fragment,)
        options = tuple(o.replace("{port}", str(out.port)) for o in options)
        assert any(o.lower() in err.lower() for o in options), f"missing {options!r} in:\n{shown}"
    assert out.created <= set(case.leaves), f"left behind: {sorted(out.created - set(case.leaves))}"
    assert not any((out.dir / "home").iterdir()), f"wrote into HOME: {sorted(_listing(out.dir / 'home'))}"


@pytest.mark.parametrize("case", _params(PROCESS_CASES))
def test_cli_bad_input_in_a_process(case: CliCase, subprocess_outcomes):
    """Exit code, an `error:` line naming file/key/allowed values, no traceback, nothing left behind."""
    _check(case, subprocess_outcomes[case.id])


@pytest.mark.parametrize("case", _params(IN_PROCESS_CASES))
def test_cli_bad_input(case: CliCase, tmp_path, monkeypatch, capsys):
    """The same checks through `v1sweep.cli.main` (config errors need no fresh interpreter each)."""
    _check(case, _in_process(case, tmp_path / case.id, monkeypatch, capsys))


def test_cli_diverged_trial_records_why_and_keeps_no_checkpoint(subprocess_outcomes):
    """NaN loss: exit 2 with reason 'diverged'; the summary says so; no checkpoint of the broken state."""
    out = subprocess_outcomes["nan-loss"]
    summary = json.loads((out.dir / "out" / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["reason"] == "diverged"
    assert not (out.dir / "out" / "checkpoint.pt").exists()


# =============================================================================================
# Python API cases
# =============================================================================================
def _no_cache_files(cache: Path) -> list[str]:
    """Finished or half-written cache files (lock files are harmless and allowed)."""
    return sorted(p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def _save_png(path: Path, value: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _tree(root: Path, classes=("a", "b"), per_class: int = 2) -> Path:
    for split in ("train", "test"):
        for c in classes:
            for i in range(per_class):
                _save_png(root / split / c / f"{i}.png", 40 * i)
    return root


def _data(path: Path | str, dataset: str = "imagefolder"):
    return cfg.from_dict({"data": {"dataset": dataset, "path": str(path), "image_size": 16, "train_size": None,
                                   "test_size": None}, "frontend": {"enabled": False}}).data


def _load(data_config):
    from v1sweep.data import load_dataset

    return load_dataset(data_config)


def test_api_dataset_path_missing(tmp_path):
    with pytest.raises(DatasetError, match="path does not exist") as info:
        _load(_data(tmp_path / "absent"))
    assert str(tmp_path / "absent") in str(info.value)
    assert not (tmp_path / "absent").exists() and _no_cache_files(tmp_path / "cache") == []


def test_api_dataset_path_is_a_file(tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="expected a folder, got a file") as info:
        _load(_data(tmp_path / "file.png"))
    assert "file.png" in str(info.value)


def test_api_dataset_folder_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="wrong layout") as info:
        _load(_data(tmp_path / "empty"))
    assert "train/<class>" in str(info.value) and "found no sub-folders" in str(info.value)
    assert _no_cache_files(tmp_path / "cache") == []


def test_api_dataset_empty_class_folder(tmp_path):
    root = _tree(tmp_path / "tree")
    (root / "train" / "c").mkdir()
    with pytest.raises(DatasetError, match="empty class folder") as info:
        _load(_data(root))
    assert str(root / "train" / "c") in str(info.value) and ".jpg" in str(info.value)
    assert _no_cache_files(tmp_path / "cache") == []


def test_api_dataset_wrong_layout_lists_what_was_expected(tmp_path):
    _save_png(tmp_path / "flat" / "x.png")
    for dataset, fragment in (("cifar10", "cifar-10-batches-py"), ("tinyimagenet", "wnids.txt"),
                              ("imagefolder", "train/<class>")):
        with pytest.raises(DatasetError, match="wrong layout") as info:
            _load(_data(tmp_path / "flat", dataset))
        assert fragment in str(info.value) and str(tmp_path / "flat") in str(info.value)


def test_api_dataset_test_split_has_unknown_class(tmp_path):
    root = _tree(tmp_path / "tree")
    _save_png(root / "test" / "zebra" / "0.png")
    with pytest.raises(DatasetError, match="class folders not in") as info:
        _load(_data(root))
    assert "zebra" in str(info.value)


def test_api_dataset_unreadable_image_names_the_file_and_caches_nothing(tmp_path):
    root = _tree(tmp_path / "tree")
    (root / "test" / "b" / "broken.jpg").write_bytes(b"this is not a JPEG")
    with pytest.raises(DatasetError, match="cannot read image") as info:
        _load(_data(root))
    assert str(root / "test" / "b" / "broken.jpg") in str(info.value)
    assert _no_cache_files(tmp_path / "cache") == []  # no half-written cache to be picked up later


def test_api_dataset_truncated_cifar_batch_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"\x80\x04truncated")
    with pytest.raises(DatasetError, match="cannot read pickled batch") as info:
        _load(_data(tmp_path, "cifar10"))
    assert "batches.meta" in str(info.value)


def test_api_dataset_tinyimagenet_annotation_names_a_missing_image(tmp_path):
    root = tmp_path / "tiny"
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\nn02\n")
    for wnid in ("n01", "n02"):
        _save_png(root / "train" / wnid / "images" / f"{wnid}_0.JPEG")
    _save_png(root / "val" / "images" / "val_0.JPEG")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn01\t0\t0\t8\t8\nval_1.JPEG\tn02\t0\t0\t8\t8\n")
    with pytest.raises(DatasetError, match="line 2") as info:
        _load(_data(root, "tinyimagenet"))
    assert "val_1.JPEG" in str(info.value) and "not found" in str(info.value)


# ---- RF sampling
def test_api_rf_unknown_strategy_lists_the_valid_ones():
    from v1sweep.rf import list_strategies, sample

    with pytest.raises(ValueError, match="strategy") as info:
        sample("biologcal", 4, 4, seed=0)
    assert "'biologcal'" in str(info.value)
    assert all(name in str(info.value) for name in list_strategies())


def test_api_rf_option_not_accepted_by_the_strategy():
    from v1sweep.rf import sample

    with pytest.raises(ValueError, match="'alpha' not accepted by strategy 'biological'") as info:
        sample("biological", 4, 4, seed=0, alpha=0.5)
    assert "preset" in str(info.value) and "sf_max" in str(info.value)


def test_api_rf_alpha_out_of_range():
    from v1sweep.rf import sample

    with pytest.raises(ValueError, match=r"'alpha' must lie in \[0, 1\], got 1.5"):
        sample("interpolated", 4, 4, seed=0, alpha=1.5)


def test_api_custom_rf_histogram_with_negative_counts(tmp_path):
    from v1sweep.rf import sample

    path = tmp_path / "neg.yaml"
    path.write_text("orientation: {edges: [0, 45, 90, 135, 180], counts: [3, -2, 4, 5]}\n")
    with pytest.raises(ValueError, match="counts must be >= 0") as info:
        sample("custom", 4, 4, seed=0, path=str(path))
    assert "'path'" in str(info.value) and str(path) in str(info.value) and "orientation" in str(info.value)


def test_api_custom_rf_histogram_csv_with_negative_counts(tmp_path):
    from v1sweep.rf import sample

    path = tmp_path / "neg.csv"
    path.write_text("table,lo,hi,ny_lo,ny_hi,value\norientation,0,90,,,4\norientation,90,180,,,-1\n")
    with pytest.raises(ValueError, match="counts must be >= 0") as info:
        sample("custom", 4, 4, seed=0, path=str(path))
    assert str(path) in str(info.value)


# ---- corruptions
def test_api_unknown_corruption_lists_the_valid_names():
    from v1sweep.corruptions import apply, list_corruptions

    with pytest.raises(ValueError, match="unknown corruption 'gaussian_nois'") as info:
        apply(torch.rand(2, 3, 16, 16), "gaussian_nois", 1)
    assert all(name in str(info.value) for name in list_corruptions())


def test_api_corruption_severity_6():
    from v1sweep.corruptions import apply

    with pytest.raises(ValueError, match="severity must be an integer in 1-5, got 6"):
        apply(torch.rand(2, 3, 16, 16), "gaussian_noise", 6)


def test_api_corruption_of_uint8_images_says_how_to_convert():
    from v1sweep.corruptions import apply

    with pytest.raises(ValueError, match=r"images.float\(\) / 255"):
        apply(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "gaussian_noise", 1)


# ---- front-end and models
@pytest.fixture(scope="module")
def small_rf():
    from v1sweep.rf import sample

    return sample("biological", 4, 4, seed=0, sf_max=4.0)


def test_api_vone_block_wrong_input_shape(small_rf):
    from v1sweep.frontend import VOneBlock

    block = VOneBlock(small_rf, image_size=16, visual_degrees=1.0, ksize=7, stride=2, k_exc=25.0)
    with pytest.raises(ValueError, match=r"\(batch, 3, height, width\).*got shape \(2, 1, 16, 16\)"):
        block(torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="built for 16x16 px images.*got 24x24"):
        block(torch.rand(2, 3, 24, 24))


def test_api_vone_block_even_ksize_and_unknown_noise(small_rf):
    from v1sweep.frontend import VOneBlock

    with pytest.raises(ValueError, match="ksize must be a positive odd number of pixels, got 8"):
        VOneBlock(small_rf, image_size=16, visual_degrees=1.0, ksize=8, stride=2, k_exc=25.0)
    with pytest.raises(ValueError, match="unknown noise 'poisson'; valid: none, gaussian, neuronal"):
        VOneBlock(small_rf, image_size=16, visual_degrees=1.0, ksize=7, stride=2, k_exc=25.0, noise="poisson")


def test_api_unknown_backbone_in_build_model():
    import dataclasses

    from v1sweep.trial.models import build_model, list_backbones

    config = cfg.from_dict({"frontend": {"enabled": False}})
    bad = dataclasses.replace(config, model=dataclasses.replace(config.model, backbone="vgg11"))
    with pytest.raises(ConfigError, match="unknown backbone 'vgg11'") as info:
        build_model(bad, None, 10)
    assert info.value.key == "model.backbone" and all(n in str(info.value) for n in list_backbones())


# ---- trial configs given as Python data (what a sweep hands each trial)
def test_api_trial_config_that_is_a_list():
    with pytest.raises(ConfigError, match="expected a mapping of keys, got list"):
        cfg.from_dict([{"train": {"epochs": 1}}])  # type: ignore[arg-type]


def test_api_flat_params_with_conflicting_keys():
    with pytest.raises(ConfigError, match="'rf.seed' conflicts with a value set at 'rf'"):
        cfg.from_flat({"rf": "biological", "rf.seed": 1})


def test_api_flat_params_with_yaml_1_1_exponent_are_numbers(tmp_path):
    """`lr: 1e-3` (no dot) is a string to YAML 1.1; configs read it as the number users mean."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-4\n")
    loaded = cfg.load(path, ["train.momentum=9e-1"])
    assert (loaded.train.lr, loaded.train.weight_decay, loaded.train.momentum) == (1e-3, 5e-4, 0.9)


# ---- training: NaN loss and checkpoints from another config
def test_api_nan_loss_is_diverged_and_never_checkpointed(tmp_path):
    from torch import nn

    from v1sweep.trial.training import fit, load_checkpoint

    class NaNInEpoch2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.calls = nn.Linear(3 * 4 * 4, 2), 0

        def forward(self, x):
            self.calls += 1
            out = self.lin(x.flatten(1))
            return out * float("nan") if self.calls > 2 else out  # 2 batches per epoch

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 4, 4, generator=g), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    train = cfg.from_dict({"train": {"epochs": 3, "device": "cpu", "schedule": "constant"}}).train
    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(TrialFailed) as info:
        fit(NaNInEpoch2(), batches, config=train, checkpoint_path=ckpt, log=None)
    assert info.value.reason == "diverged" and "epoch 2" in str(info.value)
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 1  # the last good epoch; the diverged one is never saved
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def _baseline_tree() -> dict:
    return {"name": "ck", "data": {"dataset": "synthetic", "image_size": 16, "train_size": 40, "test_size": 20},
            "frontend": {"enabled": False}, "model": {"backbone": "tiny", "bottleneck": 8},
            "train": {"epochs": 1, "batch_size": 20, "device": "cpu", "schedule": "constant"},
            "eval": {"corruptions": [], "max_images": 20}}


@pytest.fixture(scope="module")
def finished_trial(tmp_path_factory):
    from v1sweep.trial.run import run_trial

    out = tmp_path_factory.mktemp("finished") / "out"
    config = cfg.from_dict(_baseline_tree())
    run_trial(config, out, log=None)
    return config, out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_api_checkpoint_from_another_config_is_refused(finished_trial, tmp_path):
    from v1sweep.trial.run import run_trial

    config, out = finished_trial
    out = _copy(out, tmp_path / "out")
    changed = cfg.replace(config, **{"train.lr": 0.01, "train.epochs": 2})
    with pytest.raises(ConfigError, match="checkpoint from another config") as info:
        run_trial(changed, out, log=None)
    assert str(out / "checkpoint.pt") in str(info.value)
    assert "delete the checkpoint or use another output folder" in str(info.value)


def test_api_refused_checkpoint_leaves_the_folder_untouched(finished_trial, tmp_path):
    from v1sweep.trial.run import run_trial

    config, out = finished_trial
    out = _copy(out, tmp_path / "out")
    before = _snapshot(out)
    with pytest.raises(ConfigError, match="checkpoint from another config"):
        run_trial(cfg.replace(config, **{"train.lr": 0.01, "train.epochs": 2}), out, log=None)
    after = _snapshot(out)
    assert [k for k in before if before[k] != after.get(k)] == []  # config.yaml still the old run's
    assert set(after) == set(before)


def test_api_checkpoint_that_is_not_a_checkpoint(finished_trial, tmp_path):
    from v1sweep.trial.run import run_trial

    config, out = finished_trial
    out = _copy(out, tmp_path / "out")
    (out / "summary.json").unlink()
    (out / "checkpoint.pt").write_bytes(b"half-written")
    with pytest.raises(ConfigError, match="cannot read checkpoint") as info:
        run_trial(cfg.replace(config, **{"train.epochs": 2}), out, log=None)
    assert "checkpoint.pt" in str(info.value)


def test_api_errors_are_typed_and_catchable_as_value_errors():
    """The CLI maps these to exit code 2; callers may catch them as ValueError too."""
    for cls in (ConfigError, DatasetError):
        assert issubclass(cls, V1SweepError) and issubclass(cls, ValueError)
    assert issubclass(TrialFailed, V1SweepError) and TrialFailed("diverged", "x").reason == "diverged"


# ---------------------------------------------------------------------------------------------
# Issue 12, section 4: inputs the API accepts now, consistently
# ---------------------------------------------------------------------------------------------
def test_api_repeated_grid_values_are_warned_and_counted_once(tmp_path, capsys):
    from v1sweep.sweep.engine import print_dry_run
    from v1sweep.config.sweep_file import load_sweep

    path = tmp_path / "dup.yaml"
    path.write_text("name: dup\ntrial: {}\nspace:\n  train.seed: {grid: [0, 0, 1]}\n  rf.strategy: {grid: [unif1, unif1]}\n")
    spec = load_sweep(path)
    err = capsys.readouterr().err
    assert "dup.yaml: space.train.seed: 1 repeated grid value(s) dropped" in err and "2 distinct" in err
    assert "space.rf.strategy: 1 repeated" in err
    assert spec.space["train.seed"].values == (0, 1) and spec.space["rf.strategy"].values == ("unif1",)
    lines: list[str] = []
    trials = print_dry_run(spec, lines.append)
    assert len(trials) == 2 and "2 trials:" in lines
    assert len({tuple(sorted(t.items())) for t in trials}) == 2  # every trial distinct


def test_api_synthetic_data_at_the_smallest_documented_size():
    """data.image_size allows 8 px; the synthetic dataset makes 8 px images (it refused < 16 before)."""
    from v1sweep.data import load_dataset

    config = cfg.from_dict({"data": {"dataset": "synthetic", "image_size": 8, "train_size": 20, "test_size": 10},
                            "frontend": {"enabled": False}})
    ds = load_dataset(config.data)
    assert tuple(ds.train_images.shape) == (20, 3, 8, 8) and ds.train_images.dtype == torch.uint8
    assert float(ds.train_images.float().std()) > 5  # shapes and noise, not a blank image


def test_api_custom_rf_path_that_is_a_folder(tmp_path):
    from v1sweep.rf import sample

    (tmp_path / "hists").mkdir()
    with pytest.raises(ValueError, match=r"rf option 'path': .*hists' is a folder; rf.custom_path names a histogram"):
        sample("custom", 4, 4, seed=0, path=str(tmp_path / "hists"))


def test_api_trial_function_registration(tmp_path, monkeypatch):
    """Only registered trial functions resolve: the built-in, decorated ones, never os:system."""
    from v1sweep.trial.functions import check_reference, register, resolve

    assert resolve("run_trial").__name__ == "run_trial"
    with pytest.raises(ValueError, match="standard library"):
        check_reference("os:system")
    with pytest.raises(ValueError, match="not a registered trial function"):
        resolve("os:system")  # a worker's check: registration, whatever the module
    pkg = tmp_path / "site" / "mytrials"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from v1sweep.trial.functions import register\n"
                                     "@register\ndef good(config, out_dir, *, on_epoch=None, log=None):\n    return {}\n"
                                     "def plain(config, out_dir, *, on_epoch=None, log=None):\n    return {}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    check_reference("mytrials:good")
    assert getattr(resolve("mytrials:good"), "__v1sweep_trial_function__")
    with pytest.raises(ValueError, match="not a registered trial function: decorate it"):
        resolve("mytrials:plain")
    assert register  # the decorator users import
