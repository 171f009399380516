"""Fixtures of the alpha-UMi tests: the shared ones (chorus_shared.testing.plugin: fake_chat_model,
tiny_model_dir, no progress bars, one torch thread) and the path of the test fixtures."""

from __future__ import annotations

from pathlib import Path

from chorus_shared.testing.plugin import (  # noqa: F401 - pytest finds fixtures by name
    fake_chat_model,
    no_progress_bars,
    one_torch_thread,
    tiny_model_dir,
)

FIXTURES = Path(__file__).parent / "fixtures"
