"""A sweep's search space as Ray Tune domains (the config layer's `Domain`s know nothing of Ray)."""
from __future__ import annotations

from typing import Any

from v1sweep.config import sweep_file
from v1sweep.config.sweep_file import Domain, SweepSpec, split_key


def to_tune(domain: Domain, int_field: bool = False) -> Any:
    """The Ray Tune domain of `domain`; a quniform over an integer field draws integers."""
    from ray import tune

    if domain.kind == "grid":
        return tune.grid_search(list(domain.values))
    if domain.kind == "choice":
        return tune.choice(list(domain.values))
    if domain.kind == "uniform":
        return tune.uniform(*domain.bounds)
    if domain.kind == "loguniform":
        return tune.loguniform(*domain.bounds)
    if domain.kind == "randint":
        return tune.randint(*domain.bounds)
    lo, hi, q = domain.bounds
    if int_field:
        return tune.qrandint(int(lo), int(hi), int(q))
    return tune.quniform(lo, hi, q)


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Ray Tune's `param_space` of the sweep (tied keys stay one entry, typed by their first key)."""
    space = {}
    for key, dom in spec.space.items():
        hint, _ = sweep_file.field_of(split_key(key)[0], space_key=key)
        space[key] = to_tune(dom, int_field=sweep_file.is_int_field(hint))
    return space
