"""The typed records of chorus-blender: one line of ``records.jsonl`` per item, per verb.

The writers (:mod:`chorus_blender.pipeline`'s window functions) build these dataclasses and
store :meth:`to_json`; every reader (evaluate, report, fuse, train) parses lines back with
:meth:`from_json`, which checks each field and its type once and raises one
:class:`RecordFormatError` naming the field, so scoring code never meets a missing key.

- :class:`MixInstructRecord`: an instruction with its reference and scored candidates
  (``make-candidates``; also the input of ``evaluate`` and ``train``), with MixInstruct's
  ``cmp_results`` (ChatGPT's pairwise labels) kept when the data has them;
- :class:`RankRecord`: the PairRanker's ranks of one item's candidates (``rank``);
- :class:`FuseRecord`: the fuser's answer from the top-K candidates (``fuse``);
- :class:`EvalRecord`: every method's choice and its scores for one test item (``evaluate``).

Errored items (a failed reply) are stored by the engine as ``{"id", ..., "error"}`` and are
never parsed as one of these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Candidate",
    "EvalRecord",
    "FuseRecord",
    "MixInstructRecord",
    "RankRecord",
    "RecordFormatError",
]


class RecordFormatError(ValueError):
    """A record line lacks a field, or a field has the wrong type (the message names it)."""


def _get(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise RecordFormatError(f"{where}: not a JSON object")
    if name not in data:
        raise RecordFormatError(f"{where}: missing field {name!r}")
    value = data[name]
    # bool is an int in Python; a JSON true is never a valid count or score here.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise RecordFormatError(
            f"{where}: field {name!r} should be {_kind_name(kind)}, got {type(value).__name__}"
        )
    return value


def _opt(data: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    return None if data.get(name) is None else _get(data, name, kind, where)


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in _kinds(kind))


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordFormatError(f"{where}: should be a finite number, got {value!r}")
    return float(value)


def _strings(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise RecordFormatError(f"{where}: should be a list of strings")
    return list(values)


def _id(data: Mapping[str, Any], where: str) -> str:
    return str(_get(data, "id", (str, int), where))


@dataclass(frozen=True)
class Candidate:
    """One candidate answer of a MixInstruct item and its scores against the reference."""

    text: str
    scores: dict[str, float] = field(default_factory=dict)
    model: str = ""
    generator: str = ""
    decoding_method: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "candidate") -> Candidate:
        """Returns the candidate; raises RecordFormatError naming a missing or mistyped field."""
        scores = _opt(data, "scores", dict, where) or {}
        return cls(
            text=_get(data, "text", str, where),
            scores={str(k): _number(v, f"{where}: scores[{k!r}]") for k, v in scores.items()},
            model=str(data.get("model") or ""),
            generator=str(data.get("generator") or ""),
            decoding_method=str(data.get("decoding_method") or ""),
        )

    @property
    def name(self) -> str:
        """Returns the generator's name (MixInstruct's hub data names the model only)."""
        return self.generator or self.model

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored for this candidate."""
        return asdict(self)


@dataclass(frozen=True)
class MixInstructRecord:
    """An instruction, its reference ``output`` and its scored candidates (MixInstruct's shape).

    ``cmp_results`` holds MixInstruct's ChatGPT pairwise labels (``"modelA,modelB"`` ->
    ``"A is better" | "B is better" | "Same good" | "Same bad"``) when the data has them, so
    the paper's GPT-Rank can be rebuilt from the released labels.
    """

    id: str
    instruction: str
    input: str
    output: str
    candidates: list[Candidate]
    split: str | None = None
    source_dataset: str | None = None
    cmp_results: dict[str, str] | None = None
    generation_errors: list[str] = field(default_factory=list)

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, metrics: Sequence[str] = (), where: str = "record"
    ) -> MixInstructRecord:
        """Returns the record; every candidate must carry each of ``metrics`` in its scores.

        Raises RecordFormatError naming the record, the candidate and the field.
        """
        where = f"{where} {data.get('id')!r}" if isinstance(data, Mapping) else where
        cands_raw = _get(data, "candidates", list, where)
        if not cands_raw:
            raise RecordFormatError(f"{where}: 'candidates' is empty")
        cands = [Candidate.from_json(c, f"{where}: candidate {j}") for j, c in enumerate(cands_raw)]
        for j, cand in enumerate(cands):
            missing = [m for m in metrics if m not in cand.scores]
            if missing:
                raise RecordFormatError(
                    f"{where}: candidate {j} ({cand.name or 'unnamed'}) has no score for "
                    f"{', '.join(missing)}"
                )
        cmp = _opt(data, "cmp_results", dict, where)
        return cls(
            id=_id(data, where),
            instruction=_get(data, "instruction", str, where),
            input=str(data.get("input") or ""),
            output=_get(data, "output", str, where),
            candidates=cands,
            split=_opt(data, "split", str, where),
            source_dataset=_opt(data, "source_dataset", str, where),
            cmp_results={str(k): str(v) for k, v in cmp.items()} if cmp is not None else None,
            generation_errors=_strings(data.get("generation_errors", []), where),
        )

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored for this record (None fields left out)."""
        out: dict[str, Any] = {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
            "candidates": [c.to_json() for c in self.candidates],
            "generation_errors": list(self.generation_errors),
        }
        for key in ("split", "source_dataset", "cmp_results"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @property
    def texts(self) -> list[str]:
        """Returns the candidates' texts in order."""
        return [c.text for c in self.candidates]


