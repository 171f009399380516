"""Fixtures: a scripted ChatModel, a tiny random chat model, one torch thread."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from chorus_shared.models import Completion, Message, SamplingParams
from chorus_shared.testing.plugin import (  # noqa: F401 - pytest finds fixtures by name
    no_progress_bars,
    one_torch_thread,
    tiny_model_dir,
)


class ScriptedChat:
    """A ChatModel double: ``reply(conversation) -> str | Completion``; records every call."""

    def __init__(self, reply: Callable[[list[Message]], str | Completion], spec: str = "fake"):
        self.spec = spec
        self.reply = reply
        self.calls: list[list[list[Message]]] = []

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        self.calls.append(copy.deepcopy(conversations))
        out = []
        for conv in conversations:
            r = self.reply(conv)
            out.append(
                r
                if isinstance(r, Completion)
                else Completion(text=r, completion_tokens=len(r.split()))
            )
        return out


@pytest.fixture
def scripted() -> type[ScriptedChat]:
    return ScriptedChat
