"""`v1sweep run --dry-run`: the sweep's expanded trials and what they will cost, without Ray.

Separate from `v1sweep.sweep.engine` because a dry run starts nothing (no Ray, no MLflow): it reads
the spec, expands it (`v1sweep.config.sweep_file`) and prints the estimates of `v1sweep.sweep.cost`
and of the white-box attacks (docs/adversarial.md).
"""
from __future__ import annotations

from typing import Any, Callable

from v1sweep.config import sweep_file as sweep_spec
from v1sweep.config.sweep_file import SweepSpec


def print_dry_run(spec: SweepSpec, out: Callable[[str], Any] = print, *, calibrate: bool = False,
                  num_cpus: int | None = None) -> list[dict[str, Any]]:
    """Print the sweep and its expanded trials (grid: every point; sampled: the domains), then the
    cost per trial (`v1sweep.sweep.cost`): pass counts, and with `calibrate` a timed extrapolation to
    CPU/GPU-hours and wall time on this machine's slots (`num_cpus`, default all)."""
    trials = sweep_spec.expand(spec)
    out(sweep_spec.describe(spec))
    kind = "trials" if spec.search.algorithm in ("grid", "random") else "trials sampled by " + spec.search.algorithm
    out(f"{len(trials)} {kind}:")
    for i, params in enumerate(trials):
        out(f"  {i:4d}  " + ", ".join(f"{k}={sweep_spec.format_value(v)}" for k, v in params.items()))
    cost = _attack_cost_line(spec, trials)
    if cost:
        out(cost)
    for line in cost_lines(spec, trials, calibrate=calibrate, num_cpus=num_cpus):
        out(line)
    return trials


def cost_lines(spec: SweepSpec, trials: list[dict[str, Any]], *, calibrate: bool = False,
               num_cpus: int | None = None) -> list[str]:
    """The dry run's cost lines (`v1sweep.sweep.cost.describe`); `calibrate` times the first trial's model
    on this machine (torch needed then, Ray never)."""
    from v1sweep.sweep import cost as cost

    configs = cost.configs_of(spec, trials)
    import os

    threads = max(1, min(int(spec.resources.cpu), os.cpu_count() or 1)) if spec.resources.cpu else None
    rates = cost.calibrate(configs[0], threads=threads) if calibrate and configs else None
    gpus = 1 if spec.resources.gpu and rates and str(rates.get("device", "")).startswith("cuda") else 0
    slots = cost.local_slots(spec.resources, num_cpus, gpus)
    return cost.describe(configs, spec.resources, rates=rates, slots=slots)


def _attack_cost_line(spec: SweepSpec, trials: list[dict[str, Any]]) -> str:
    """The white-box attacks' cost per trial (docs/adversarial.md): forward+backward passes per image
    (steps x eot x restarts) x images, for the costliest expanded trial."""
    from v1sweep.config import adversarial as adv
    from v1sweep.config import trial as trial_config

    base = trial_config.to_flat(spec.trial)
    best: tuple[int, Any] | None = None
    for params in trials or [{}]:
        try:
            cfg = trial_config.from_flat({**base, **params})
        except Exception:  # noqa: BLE001 - sampled domains appear as descriptions in a dry run
            cfg = spec.trial
        if cfg.eval.adversarial:
            total = adv.attack_cost(cfg.eval.adversarial, cfg.stochastic, cfg.data.test_size)["backward"]
            if best is None or total > best[0]:
                best = (total, cfg)
    if best is None:
        return ""
    total, cfg = best
    lines = [f"white-box attacks per trial: {total:,} forward+backward image-passes "
             "(steps x eot x restarts per image, x images; plus one forward per restart and image)"]
    for attack in cfg.eval.adversarial:
        a = adv.vars_of(attack)
        back, _ = adv.passes_per_image(a, cfg.stochastic)
        images = adv.resolve_images(attack.images, cfg.data.test_size)
        lines.append(f"    {attack.metric}: {back} passes/image x {images} images = {back * images:,}")
    return "\n".join(lines)
