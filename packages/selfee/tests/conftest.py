"""Fixtures: a scripted ChatModel, a tiny random chat model, one torch thread."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chorus_shared.models import Completion, Message, SamplingParams
from chorus_shared.testing import build_tiny_chat_model


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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_NO_PROGRESS", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
