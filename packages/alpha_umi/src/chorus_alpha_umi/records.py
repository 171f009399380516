"""The alpha-UMi records: one line of ``records.jsonl``, shared by the writer and every reader.

- :class:`StepRecord` — static evaluation, one per gold step: the original's reference string
  and the replies of the roles that were asked (nothing graded: evaluate.py parses and scores
  the replies every time, so a scoring fix applies to old runs);
- :class:`EpisodeRecord` — real-time ``run``, one per query: the whole conversation, how it
  ended, and the pass verdict when a judge was given;
- :class:`PairRecord` — real-time ``evaluate --episodes --reference``, one per query: both
  pass verdicts and the pairwise outcome.

``from_json`` checks every field and type once and raises :class:`RecordFormatError` naming
the field; readers turn that into a counted skip, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EpisodeRecord", "PairRecord", "RecordFormatError", "StepRecord"]

STEP_FIELDS = ("planner", "caller", "summarizer", "diagnostic_caller", "diagnostic_summarizer")


class RecordFormatError(ValueError):
    """A record line does not have the fields and types its record class needs."""


def _typed(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...
) -> Any:
    if key not in data:
        if default is not ...:
            return default
        raise RecordFormatError(f"no {key!r}")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordFormatError(
            f"{key!r} should be {expected}, found {type(value).__name__} {value!r:.60}"
        )
    return value


def _str_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = _typed(data, key, dict)
    for k, v in value.items():
        if not isinstance(v, str):
            raise RecordFormatError(f"{key}[{k!r}] should be str, found {type(v).__name__}")
    return dict(value)


@dataclass(frozen=True)
class StepRecord:
    """One static step as generated.

    ``replies`` maps who was asked to the reply text: ``planner`` always (in ``backbone``
    mode the single model's whole reply), ``caller``/``summarizer`` when the planner routed
    there, ``diagnostic_caller``/``diagnostic_summarizer`` at gold steps the planner
    misrouted (only with the gold-routed diagnostic).
    """

    id: str
    dialog: str
    mode: str  # "multi" (planner / caller / summarizer) or "backbone" (single-LLM)
    reference: str  # the original's reference string of the step
    tool_names: list[str]
    replies: dict[str, str]
    finish_reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        return {"kind": "step", **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        mode = _typed(data, "mode", str)
        if mode not in ("multi", "backbone"):
            raise RecordFormatError(f"'mode' should be multi or backbone, found {mode!r}")
        replies = _str_map(data, "replies")
        unknown = sorted(set(replies) - set(STEP_FIELDS))
        if unknown or "planner" not in replies:
            raise RecordFormatError(
                f"'replies' should hold 'planner' and only {STEP_FIELDS}, found {sorted(replies)}"
            )
        names = _typed(data, "tool_names", list)
        if not all(isinstance(n, str) for n in names):
            raise RecordFormatError("'tool_names' should be a list of strings")
        return cls(
            id=str(_typed(data, "id", (str, int))),
            dialog=str(_typed(data, "dialog", (str, int))),
            mode=mode,
            reference=_typed(data, "reference", str),
            tool_names=names,
            replies=replies,
            finish_reasons=_str_map(data, "finish_reasons") if "finish_reasons" in data else {},
        )


@dataclass(frozen=True)
class EpisodeRecord:
    """One real-time episode: the conversation, how it ended, counters, the judge's verdict."""

    id: str
    conversations: list[dict[str, str]]
    status: str  # "conclusion", "give up" or "max_turns"
    answer: str | None
    planner_turns: int
    unmarked_plans: int = 0
    bad_calls: int = 0
    tool_errors: int = 0
    verdict: str | None = None
    passed: bool | None = None
    judge_reply: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        return {"kind": "episode", **asdict(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpisodeRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        turns = _typed(data, "conversations", list)
        for k, turn in enumerate(turns):
            if not isinstance(turn, dict) or not all(
                isinstance(turn.get(key), str) for key in ("from", "value")
            ):
                raise RecordFormatError(f"conversations[{k}] should be {{from, value}} strings")
        status = _typed(data, "status", str)
        if status not in ("conclusion", "give up", "max_turns"):
            raise RecordFormatError(f"'status' {status!r} is not a finished episode's")
        return cls(
            id=str(_typed(data, "id", (str, int))),
            conversations=turns,
            status=status,
            answer=_typed(data, "answer", (str, type(None)), None),
            planner_turns=_typed(data, "planner_turns", int),
            unmarked_plans=_typed(data, "unmarked_plans", int, 0),
            bad_calls=_typed(data, "bad_calls", int, 0),
            tool_errors=_typed(data, "tool_errors", int, 0),
            verdict=_typed(data, "verdict", (str, type(None)), None),
            passed=_typed(data, "passed", (bool, type(None)), None),
            judge_reply=_typed(data, "judge_reply", (str, type(None)), None),
        )


PAIR_KEYS: dict[str, tuple[type, ...]] = {
    "outcome": (str,),
    "verdict": (str,),
    "passed": (bool,),
    "reference_verdict": (str,),
    "reference_passed": (bool,),
}


@dataclass(frozen=True)
class PairRecord:
    """One real-time comparison: the judge's pass verdicts of both sides and the outcome of
    the episodes' side (win / loss / tie / unparseable); the rest of the line is kept."""

    id: str
    outcome: str
    verdict: str
    passed: bool
    reference_verdict: str
    reference_passed: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        base = {k: getattr(self, k) for k in ("id", *PAIR_KEYS)}
        return {"kind": "pair", **self.extra, **base}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PairRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        values = {k: _typed(data, k, kinds) for k, kinds in PAIR_KEYS.items()}
        extra = {k: v for k, v in data.items() if k not in ("id", "kind", *PAIR_KEYS)}
        return cls(id=str(_typed(data, "id", (str, int))), extra=extra, **values)

    def as_dict(self) -> dict[str, Any]:
        """Returns the record as one flat dict (for the metric helpers)."""
        return self.to_json()
