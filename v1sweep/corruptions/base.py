"""The registry every corruption module fills: name -> fn(x, param, rng) -> corrupted x, with its facts.

`x` is a float32 (B, 3, H, W) batch in [0, 1], `param` the published parameter of the requested
severity (`params.get_params`), `rng` a `CounterRNG` keyed by (seed, name, severity, image index).
Results may leave [0, 1]; `suite.apply` clips them.

Each corruption is registered once, in its family file, with all its facts as metadata (`register`
documents them), so the catalogue (`catalog.py`), the parameter tables (`params.py`), the suite, the
per-image reference and the contract tests (`v1sweep.testing.corruptions`) all read one place.
This module stays free of torch and numpy: the config layer validates names through `catalog`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from v1sweep.registry import Registry

if TYPE_CHECKING:
    from torch import Tensor

    from v1sweep.corruptions.rng import CounterRNG

CorruptionFn = Callable[["Tensor", Any, "CounterRNG"], "Tensor"]

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
# the published parameter tables and the image size each was written for
TABLE_SIZES: dict[str, int] = {"cifar10": 32, "tinyimagenet": 64}
# the module of the built-in per-image reference formulations (`reference=f"{REF}:<function>"`)
REF = "v1sweep.corruptions.reference"
METADATA: tuple[str, ...] = ("category", "benchmark", "order", "params", "decode", "deterministic",
                             "monotone", "reference")

REGISTRY: Registry[CorruptionFn] = Registry("corruption", required=METADATA)


def validate_meta(name: str, meta: Mapping[str, Any]) -> None:
    """ValueError naming the first wrong fact of corruption `name` (shapes and types, not values)."""
    missing = [key for key in METADATA if key not in meta]
    if missing:
        raise ValueError(f"corruption {name!r}: metadata {', '.join(missing)} missing")
    if not isinstance(meta["category"], str) or not meta["category"]:
        raise ValueError(f"corruption {name!r}: category must be a non-empty string")
    for key in ("benchmark", "deterministic", "monotone"):
        if not isinstance(meta[key], bool):
            raise ValueError(f"corruption {name!r}: {key} must be True or False, got {meta[key]!r}")
    if meta["order"] is not None and (isinstance(meta["order"], bool) or not isinstance(meta["order"], int)):
        raise ValueError(f"corruption {name!r}: order must be an int (position in the published lists) or None")
    tables = meta["params"]
    if not isinstance(tables, Mapping) or set(tables) != set(TABLE_SIZES):
        raise ValueError(f"corruption {name!r}: params must map each table {', '.join(TABLE_SIZES)} "
                         f"to one parameter per severity")
    for table, values in tables.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != len(SEVERITIES):
            raise ValueError(f"corruption {name!r}: params[{table!r}] must hold {len(SEVERITIES)} values "
                             f"(severities {SEVERITIES[0]}-{SEVERITIES[-1]})")
    for key in ("decode", "reference"):
        value = meta[key]
        if key == "reference" and isinstance(value, str):
            if value.count(":") != 1:
                raise ValueError(f"corruption {name!r}: reference must be 'module:function', a callable or None")
        elif value is not None and not callable(value):
            raise ValueError(f"corruption {name!r}: {key} must be callable or None, got {value!r}")


def register(name: str, *, category: str, benchmark: bool, params: Mapping[str, Sequence[Any]],
             deterministic: bool, monotone: bool = False, order: int | None = None,
             decode: Callable[[Any], Any] | None = None,
             reference: str | Callable[..., Any] | None = None) -> Callable[[CorruptionFn], CorruptionFn]:
    """Register `fn(x, param, rng)` as corruption `name` with its facts (checked now, on import):

    - `category`: noise, blur, weather or digital (the robustness tables average by it);
    - `benchmark`: True for the 15 published benchmark corruptions, False for extras;
    - `order`: position in the published lists (`catalog.CORRUPTIONS` is sorted by it; tables,
      figures and MLflow metric order follow it); None for a plugin outside the published set;
    - `params`: {table: [param of severity 1, ..., 5]} for every table of `TABLE_SIZES`;
    - `decode`: optional fn(table value) -> param handed to the corruption (e.g. zoom factors built
      from their published end value without importing numpy here);
    - `deterministic`: True when the output does not depend on the seed;
    - `monotone`: True when its images get further from the clean ones with every severity (PSNR
      falls; checked by the tests);
    - `reference`: the per-image numpy formulation, as 'module:function' or a callable, or None.
    """
    meta = dict(category=category, benchmark=benchmark, order=order, params=params, decode=decode,
                deterministic=deterministic, monotone=monotone, reference=reference)
    validate_meta(name, meta)
    return REGISTRY.register(name, **meta)
