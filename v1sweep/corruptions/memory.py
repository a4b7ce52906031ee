"""Keep freed memory in the process while corrupted sets are generated (glibc only).

The batched corruptions create many short-lived tensors of a few MB. glibc's malloc returns such
blocks to the operating system when they are freed (mmap'ed blocks, and the heap top above its
trim threshold), so every new tensor page-faults its memory in again: on the development VM that
cost ~3 us per 4 KiB page, several times the arithmetic (8 live 3-MB temporaries: 4-19 ms vs
0.9 ms). `keep_freed_memory()` raises glibc's mmap threshold to its maximum (32 MiB) and its trim
threshold to 1 GiB, so freed blocks are reused; the process keeps up to its peak heap. It is
process-wide and idempotent, called by `materialize` and the benchmark; `V1SWEEP_MALLOC_TUNE=0`
turns it off. Elsewhere than glibc it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_done: list[bool] = []


def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process (see the module doc); True when it was applied."""
    if _done:
        return _done[0]
    ok = False
    if os.environ.get("V1SWEEP_MALLOC_TUNE", "1").strip() not in ("0", "false", "no"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
            ok = bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
            ok = False
    _done.append(ok)
    return ok
