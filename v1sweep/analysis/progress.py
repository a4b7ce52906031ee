"""Stage progress for `v1sweep analyze`: a tqdm bar on a terminal, plain lines otherwise.

The analysis of a sweep takes from seconds to minutes (the model analyses load and probe every
trained network); without this the terminal is silent. A `Progress` advances one step per stage
and can print notes between steps without breaking the bar.
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any


class Progress:
    """``with Progress(stages) as p: p.stage("figures"); ...; p.note("...")``."""

    def __init__(self, total: int, *, desc: str = "analyze", stream: IO[str] | None = None,
                 enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._t0 = time.perf_counter()
        self._bar: Any = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, file=self.stream, leave=False,
                             bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed}")

    def stage(self, name: str) -> None:
        """Mark the start of stage `name` (the previous one is counted done)."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self.done:
                self._bar.update(1)
            self._bar.set_description(f"{self.desc}: {name}")
        else:
            print(f"{self.desc} [{self.done + 1}/{self.total}] {name} "
                  f"(+{time.perf_counter() - self._t0:.0f} s)", file=self.stream, flush=True)
        self.done += 1

    def note(self, message: str) -> None:
        """A line between stages (e.g. one per model loaded)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(f"  {message}", file=self.stream)
        else:
            print(f"  {message}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self.total - self._bar.n)
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
