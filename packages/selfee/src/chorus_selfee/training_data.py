"""Training records for ``chorus_shared.training`` (segments format, prompt weight 0)."""

from __future__ import annotations

from collections.abc import Iterable

from chorus_selfee.chain import build_prompt, chain_from_record

OBJECTIVES = ("full", "answer-only")


def training_record(record: dict, objective: str = "full") -> dict:
    """Return ``{id, segments: [prompt (weight 0), target (weight 1)], add_eos: True}``.

    ``full``: the answer and the whole feedback/revision chain; ``answer-only``: the final
    answer. The loss is masked on the prompt; EOS closes the target.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose from {', '.join(OBJECTIVES)}")
    chain = chain_from_record(record)
    target = chain.render() if objective == "full" else chain.final_answer.strip()
    if not target:
        raise ValueError(f"record {record.get('id')!r} has an empty answer")
    return {
        "id": str(record["id"]),
        "segments": [
            {"text": build_prompt(record["instruction"], record.get("input") or ""), "weight": 0.0},
            {"text": target, "weight": 1.0},
        ],
        "add_eos": True,
    }


def training_records(records: Iterable[dict], objective: str = "full") -> tuple[list[dict], int]:
    """Return ``(training records, skipped)``: records with an error or an empty answer are
    skipped and counted, never trained on."""
    out, skipped = [], 0
    for r in records:
        if r.get("errors") or not (r.get("outputs") and str(r["outputs"][0]["output"]).strip()):
            skipped += 1
            continue
        out.append(training_record(r, objective))
    return out, skipped
