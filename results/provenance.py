"""Print PROVENANCE.md for a finished sweep: git commit, machine, versions and wall time.

Called by results/make_cifar10_cpu.sh (`report`); reads the sweep's parent runs from MLflow (the
source of truth: their start and end times survive `v1sweep resume`), so nothing is typed by hand.

    python results/provenance.py SWEEP_NAME [--tracking-uri URI]
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sh(*cmd: str) -> str:
    """A command's stdout, stripped; '(unavailable: ...)' when it cannot run (no git, no lscpu)."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout.strip("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"(unavailable: {exc})"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def utc(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def parents_table(sweep: str, uri: str | None) -> tuple[list[str], float]:
    """One Markdown row per parent run of `sweep` (start, end, status, trial counts), total hours."""
    from v1sweep.results.query import parent_runs, resolve_sweep

    rows, total = [], 0.0
    for run in parent_runs(resolve_sweep(sweep, tracking_uri=uri)):
        i, tags = run.info, run.data.tags
        hours = ((i.end_time or i.start_time) - i.start_time) / 3.6e6
        total += hours
        counts = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in sorted(tags.items()) if k.startswith("v1sweep.trials."))
        rows.append(f"| {i.run_id[:8]} | {tags.get('v1sweep.spec_hash', '-')} | {utc(i.start_time)} | {utc(i.end_time)} "
                    f"| {hours:.2f} | {i.status} | {counts or '-'} | {tags.get('v1sweep.git_commit', '-')} |")
    return rows, total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep")
    p.add_argument("--tracking-uri", default=None)
    args = p.parse_args()
    rows, hours = parents_table(args.sweep, args.tracking_uri)
    import torch

    dirty = sh("git", "status", "--porcelain", "--untracked-files=no")
    print(f"# Provenance of {args.sweep}\n")
    print(f"- git commit (report): `{sh('git', 'rev-parse', 'HEAD')}`" + (" (working tree had local changes)" if dirty else ""))
    print(f"- machine: {sh('nproc')} CPUs (`nproc`), {cpu_model()}, {platform.platform()}")
    print(f"- python {platform.python_version()}, torch {torch.__version__}; every package: versions.txt (`pip freeze`)")
    print(f"- wall time of the sweep runs (MLflow parent runs, start to end): {hours:.2f} h\n")
    print("| parent | spec hash | start | end | hours | status | trials | git commit (run) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n`free -h`:\n\n```\n" + sh("free", "-h") + "\n```")
    print("\nCommands (with their UTC start/end): commands.txt. Produced by `results/make_cifar10_cpu.sh report`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
