"""The debate record: one line of ``records.jsonl``, shared by the writer and every reader.

The engine (debate.py) builds a :class:`DebateRecord` per item and stores it with
:meth:`DebateRecord.to_json`; evaluate.py and compare.py read lines back with
:meth:`DebateRecord.from_json`, which checks every field and type once, so scoring code never
meets a missing key or a wrong type.

A record holds only what was generated: every agent's chat history (the replies are the
truth), why each reply stopped, token usage, the summaries, and for judged tasks the judge's
verdict per fact. Nothing graded is stored: answers are parsed and scored by evaluate.py
from the replies each time, so a grading fix applies to old runs and there is one source of
truth. Lines written by older versions (which also stored ``answers``, ``final``,
``correct``, ``score``, ...) read fine: those fields are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chorus_shared.models import Message

__all__ = ["AgentLog", "DebateRecord", "JudgeLog", "RecordFormatError", "Target", "Usage"]

# What a task's item holds as its answer: a number or letter, or (biographies) the facts.
Target = str | int | float | list[str]


class RecordFormatError(ValueError):
    """A record line does not have the fields and types of a :class:`DebateRecord`."""


@dataclass(frozen=True)
class AgentLog:
    """One agent: its model spec and its whole chat history (system, user and assistant turns)."""

    model: str
    messages: list[Message]


@dataclass(frozen=True)
class JudgeLog:
    """The judge of a judged task: its model and ``verdicts[agent][fact]``.

    A verdict is "yes", "no", "uncertain" or None (the judge's reply said none of them).
    Agents whose last reply declined have no row; an agent with an empty reply has "no" for
    every fact (it was not asked).
    """

    model: str
    verdicts: list[list[str | None]]


@dataclass(frozen=True)
class Usage:
    """Tokens of every reply of the item (agents and summaries), summed."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class DebateRecord:
    """One item of a run, as generated. ``error`` set = an errored item (retried on resume)."""

    id: str | int
    task: str
    method: str
    question: str  # the item's question (for biographies: the person)
    target: Target
    agents: list[AgentLog]
    finish_reasons: list[list[str]]  # [round][agent]: "stop", "length" or "error"
    usage: Usage
    errors: int = 0  # replies that failed (their text is empty)
    summaries: list[list[str]] | None = None  # [round][agent], with --summarize
    judge: JudgeLog | None = None
    error: str | None = None

    # -- views used by readers ---------------------------------------------------------------

    def replies_by_round(self) -> list[list[str]]:
        """Returns reply texts as ``[round][agent]``, read from each agent's history."""
        per_agent = [
            [m["content"] for m in agent.messages if m["role"] == "assistant"]
            for agent in self.agents
        ]
        return [list(texts) for texts in zip(*per_agent, strict=True)]

    def last_replies(self) -> list[str]:
        """Returns each agent's last reply text."""
        return self.replies_by_round()[-1]

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        data: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "method": self.method,
            "question": self.question,
            "target": self.target,
            "agents": [{"model": a.model, "messages": a.messages} for a in self.agents],
            "finish_reasons": self.finish_reasons,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "errors": self.errors,
        }
        if self.summaries is not None:
            data["summaries"] = self.summaries
        if self.judge is not None:
            data["judge"] = {"model": self.judge.model, "verdicts": self.judge.verdicts}
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DebateRecord:
        """Returns the record stored in ``data`` (one parsed line).

        Raises :class:`RecordFormatError` naming the first field that is missing or of the
        wrong type, or when the agents' histories do not line up round by round.
        """
        get = _Getter(data)
        agents = [
            AgentLog(
                model=_typed(a.get("model"), str, "agents[].model"),
                messages=[
                    _message(m) for m in _typed(a.get("messages"), list, "agents[].messages")
                ],
            )
            for a in (_typed(x, dict, "agents[]") for x in get("agents", list))
        ]
        if not agents:
            raise RecordFormatError("'agents' is empty")
        usage = get("usage", dict)
        judge = data.get("judge")
        record = cls(
            id=get("id", (str, int)),
            task=get("task", str),
            method=get("method", str),
            question=get("question", str),
            target=_target(data.get("target")),
            agents=agents,
            finish_reasons=[_str_list(r, "finish_reasons[]") for r in get("finish_reasons", list)],
            usage=Usage(
                prompt_tokens=_typed(usage.get("prompt_tokens"), int, "usage.prompt_tokens"),
                completion_tokens=_typed(
                    usage.get("completion_tokens"), int, "usage.completion_tokens"
                ),
            ),
            errors=_typed(data.get("errors", 0), int, "errors"),
            summaries=(
                None
                if data.get("summaries") is None
                else [_str_list(r, "summaries[]") for r in get("summaries", list)]
            ),
            judge=None if judge is None else _judge(judge),
            error=data.get("error") or None,
        )
        rounds = {sum(m["role"] == "assistant" for m in a.messages) for a in agents}
        if len(rounds) != 1 or 0 in rounds:
            raise RecordFormatError(
                "the agents have different numbers of replies (or none): "
                f"{sorted(rounds)}; the chat histories are damaged"
            )
        n_rounds = rounds.pop()
        if len(record.finish_reasons) != n_rounds or any(
            len(r) != len(agents) for r in record.finish_reasons
        ):
            raise RecordFormatError(
                f"'finish_reasons' should be [round][agent] for {n_rounds} round(s) of "
                f"{len(agents)} agent(s)"
            )
        return record


# -- validation helpers ----------------------------------------------------------------------


class _Getter:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = data

    def __call__(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self._data:
            raise RecordFormatError(f"no {key!r}")
        return _typed(self._data[key], kind, key)


def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to isinstance; a token count of `true` is still wrong.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordFormatError(
            f"{name!r} should be {expected}, found {type(value).__name__} {value!r:.60}"
        )
    return value


def _message(value: Any) -> Message:
    message = _typed(value, dict, "agents[].messages[]")
    return {
        "role": _typed(message.get("role"), str, "messages[].role"),
        "content": _typed(message.get("content"), str, "messages[].content"),
    }


def _str_list(value: Any, name: str) -> list[str]:
    return [_typed(v, str, name) for v in _typed(value, list, name)]


def _target(value: Any) -> Target:
    if isinstance(value, list):
        return _str_list(value, "target")
    return _typed(value, (str, int, float), "target")


def _judge(value: Any) -> JudgeLog:
    judge = _typed(value, dict, "judge")
    if "verdicts" not in judge:
        raise RecordFormatError("no 'judge.verdicts'")
    verdicts = [
        [None if v is None else _typed(v, str, "judge.verdicts[][]") for v in row]
        for row in (
            _typed(r, list, "judge.verdicts[]")
            for r in _typed(judge["verdicts"], list, "judge.verdicts")
        )
    ]
    return JudgeLog(model=_typed(judge.get("model"), str, "judge.model"), verdicts=verdicts)
