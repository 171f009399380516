"""Credential scrubbing for anything a run writes or prints."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["redact_urls", "redact_value"]

# ``scheme://user:password@host`` (or ``scheme://token@host``): the part between ``//`` and
# the last ``@`` before the host is a credential, whatever URL it sits in.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s?#]+@")


def redact_urls(text: str) -> str:
    """Returns ``text`` with the ``user:password@`` part of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def redact_value(value: Any) -> Any:
    """Returns a copy of a JSON-like value with :func:`redact_urls` applied to every string."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value
