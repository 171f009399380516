"""Fixtures of the debate tests: tiny real chat models, and a scripted fake ChatModel."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chorus_shared.models import Completion, Message, SamplingParams
from chorus_shared.testing import build_tiny_chat_model

Reply = Callable[[list[Message]], "str | Completion"]


class FakeChatModel:
    """A ChatModel test double: answers with ``reply(conversation)`` and records every call.

    ``calls[k]`` is a deep copy of the conversations of the k-th ``chat`` call (the engine keeps
    appending to its histories afterwards, so a copy is what the model actually saw);
    ``params[k]`` its sampling parameters. ``reply`` may return a string or a full Completion
    (e.g. a backend error).
    """

    def __init__(self, reply: Reply | None = None, spec: str = "fake") -> None:
        self.spec = spec
        self.reply: Reply = reply or (lambda conversation: "The answer is 0.")
        self.calls: list[list[list[Message]]] = []
        self.params: list[SamplingParams] = []

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
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
        """Number of conversations in each call, in call order."""
        return [len(c) for c in self.calls]


@pytest.fixture
def fake_chat_model() -> type[FakeChatModel]:
    """The FakeChatModel class (tests build as many instances as they need)."""
    return FakeChatModel


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_nosys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(
        tmp_path_factory.mktemp("tiny_nosys") / "model", allow_system=False
    )


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_NO_PROGRESS", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # The tiny model's matrices are a few dozen wide: with two threads on a busy 2-core
    # machine every decoding step waits on thread hand-offs (about 20x slower than one thread).
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency of chorus-shared[hf]
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
