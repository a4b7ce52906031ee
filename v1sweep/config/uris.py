"""Credential masking for tracking URIs: config refuses URIs with secrets, every layer prints masked ones.

Owned by the config layer because a sweep file is validated against it (a sweep file is logged to
MLflow and copied into the sweep folder, so it must not carry credentials); `v1sweep.results.store`
re-exports it for the layers that print URIs.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
_SECRET_PARAM = re.compile(r"token|secret|passw|pwd|key|auth|sig|credential|session", re.I)


def mask_uri(uri: str | None) -> str:
    """`uri` with credentials hidden: ``user:pass@`` -> ``***@``, secret query values -> ``***``.

    Everything else is kept byte for byte (sqlite paths, hosts, ports).
    """
    if uri is None:
        return ""
    text = str(uri)
    # userinfo: between "scheme://" and the last "@" before the path.
    text = re.sub(r"^([A-Za-z][\w+.-]*://)([^/?#]*)@", lambda m: f"{m.group(1)}{MASK}@", text)
    head, sep, rest = text.partition("?")
    if not sep:
        return text
    query, hsep, fragment = rest.partition("#")
    pairs = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if eq and _SECRET_PARAM.search(unquote(key)):
            value = MASK
        pairs.append(f"{key}{eq}{value}")
    return f"{head}?{'&'.join(pairs)}{hsep}{fragment}"
