"""The typed run records of chorus-selfee: one line of ``records.jsonl`` per item.

Each verb's window function builds one record per item and stores ``record.to_json()``; every
reader (evaluate, report, train) parses lines back with ``from_json``, which checks each field
and type once and raises :class:`RecordFormatError` naming the field, so a damaged line is a
counted skip, never a traceback.

A record holds only what was generated: the teacher's chain (generate), the model's whole
generation (infer), the judge's review text or preference (evaluate). Nothing graded is
stored: the final answer and the judge's scores are parsed by the readers every time
(:func:`chorus_selfee.chain.final_answer`, :func:`chorus_selfee.judge.parse_scores`), so a
parsing fix applies to old runs. Fields older versions stored (``answer``, ``revisions``,
``model_score``, ``reference_score``, ``winner``, ``errors``) are ignored on read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chorus_selfee.chain import FinalAnswer, final_answer

__all__ = [
    "ChainStep",
    "InferRecord",
    "PreferenceRecord",
    "RecordFormatError",
    "ReviewRecord",
    "TeacherRecord",
]

ORDERS = ("model-first", "reference-first")


class RecordFormatError(ValueError):
    """A record line does not have the fields and types of its record class."""


def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int to isinstance; a count of `true` is still wrong.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordFormatError(
            f"{name!r} should be {expected}, found {type(value).__name__} {value!r:.60}"
        )
    return value


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise RecordFormatError(f"no {key!r}")
    return _typed(data[key], kind, key)


def _optional(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    return None if value is None else _typed(value, kind, key)


@dataclass(frozen=True)
class ChainStep:
    """One text of a teacher chain and the critique of it (None: never critiqued)."""

    output: str
    feedback: str | None


@dataclass(frozen=True)
class TeacherRecord:
    """generate: the teacher's answer -> critique -> revision chain for one instruction.

    ``to_original()`` is the original's data record (``instruction, input, output, outputs,
    iteration, iteration_truncated``) without our fields.
    """

    id: str
    instruction: str
    input: str
    outputs: list[ChainStep]
    iteration: int
    iteration_truncated: bool
    missing_verdicts: int = 0  # critiques with neither verdict (the loop revised after them)

    def to_original(self) -> dict[str, Any]:
        """Returns the record in the original's training-data format."""
        return {
            "instruction": self.instruction,
            "input": self.input,
            "output": self.outputs[-1].output,
            "outputs": [
                {"output": s.output, **({} if s.feedback is None else {"feedback": s.feedback})}
                for s in self.outputs
            ],
            "iteration": self.iteration,
            "iteration_truncated": self.iteration_truncated,
        }

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        return {
            "id": self.id,
            **self.to_original(),
            "missing_verdicts": self.missing_verdicts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TeacherRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        steps = []
        for raw in _get(data, "outputs", list):
            step = _typed(raw, dict, "outputs[]")
            steps.append(
                ChainStep(
                    output=_get(step, "output", str),
                    feedback=_optional(step, "feedback", str),
                )
            )
        if not steps:
            raise RecordFormatError("'outputs' is empty")
        return cls(
            id=str(_get(data, "id", (str, int))),
            instruction=_get(data, "instruction", str),
            input=_typed(data.get("input") or "", str, "input"),
            outputs=steps,
            iteration=_get(data, "iteration", int),
            iteration_truncated=_typed(
                data.get("iteration_truncated", False), bool, "iteration_truncated"
            ),
            missing_verdicts=_typed(data.get("missing_verdicts", 0), int, "missing_verdicts"),
        )


@dataclass(frozen=True)
class InferRecord:
    """infer: one question and the model's whole generation after ``### Answer:``."""

    id: str
    category: str
    instruction: str
    generation: str
    forced: int  # "no revision needed" verdicts replaced by "Revision is needed"
    rounds: int  # batched generation calls this item took part in
    tokens: int  # generated tokens, including any cut off by a forced revision
    finish: str  # "stop" (EOS) or "length" (token budget spent)

    @property
    def final(self) -> FinalAnswer:
        """Returns the answer and its revision count, parsed as the original does."""
        return final_answer(self.generation)

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        return {
            "id": self.id,
            "category": self.category,
            "instruction": self.instruction,
            "generation": self.generation,
            "forced": self.forced,
            "rounds": self.rounds,
            "tokens": self.tokens,
            "finish": self.finish,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InferRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field.

        Lines of older versions stored the generation as ``chain``; they read the same.
        """
        if "generation" not in data and "chain" in data:
            data = {**data, "generation": data["chain"]}
        return cls(
            id=str(_get(data, "id", (str, int))),
            category=_get(data, "category", str),
            instruction=_typed(data.get("instruction", ""), str, "instruction"),
            generation=_get(data, "generation", str),
            forced=_get(data, "forced", int),
            rounds=_get(data, "rounds", int),
            tokens=_get(data, "tokens", int),
            finish=_get(data, "finish", str),
        )


@dataclass(frozen=True)
class ReviewRecord:
    """evaluate (chat judge): the judge's review of one question in one order.

    ``order`` "model-first" puts the model's answer as Assistant 1.
    """

    id: str
    question: str
    category: str
    order: str
    review: str
    finish_reason: str = "stop"

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        return {
            "id": self.id,
            "kind": "review",
            "question": self.question,
            "category": self.category,
            "order": self.order,
            "review": self.review,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        order = _get(data, "order", str)
        if order not in ORDERS:
            raise RecordFormatError(f"'order' should be one of {ORDERS}, found {order!r}")
        return cls(
            id=str(_get(data, "id", (str, int))),
            question=str(_get(data, "question", (str, int))),
            category=_get(data, "category", str),
            order=order,
            review=_get(data, "review", str),
            finish_reason=_typed(data.get("finish_reason", "stop"), str, "finish_reason"),
        )


@dataclass(frozen=True)
class PreferenceRecord:
    """evaluate (pairwise or likelihood judge): one both-orders preference per question.

    ``logit`` > 0 prefers the model, < 0 the reference, 0 is a tie; None = not finite
    (invalid, counted). ``margins`` holds the two per-order margins of the likelihood judge.
    """

    id: str
    question: str
    category: str
    logit: float | None
    margins: list[float] | None = None

    @property
    def winner(self) -> str | None:
        """Returns "model", "reference", "tie" or None (invalid)."""
        if self.logit is None:
            return None
        return "model" if self.logit > 0 else "reference" if self.logit < 0 else "tie"

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored as one line of ``records.jsonl``."""
        data: dict[str, Any] = {
            "id": self.id,
            "kind": "preference",
            "question": self.question,
            "category": self.category,
            "logit": self.logit,
        }
        if self.margins is not None:
            data["margins"] = self.margins
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreferenceRecord:
        """Returns the record in ``data``; raises :class:`RecordFormatError` naming the field."""
        if "logit" not in data:
            raise RecordFormatError("no 'logit'")
        margins = data.get("margins")
        return cls(
            id=str(_get(data, "id", (str, int))),
            question=str(_get(data, "question", (str, int))),
            category=_get(data, "category", str),
            logit=_optional(data, "logit", (int, float)),
            margins=None
            if margins is None
            else [_typed(m, (int, float), "margins[]") for m in _typed(margins, list, "margins")],
        )
