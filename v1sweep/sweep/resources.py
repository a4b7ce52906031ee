"""Per-trial resource requests against what the cluster has, checked before anything is created.

Ray Tune waits forever for a request no node can meet (``resources.gpu: 1`` on a machine without a
GPU, ``cpu: 8`` on a 2-CPU Ray), printing a warning every ~35 s. `check_requests` refuses such a
sweep with one line naming the key, the request and what the cluster has, and how to fit it:

- a fresh local Ray (no ``--address``): before Ray or MLflow start, from ``--num-cpus`` (default:
  all CPUs) and the GPUs Ray would detect (`local_resources`);
- a cluster (``--address``): right after connecting, before the sweep folder and the parent run, from
  the largest single node (a trial runs on one node). An autoscaling cluster is judged by the
  nodes it has when the sweep starts (a known gap: docs/troubleshooting.md).
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

from v1sweep.errors import ConfigError


def local_resources(num_cpus: int | None) -> dict[str, float]:
    """What `ray.init(address="local", num_cpus=num_cpus)` will offer, without starting Ray."""
    gpus = 0.0
    try:
        from ray._private.accelerators import get_accelerator_manager_for_resource

        manager = get_accelerator_manager_for_resource("GPU")
        gpus = float(manager.get_current_node_num_accelerators() or 0) if manager is not None else 0.0
    except Exception:  # noqa: BLE001 - another Ray version: fall back to torch's view
        try:
            import torch

            gpus = float(torch.cuda.device_count())
        except Exception:  # noqa: BLE001
            gpus = 0.0
    return {"CPU": float(num_cpus or os.cpu_count() or 1), "GPU": gpus}


def cluster_node_resources() -> list[dict[str, float]]:
    """Total resources of each alive node of the connected Ray cluster."""
    import ray

    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def check_requests(request: Mapping[str, float], nodes: Sequence[Mapping[str, float]], *, where: str,
                   file: str | None = None) -> None:
    """ConfigError unless one node can hold one trial's `request` ({"cpu": c, "gpu": g})."""
    if not nodes:
        return
    for key, ray_key in (("gpu", "GPU"), ("cpu", "CPU")):
        want = float(request.get(key) or 0)
        if want <= 0:
            continue
        best = max(float(n.get(ray_key, 0)) for n in nodes)
        if want <= best + 1e-9:
            continue
        total = sum(float(n.get(ray_key, 0)) for n in nodes)
        has = f"{best:g} {ray_key}" + (f" on its largest node, {total:g} in all" if len(nodes) > 1 else "")
        cpus = max(float(n.get("CPU", 0)) for n in nodes)
        fix = _fix(key, float(request.get("cpu") or 0), cpus)
        raise ConfigError(f"each trial asks for {want:g} {ray_key}, but {where} has {has}, so no trial could "
                          f"ever start; {fix}", file=file, key=f"resources.{key}")


def _fix(key: str, want_cpu: float, cpus: float) -> str:
    fit_cpu = f"{min(want_cpu, cpus):g}" if cpus >= 1 else "1"
    if key == "gpu":
        cpu = f" --set resources.cpu={fit_cpu}" if want_cpu > cpus else ""
        return f"run on a machine or cluster with GPUs, or on CPUs with --set resources.gpu=0{cpu}"
    return f"ask for fewer with --set resources.cpu={fit_cpu} (or give the local Ray more with --num-cpus)"


def check_local(spec: object, num_cpus: int | None) -> None:
    """A fresh local Ray (no --address): check before Ray or MLflow start."""
    import ray

    if ray.is_initialized():  # a Ray this process started: `check_connected` judges it
        return
    res = local_resources(num_cpus)
    where = f"the local Ray ({res['CPU']:g} CPU{'' if num_cpus else ' (all of this machine)'}, {res['GPU']:g} GPU)"
    check_requests(_request(spec), [res], where=where, file=getattr(spec, "file", None))


def check_connected(spec: object, address: str | None) -> None:
    """Ray is up (a cluster, or a Ray this process started): check against its alive nodes."""
    nodes = cluster_node_resources()
    where = f"the Ray cluster at {address}" if address else "this process's Ray"
    where += f" ({len(nodes)} node(s))"
    check_requests(_request(spec), nodes, where=where, file=getattr(spec, "file", None))


def _request(spec: object) -> dict[str, float]:
    res = getattr(spec, "resources")
    return {"cpu": float(res.cpu), "gpu": float(res.gpu)}
