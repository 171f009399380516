"""Fixtures of the debate tests: the shared ones from chorus_shared.testing.plugin.

``fake_chat_model`` (a scripted ChatModel that records its calls), ``tiny_model_dir`` and
``tiny_nosys_dir`` (tiny real chat models), and the autouse ``no_progress_bars`` and
``one_torch_thread``.
"""

from __future__ import annotations

from chorus_shared.testing.plugin import (  # noqa: F401 - pytest finds fixtures by name
    fake_chat_model,
    no_progress_bars,
    one_torch_thread,
    tiny_model_dir,
    tiny_nosys_dir,
)
