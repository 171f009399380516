"""The one chat-generation interface every backend implements, batched by design."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypedDict, runtime_checkable


class Message(TypedDict):
    """An OpenAI-style chat message."""

    role: str  # "system" | "user" | "assistant"
    content: str


FinishReason = Literal["stop", "length", "error"]


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # 1.0 = off; > 1 discourages repeating tokens already in the prompt or the reply (the
    # CTRL-style penalty of transformers and vLLM; sent to OpenAI-compatible servers as the
    # vLLM extension field of the same name).
    repetition_penalty: float = 1.0
    # 0.0 = off; otherwise drop every token whose probability is below min_p times the most
    # likely token's (min-p sampling, Nguyen et al. 2024). It trims the long tail that lets a
    # small model drift into noise at temperature 1.0 without making it greedy. transformers and
    # vLLM implement it; OpenAI-compatible servers get vLLM's extension field.
    min_p: float = 0.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not 0 <= self.min_p < 1:
            raise ValueError(f"min_p must be in [0, 1) (0 = off), got {self.min_p}")
        # Accept a list from YAML/CLI but keep the dataclass hashable.
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic (temperature 0)."""
        return self.temperature == 0.0

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict of the parameters."""
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass
class Completion:
    """One generated reply.

    ``finish_reason`` is "stop" (end of sequence or a stop string), "length" (token budget hit)
    or "error" (a per-item backend failure, with ``error`` set and ``text`` empty). Callers count
    errors; they never grade an errored completion as right.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: FinishReason = "stop"
    error: str | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict of the completion."""
        return asdict(self)


@runtime_checkable
class ChatModel(Protocol):
    """A batched chat model: one call takes many conversations and returns one completion each."""

    spec: str

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in the same order."""
        ...


@runtime_checkable
class TextModel(Protocol):
    """A batched plain LM: raw text prompts in, continuations out (no chat template).

    Every backend (hf, vllm, openai's ``/v1/completions``) implements it beside ``chat``; the
    papers whose models are plain LMs (SelFee's, TriPosT's) prompt them this way.
    """

    spec: str

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Return one continuation per prompt, in the same order."""
        ...


class ModelSpecError(ValueError):
    """A model spec string could not be resolved to a backend."""


def looks_like_path(source: str) -> bool:
    """Returns True when ``source`` can only be a local folder, never a hub id."""
    # A hub id is "name" or "org/name"; a leading / . ~, a backslash path on Windows, or
    # more than one slash can only be a folder.
    return (
        source.startswith(("/", ".", "~"))
        or (os.sep != "/" and os.sep in source)
        or source.count("/") > 1
    )


def model_load_error(
    source: str,
    exc: BaseException,
    *,
    what: str = "model",
    instead: str = "--model default (the embedded model)",
) -> ModelSpecError:
    """Returns the :class:`ModelSpecError` for a model that ``from_pretrained`` could not load.

    The message names ``source`` (as ``what``: "model", "ranker backbone", ...), says whether
    it was read as a local folder (and whether that folder exists) or as a hub id, and what to
    pass instead (``instead``: the offline choice).
    """
    folder = Path(source).expanduser()
    if not folder.exists() and looks_like_path(source):
        return ModelSpecError(
            f"could not load {what} {source!r}: the local folder {str(folder)!r} does not "
            "exist. Give an existing model folder (one holding config.json), a hub id "
            f"(org/name), or {instead}."
        )
    where = "local folder" if folder.exists() else "hub id"
    return ModelSpecError(
        f"could not load {what} {source!r} ({where}): {exc}. Give an existing local folder "
        "or a hub id reachable from this machine (set HF_TOKEN for gated models); "
        f"offline, use {instead}."
    )


class ChatTemplateError(ValueError):
    """A conversation cannot be rendered with the model's chat template."""


def validate_conversations(conversations: list[list[Message]]) -> None:
    """Raise ValueError naming the first malformed conversation; return None when all are valid."""
    if not isinstance(conversations, list):
        raise ValueError("conversations must be a list of message lists")
    for i, conv in enumerate(conversations):
        if not conv:
            raise ValueError(f"conversation {i} is empty: give at least one user message")
        for j, m in enumerate(conv):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(
                    f"conversation {i} message {j} must be a dict with 'role' and 'content', "
                    f"got {m!r}"
                )
            if m["role"] not in ("system", "user", "assistant"):
                raise ValueError(
                    f"conversation {i} message {j} has role {m['role']!r}; "
                    "use 'system', 'user' or 'assistant'"
                )
