"""The dotted key of a `ConfigError` raised by nested validation, and re-raising it under the sweep's key.

A sweep file validates things that have their own validators (the base trial config, a domain's
values against the trial field, a scheduler's own check); their errors name *their* key. These two
helpers recover that key (also when it only survives in the message text) so the sweep loader can
re-raise the error under the sweep file's key (``trial.train.lr``, ``space.frontend.k_exc``). They
are shared by the domain parser and the sweep loader, hence a module of their own.
"""
from __future__ import annotations

import re
import typing

from v1sweep.errors import ConfigError

_KEYED = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+(?:\[\d+\])?): (.*)$", re.S)


def _split_error(exc: ConfigError) -> tuple[str | None, str]:
    """(dotted key, message) of a ConfigError, also when the key only survives in the text."""
    where = (f"{exc.file}: " if exc.file else "") + (f"{exc.key}: " if exc.key else "")
    text = str(exc)
    body = text[len(where):] if text.startswith(where) else text
    key = exc.key
    if key is None:
        m = _KEYED.match(body)
        if m:
            key, body = m.group(1), m.group(2)
    return key, body


def _reraise(exc: ConfigError, *, file: str | None, prefix: str, hint: str = "") -> typing.NoReturn:
    key, body = _split_error(exc)
    full = f"{prefix}{key}" if key else prefix.rstrip(".")
    raise ConfigError(body + hint, file=exc.file or file, key=full) from None
