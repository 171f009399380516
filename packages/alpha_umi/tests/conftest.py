"""Fixtures of the alpha-UMi tests: scripted fake ChatModels and tiny real chat models."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chorus_shared.models import Completion, Message, SamplingParams
from chorus_shared.testing import build_tiny_chat_model

FIXTURES = Path(__file__).parent / "fixtures"


class FakeChatModel:
    """Answers with ``reply(conversation)`` and records a deep copy of every ``chat`` call."""

    def __init__(self, reply: Callable[[list[Message]], str]) -> None:
        self.reply = reply
        self.calls: list[list[list[Message]]] = []

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        self.calls.append(copy.deepcopy(conversations))
        return [
            Completion(text=self.reply(c), prompt_tokens=1, completion_tokens=1)
            for c in conversations
        ]


@pytest.fixture
def fake_chat_model() -> type[FakeChatModel]:
    return FakeChatModel


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
