"""Fixtures of the shared tests: the tiny real chat models from chorus_shared.testing.plugin."""

from __future__ import annotations

from chorus_shared.testing.plugin import (  # noqa: F401 - pytest finds fixtures by name
    tiny_model_dir,
    tiny_nosys_dir,
)
