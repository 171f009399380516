"""Training data: the original's records -> ``chorus_shared.training`` examples.

Two sources read the same way: a ``generate`` run folder (its typed records), or a file in
the original's own format (``.json`` array or ``.jsonl``: ``instruction, input, outputs
[{output, feedback}], iteration, ...`` with no id, e.g. the released mixture merged by the
original's ``outputs/merge_data.py``). Each example is ``{id, segments: [prompt (weight 0),
target (weight 1)], add_eos: True}``: the loss is masked on the prompt, as the original's
``preprocess`` does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from chorus_selfee.chain import build_prompt, chain_from_record

OBJECTIVES = ("full", "answer-only")


def training_record(record: Mapping[str, Any], objective: str = "full") -> dict[str, Any]:
    """Return ``{id, segments: [prompt (weight 0), target (weight 1)], add_eos: True}``.

    ``full``: the answer and the whole feedback/revision chain (the original's
    ``make_full_target``); ``answer-only``: the *first* answer only, as the original's
    ablation (``make_answer_only_target``). EOS closes the target.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    chain = chain_from_record(dict(record))
    target = chain.render() if objective == "full" else chain.answer
    if not target.strip():
        raise ValueError(f"record {record.get('id')!r} has an empty answer")
    return {
        "id": str(record["id"]),
        "segments": [
            {"text": build_prompt(record["instruction"], record.get("input") or ""), "weight": 0.0},
            {"text": target, "weight": 1.0},
        ],
        "add_eos": True,
    }


def training_records(
    records: Iterable[Mapping[str, Any]], objective: str = "full"
) -> tuple[list[dict[str, Any]], int]:
    """Return ``(training examples, skipped)``: records with an error, no outputs or an empty
    first answer are skipped and counted, never trained on."""
    out, skipped = [], 0
    for r in records:
        outputs = r.get("outputs")
        if r.get("error") or r.get("errors") or not outputs:
            skipped += 1
            continue
        if not str(outputs[0].get("output", "")).strip():
            skipped += 1
            continue
        out.append(training_record(r, objective))
    return out, skipped


def read_original_records(path: str | Path) -> list[dict[str, Any]]:
    """Return the records of a file in the original's data format, each given an ``id``
    (``<file stem>-<line or index>``, the original has none).

    Raises ``ValueError`` naming the file (and line) when it is not JSON or a record lacks
    ``instruction`` or ``outputs``.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason})") from None
    rows: list[tuple[int, Any]]
    if file.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{file}: not valid JSON ({exc})") from None
        if not isinstance(data, list):
            raise ValueError(f"{file}: expected a JSON array of records")
        rows = list(enumerate(data, 1))
    else:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{file}:{n}: not valid JSON ({exc})") from None
    out = []
    for n, row in rows:
        if not isinstance(row, dict):
            raise ValueError(f"{file}:{n}: a record should be a JSON object")
        for key, kind in (("instruction", str), ("outputs", list)):
            if not isinstance(row.get(key), kind):
                raise ValueError(
                    f"{file}:{n}: the record has no {key!r} ({kind.__name__}); the original's "
                    "format is {instruction, input, outputs: [{output, feedback}], ...}"
                )
        for step in row["outputs"]:
            if not isinstance(step, dict) or not isinstance(step.get("output"), str):
                raise ValueError(f"{file}:{n}: every entry of 'outputs' needs an 'output' text")
        out.append({**row, "id": str(row.get("id", f"{file.stem}-{n}"))})
    return out
