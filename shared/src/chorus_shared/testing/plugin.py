"""Pytest fixtures every package's tests share: a scripted fake ChatModel, tiny real models,
quiet progress bars and one torch thread.

A package's ``tests/conftest.py`` takes them by importing them (pytest finds fixtures by the
names a conftest holds)::

    from chorus_shared.testing.plugin import (  # noqa: F401 - fixtures, found by name
        fake_chat_model, no_progress_bars, one_torch_thread, tiny_model_dir,
    )

or for a whole session with ``pytest -p chorus_shared.testing.plugin``. It is not registered
as an auto-loaded plugin: its autouse fixtures should only reach the tests that ask for them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chorus_shared.models import Completion, Message, SamplingParams
from chorus_shared.testing.tiny import build_tiny_chat_model

__all__ = [
    "FakeChatModel",
    "fake_chat_model",
    "no_progress_bars",
    "one_torch_thread",
    "tiny_model_dir",
    "tiny_nosys_dir",
]

Reply = Callable[[list[Message]], "str | Completion"]


class FakeChatModel:
    """A ChatModel test double: answers with ``reply(conversation)`` and records every call.

    ``calls[k]`` is a deep copy of the conversations of the k-th ``chat`` call (callers keep
    appending to their histories afterwards, so a copy is what the model actually saw);
    ``params[k]`` its sampling parameters. ``reply`` may return a string (token counts are
    then its words, and the prompt's) or a full :class:`Completion` (e.g. a backend error).
    """

    def __init__(self, reply: Reply | None = None, spec: str = "fake") -> None:
        self.spec = spec
        self.reply: Reply = reply or (lambda conversation: "The answer is 0.")
        self.calls: list[list[list[Message]]] = []
        self.params: list[SamplingParams] = []

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Returns one completion per conversation, in order; records the call."""
        self.calls.append(copy.deepcopy(conversations))
        self.params.append(params)
        out = []
        for conversation in conversations:
            answer = self.reply(conversation)
            if not isinstance(answer, Completion):
                answer = Completion(
                    text=answer,
                    prompt_tokens=sum(len(m["content"].split()) for m in conversation),
                    completion_tokens=len(answer.split()),
                )
            out.append(answer)
        return out

    @property
    def batch_sizes(self) -> list[int]:
        """Returns the number of conversations in each call, in call order."""
        return [len(c) for c in self.calls]


@pytest.fixture
def fake_chat_model() -> type[FakeChatModel]:
    """Returns the FakeChatModel class (tests build as many instances as they need)."""
    return FakeChatModel


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a folder holding a tiny random chat model (built once per session)."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_nosys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a tiny random chat model whose chat template refuses a system message."""
    return build_tiny_chat_model(
        tmp_path_factory.mktemp("tiny_nosys") / "model", allow_system=False
    )


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turns progress bars off (they would fill the test log)."""
    monkeypatch.setenv("CHORUS_NO_PROGRESS", "1")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Runs each test module with one torch thread, then restores the previous count."""
    # The tiny model's matrices are a few dozen wide: with two threads on a busy 2-core
    # machine every decoding step waits on thread hand-offs (about 20x slower than one thread).
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
