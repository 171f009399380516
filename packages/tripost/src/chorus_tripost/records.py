"""TriPosT's run records: one line of ``records.jsonl``, shared by the writer and every reader.

Two kinds of run write records through the shared engine (``chorus_shared.engine``):

* a **collection** run (``chorus-tripost collect``, and ``iter-k/collect`` of a training run)
  stores one :class:`TrajectoryRecord` per training item and sampling round: the model's
  attempt, the verifier's feedback on each answer and the improver's updates;
* an **evaluation** run (``chorus-tripost evaluate``) stores one :class:`EvalRecord` per test
  item: the answers (first attempt, then each test-time update) and the feedback between them.

A record holds only what was generated (and the item's gold answer, so evaluation needs no
data folder); answers are parsed and graded by ``evaluate.py`` every time. Readers parse lines
with ``from_json``, which checks each field and type once and raises one
:class:`RecordFormatError` naming the field: the reader counts the line as skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EvalRecord", "RecordFormatError", "TrajectoryRecord"]


class RecordFormatError(ValueError):
    """A record line lacks a field of its record type, or holds a value of the wrong type."""


@dataclass(frozen=True)
class TrajectoryRecord:
    """One training item's trajectory in a collection run. ``error`` set = an errored item.

    ``answers[0]`` is the model's attempt, ``answers[k]`` the improver's k-th update;
    ``feedback[k]`` is the verifier's feedback on ``answers[k]``; ``accepted`` says whether the
    verifier accepted ``answers[-1]`` (otherwise the trajectory is dropped from training).
    ``bad_progress`` marks a trajectory in which an update did not move the first error later
    (the original keeps only its first turn). ``item`` is the training item (question,
    rationale, answer, ...) the trajectory was made for.
    """

    id: str
    task: str
    item: dict[str, Any]
    answers: list[str]
    feedback: list[str]
    accepted: bool
    sample_round: int = 0
    bad_progress: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        data: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "item": self.item,
            "answers": self.answers,
            "feedback": self.feedback,
            "accepted": self.accepted,
            "sample_round": self.sample_round,
            "bad_progress": self.bad_progress,
        }
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrajectoryRecord:
        """Returns the record stored in ``data``; raises :class:`RecordFormatError` naming the
        first missing or mistyped field."""
        get = _Getter(data)
        item = get("item", dict)
        for key in ("id", "question", "answer"):
            if key not in item:
                raise RecordFormatError(f"no 'item.{key}'")
        record = cls(
            id=get("id", str),
            task=get("task", str),
            item=item,
            answers=_str_list(get("answers", list), "answers"),
            feedback=_str_list(get("feedback", list), "feedback"),
            accepted=get("accepted", bool),
            sample_round=_typed(data.get("sample_round", 0), int, "sample_round"),
            bad_progress=_typed(data.get("bad_progress", False), bool, "bad_progress"),
            error=data.get("error") or None,
        )
        if not record.answers:
            raise RecordFormatError("'answers' is empty")
        if len(record.feedback) not in (len(record.answers), len(record.answers) - 1):
            raise RecordFormatError(
                f"'feedback' should hold one entry per answer ({len(record.answers)}), "
                f"found {len(record.feedback)}"
            )
        return record


@dataclass(frozen=True)
class EvalRecord:
    """One test item of an evaluation run. ``error`` set = an errored item (never graded).

    ``answers``: the first attempt, then each test-time update; ``feedback``: the model's
    feedback after each answer it judged; ``calls``: generation calls made for the item (the
    original allows up to 10); ``finish_reason`` of the last call.
    """

    id: str
    task: str
    split: str  # "seen" or "unseen"
    question: str
    gold: str
    choices: str | None  # option letters of a multiple-choice item
    answers: list[str]
    feedback: list[str]
    finish_reason: str
    calls: int
    error: str | None = None

    def item(self) -> dict[str, Any]:
        """Returns the item view graders take (``task``, ``question``, ``answer``, ``choices``)."""
        item: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "question": self.question,
            "answer": self.gold,
        }
        if self.choices is not None:
            item["choices"] = self.choices
        return item

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        data: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "split": self.split,
            "question": self.question,
            "gold": self.gold,
            "choices": self.choices,
            "answers": self.answers,
            "feedback": self.feedback,
            "finish_reason": self.finish_reason,
            "calls": self.calls,
        }
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalRecord:
        """Returns the record stored in ``data``; raises :class:`RecordFormatError` naming the
        first missing or mistyped field."""
        get = _Getter(data)
        split = get("split", str)
        if split not in ("seen", "unseen"):
            raise RecordFormatError(f"'split' should be 'seen' or 'unseen', found {split!r}")
        choices = data.get("choices")
        record = cls(
            id=get("id", str),
            task=get("task", str),
            split=split,
            question=get("question", str),
            gold=get("gold", str),
            choices=None if choices is None else _typed(choices, str, "choices"),
            answers=_str_list(get("answers", list), "answers"),
            feedback=_str_list(get("feedback", list), "feedback"),
            finish_reason=get("finish_reason", str),
            calls=get("calls", int),
            error=data.get("error") or None,
        )
        if not record.answers:
            raise RecordFormatError("'answers' is empty")
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
    # bool is an int to isinstance; a call count of `true` is still wrong.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordFormatError(
            f"{name!r} should be {expected}, found {type(value).__name__} {value!r:.60}"
        )
    return value


def _str_list(value: list[Any], name: str) -> list[str]:
    return [_typed(v, str, f"{name}[]") for v in value]