@dataclass(frozen=True)
class RankRecord:
    """The PairRanker's ranks (1 = best) of one item's candidates."""

    id: str
    source: str
    candidates: list[str]
    ranks: list[int]
    aggregation: str = "max_logits"
    instruction: str | None = None
    input: str | None = None

    def __post_init__(self) -> None:
        if len(self.ranks) != len(self.candidates) or not self.candidates:
            raise RecordFormatError(
                f"record {self.id!r}: {len(self.ranks)} ranks for {len(self.candidates)} candidates"
            )
        if any(r < 1 or r > len(self.ranks) for r in self.ranks):
            raise RecordFormatError(f"record {self.id!r}: ranks must lie in 1..{len(self.ranks)}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "record") -> RankRecord:
        """Returns the record; raises RecordFormatError naming a missing or mistyped field."""
        where = f"{where} {data.get('id')!r}" if isinstance(data, Mapping) else where
        ranks = _get(data, "ranks", list, where)
        if not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
            raise RecordFormatError(f"{where}: 'ranks' should be a list of integers")
        return cls(
            id=_id(data, where),
            source=_get(data, "source", str, where),
            candidates=_strings(_get(data, "candidates", list, where), f"{where}: candidates"),
            ranks=list(ranks),
            aggregation=str(data.get("aggregation") or "max_logits"),
            instruction=_opt(data, "instruction", str, where),
            input=_opt(data, "input", str, where),
        )

    @property
    def best_index(self) -> int:
        """Returns the index of the first candidate ranked 1."""
        return self.ranks.index(min(self.ranks))

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored for this record (with ``best_index``/``chosen``)."""
        out = asdict(self)
        if self.instruction is None:
            del out["instruction"], out["input"]
        return {**out, "best_index": self.best_index, "chosen": self.candidates[self.best_index]}


@dataclass(frozen=True)
class FuseRecord:
    """The fuser's answer for one item, written from its top-K ranked candidates."""

    id: str
    source: str
    topk: list[str]
    fused: str
    model: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "record") -> FuseRecord:
        """Returns the record; raises RecordFormatError naming a missing or mistyped field."""
        where = f"{where} {data.get('id')!r}" if isinstance(data, Mapping) else where
        return cls(
            id=_id(data, where),
            source=_get(data, "source", str, where),
            topk=_strings(_get(data, "topk", list, where), f"{where}: topk"),
            fused=_get(data, "fused", str, where),
            model=_get(data, "model", str, where),
        )

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored for this record."""
        return asdict(self)


@dataclass(frozen=True)
class EvalRecord:
    """One test item of ``evaluate``: each method's scores (method -> metric -> value).

    ``choices`` maps a selector (pointwise, PairRanker) to the candidate index it picked;
    ``gpt_rank`` holds the judge's ranks and verdict counts when a judge was used.
    """

    id: str
    scores: dict[str, dict[str, float]]
    choices: dict[str, int] = field(default_factory=dict)
    ranks: list[int] | None = None
    fused: str | None = None
    gpt_rank: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "record") -> EvalRecord:
        """Returns the record; raises RecordFormatError naming a missing or mistyped field."""
        where = f"{where} {data.get('id')!r}" if isinstance(data, Mapping) else where
        raw = _get(data, "scores", dict, where)
        scores: dict[str, dict[str, float]] = {}
        for method, values in raw.items():
            if not isinstance(values, dict):
                raise RecordFormatError(f"{where}: scores[{method!r}] should be an object")
            scores[str(method)] = {
                str(m): _number(v, f"{where}: scores[{method!r}][{m!r}]") for m, v in values.items()
            }
        choices = _opt(data, "choices", dict, where) or {}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in choices.values()):
            raise RecordFormatError(f"{where}: 'choices' should map methods to integers")
        gpt = _opt(data, "gpt_rank", dict, where)
        if gpt is not None:
            for key, kind in (("ranks", list), ("n_entries", int)):
                _get(gpt, key, kind, f"{where}: gpt_rank")
            for key in ("judged", "unparseable"):
                _get(gpt, key, int, f"{where}: gpt_rank")
        return cls(
            id=_id(data, where),
            scores=scores,
            choices={str(k): int(v) for k, v in choices.items()},
            ranks=_opt(data, "ranks", list, where),
            fused=_opt(data, "fused", str, where),
            gpt_rank=gpt,
        )

    def to_json(self) -> dict[str, Any]:
        """Returns the JSON object stored for this record (None fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def ranker_source(instruction: str, input_text: str = "") -> str:
    """Returns the PairRanker's source text: instruction and input joined as the original
    joins them (``instruction + input``, no separator; its ``RankerDataset`` and
    ``pair_ranker/data.py``)."""
    return instruction + input_text


def record_source(record: MixInstructRecord | Mapping[str, Any]) -> str:
    """Returns the ranker's source text of a MixInstruct record (typed or JSON)."""
    if isinstance(record, MixInstructRecord):
        return ranker_source(record.instruction, record.input)
    return ranker_source(str(record.get("instruction", "")), str(record.get("input") or ""))
