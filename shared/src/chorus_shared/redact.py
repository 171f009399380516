"""Credential scrubbing for anything a run writes, prints, logs or hands to another process.

- :func:`redact_urls` / :func:`redact_value`: drop the ``user:password@`` part of every URL
  in a string / a JSON-like value (config.json, records, reports, error lines).
- :func:`install_log_redaction`: every log record of the process is scrubbed (httpx, openai,
  transformers and our own loggers alike), whatever handler prints it.
- :func:`redact_argv` and :func:`redacted_process_argv`: what a tracker such as wandb stores
  as "the command line" (it reads ``sys.argv``) holds no credential.
- :func:`hide_secret_args` / :func:`reveal_secret_args`: a child process gets a URL with a
  password through its environment, never through its argv (visible to every user in ``ps``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

__all__ = [
    "SECRET_ARG_PREFIX",
    "has_credentials",
    "hide_secret_args",
    "install_log_redaction",
    "redact_argv",
    "redact_urls",
    "redact_value",
    "redacted_process_argv",
    "reveal_secret_args",
]

# ``scheme://user:password@host`` (or ``scheme://token@host``): everything between ``//`` and
# the LAST ``@`` before the path, query, fragment or a space is the credential. A password may
# itself hold an unescaped ``@`` (``http://alice:p@ss@host/v1``): the match is greedy so it
# takes it whole, as urllib does (it splits the netloc at its last ``@``).
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#]*@")


def redact_urls(text: str) -> str:
    """Returns ``text`` with the ``user:password@`` part of every URL in it removed."""
    return _USERINFO.sub(r"\g<scheme>", text)


def has_credentials(text: str) -> bool:
    """Returns True when ``text`` holds a URL with a ``user:password@`` part."""
    return _USERINFO.search(text) is not None


def redact_value(value: Any) -> Any:
    """Returns a copy of a JSON-like value with :func:`redact_urls` applied to every string."""
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, dict):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_argv(argv: Sequence[str]) -> list[str]:
    """Returns a copy of a command line with every URL credential removed."""
    return [redact_urls(arg) for arg in argv]


@contextlib.contextmanager
def redacted_process_argv() -> Iterator[None]:
    """Within the block ``sys.argv`` holds no URL credential; restored afterwards.

    Trackers read ``sys.argv`` when a run starts (wandb stores it in its metadata file):
    wrap ``wandb.init`` (or a Trainer whose callback calls it) in this block, and pass the
    config through :func:`redact_value`.
    """
    saved = list(sys.argv)
    sys.argv[:] = redact_argv(saved)
    try:
        yield
    finally:
        sys.argv[:] = saved


# -- child processes ----------------------------------------------------------------------

SECRET_ARG_PREFIX = "CHORUS_SECRET_ARG_"
_PLACEHOLDER = re.compile(r"^\$\{(" + SECRET_ARG_PREFIX + r"\d+)\}$")


def hide_secret_args(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Returns ``(argv, env)``: every argument holding a URL credential is replaced by a
    placeholder ``${CHORUS_SECRET_ARG_<k>}`` and its value moved into ``env``.

    Start the child with ``env={**os.environ, **env}``; it calls :func:`reveal_secret_args`
    on its own argv to get the values back. ``ps`` then shows the placeholders only.
    """
    shown: list[str] = []
    env: dict[str, str] = {}
    for arg in argv:
        if has_credentials(arg):
            name = f"{SECRET_ARG_PREFIX}{len(env)}"
            env[name] = arg
            shown.append("${" + name + "}")
        else:
            shown.append(arg)
    return shown, env


def reveal_secret_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """Returns ``argv`` with every ``${CHORUS_SECRET_ARG_<k>}`` placeholder replaced by its
    value from ``environ`` (default: ``os.environ``); raises ``ValueError`` naming a missing
    one (the parent did not pass the env :func:`hide_secret_args` returned)."""
    environ = os.environ if environ is None else environ
    out = []
    for arg in argv:
        match = _PLACEHOLDER.match(arg)
        if match is None:
            out.append(arg)
            continue
        if match.group(1) not in environ:
            raise ValueError(
                f"argument {arg} names ${match.group(1)}, which is not set: start this "
                "process with the environment hide_secret_args returned"
            )
        out.append(environ[match.group(1)])
    return out


# -- logs ---------------------------------------------------------------------------------

_installed = False


def install_log_redaction() -> None:
    """Scrub URL credentials from every log record this process creates; returns None.

    Works at record creation (``logging.setLogRecordFactory``), so it covers every logger and
    every handler, including ones configured later; calling it again does nothing.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed format: leave it for logging's own error report
            return record
        if has_credentials(message):
            record.msg, record.args = redact_urls(message), None
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
