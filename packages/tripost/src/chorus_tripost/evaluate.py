"""Grading an evaluation run: seen / unseen accuracy without and with test-time self-improvement.

Reads the run's records through the engine's one validated path (``chorus_shared.engine.
read_run``: only the run's own item ids, a duplicated id once, every skipped line counted with
its reason) and parses each as an :class:`~chorus_tripost.records.EvalRecord`. Answers are
graded here every time, so a grading fix applies to old runs. An unreadable answer is wrong
and counted; an errored item is never graded.

"Without self-improvement" grades the first attempt, "with" the last answer (the original's
final answer after self-improvement). ``improved`` / ``worsened`` count items whose answer
went from wrong to right / right to wrong; ``self_improved`` counts items with an update.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from chorus_shared.engine import RunRead, read_run
from chorus_shared.grading import format_stat
from chorus_shared.redact import redact_urls
from chorus_shared.report import markdown_table
from chorus_shared.runs import OutputFolder, RunDir
from chorus_tripost import tasks
from chorus_tripost.records import EvalRecord, RecordFormatError

__all__ = [
    "EVAL_KIND",
    "accuracy_table",
    "evaluate_run",
    "grade",
    "is_correct",
    "read_eval_run",
    "score",
    "summarize",
]

EVAL_KIND = "tripost-evaluate"


def is_correct(item: dict, rationale: str) -> bool:
    """Return True when the rationale's final answer is the item's answer (arithmetic compares
    as numbers; multiple choice: the option letter)."""
    return tasks.answers_match(item, tasks.answer_of(item, rationale))


def grade(record: EvalRecord) -> dict[str, Any]:
    """Return the grading of one record: answers read, correctness first/final, updates."""
    item = record.item()
    first, final = record.answers[0], record.answers[-1]
    return {
        "split": record.split,
        "answer_first": tasks.answer_of(item, first),
        "answer_final": tasks.answer_of(item, final),
        "correct_first": is_correct(item, first),
        "correct_final": is_correct(item, final),
        "n_updates": len(record.answers) - 1,
        "calls": record.calls,
    }


def _mean_se(values: list[float]) -> dict[str, float]:
    n = len(values)
    if not n:
        return {"mean": float("nan"), "se": float("nan")}
    p = sum(values) / n
    # s.e. of a mean of 0/1 scores: sqrt(p (1 - p) / n) (ddof = 0).
    return {"mean": p, "se": math.sqrt(p * (1 - p) / n)}


def summarize(graded: list[dict[str, Any]]) -> dict[str, Any]:
    """Return accuracy (mean, s.e., n) per split (seen, unseen, all) for the first answer
    (``no_si``) and the final answer (``si``), and the counters described in the module."""
    out: dict[str, Any] = {}
    for split in ("seen", "unseen", "all"):
        rows = [g for g in graded if split == "all" or g["split"] == split]
        out[split] = {
            "n": len(rows),
            "no_si": _mean_se([float(g["correct_first"]) for g in rows]),
            "si": _mean_se([float(g["correct_final"]) for g in rows]),
            "improved": sum(g["correct_final"] and not g["correct_first"] for g in rows),
            "worsened": sum(g["correct_first"] and not g["correct_final"] for g in rows),
            "self_improved": sum(g["n_updates"] > 0 for g in rows),
            "unreadable_first": sum(g["answer_first"] is None for g in rows),
            "unreadable_final": sum(g["answer_final"] is None for g in rows),
            "calls": sum(g["calls"] for g in rows),
        }
    return out


def read_eval_run(run: RunDir) -> tuple[list[EvalRecord], RunRead]:
    """Return the run's typed evaluation records and what the reader found.

    A folder that is not a chorus-tripost evaluation run is a ``ValueError`` naming it; a
    line that does not parse as an :class:`EvalRecord` is skipped and counted.
    """
    kind = run.config.get("kind")
    if kind != EVAL_KIND:
        raise ValueError(
            f"{run.path} is not a chorus-tripost evaluation run (config.json kind is "
            f"{kind!r}, expected {EVAL_KIND!r}): give folders written by `chorus-tripost evaluate`"
        )
    task = run.config_value("recipe.task", str)
    read = read_run(run, match={"task": task})
    usable = []
    for line in list(read.finished):
        try:
            usable.append(EvalRecord.from_json(line))
        except RecordFormatError as err:
            read.records.skip(line, f"record {line.get('id')!r}: malformed: {err}")
    return usable, read


def evaluate_run(run: RunDir) -> dict[str, Any]:
    """Return the run's metrics: the summary per split, the label, "k of n" coverage, the
    errored and skipped counts and the reader's notes."""
    records, read = read_eval_run(run)
    if not records:
        details = "".join(f"\n  {note}" for note in read.notes())
        raise ValueError(
            f"{run.path} has no finished records to score: run `chorus-tripost evaluate` "
            "again to retry its errored items" + details
        )
    metrics = summarize([grade(r) for r in records])
    metrics.update(
        label=redact_urls(str(run.config.get("label") or run.path)),
        task=run.config_value("recipe.task", str),
        method=run.config.get("method"),
        items=len(records),
        expected_items=read.expected,
        coverage=read.coverage(),
        errors=len(read.records.errored),
        skipped_records=len(read.records.skipped),
        notes=read.notes(),
    )
    return metrics


def pct(stat: dict[str, float], n: int) -> str:
    """Return "mean ± se" in percent, or "—" for an empty split."""
    return format_stat(stat["mean"], stat["se"]) if n else "—"


def accuracy_table(rows: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    """Return (headers, rows) of a markdown table from ``(label, metrics)`` pairs."""
    headers = [
        "method",
        "seen (no SI)",
        "seen (SI)",
        "unseen (no SI)",
        "unseen (SI)",
        "improved / worsened",
        "items",
    ]
    body = [
        [
            label,
            pct(s["seen"]["no_si"], s["seen"]["n"]),
            pct(s["seen"]["si"], s["seen"]["n"]),
            pct(s["unseen"]["no_si"], s["unseen"]["n"]),
            pct(s["unseen"]["si"], s["unseen"]["n"]),
            f"{s['all']['improved']} / {s['all']['worsened']}",
            s.get("coverage", f"{s['all']['n']} items"),
        ]
        for label, s in rows
    ]
    return headers, body


def score(run: RunDir, out: str | Path | None = None) -> dict[str, Any]:
    """Grade ``run``, print the reader's notes, write metrics.json and report.md into the run
    (or into ``out``); return the metrics."""
    metrics = evaluate_run(run)
    for note in metrics["notes"]:
        print(f"chorus-tripost: note: {note}", file=sys.stderr)
    headers, body = accuracy_table([(metrics["label"], metrics)])
    report = f"# {metrics['label']} on {metrics['task']}\n\n{markdown_table(headers, body)}\n"
    target: RunDir | OutputFolder = run if out is None else OutputFolder(out)
    target.write_metrics(metrics)
    target.write_report(report)
    return metrics


def summary_line(metrics: dict[str, Any]) -> str:
    """Return the one-line result ``evaluate`` prints."""
    seen, unseen = metrics["seen"], metrics["unseen"]
    return (
        f"{metrics['label']} on {metrics['task']}: seen {pct(seen['no_si'], seen['n'])} % "
        f"-> {pct(seen['si'], seen['n'])} % with SI, unseen {pct(unseen['no_si'], unseen['n'])} "
        f"% -> {pct(unseen['si'], unseen['n'])} % over {metrics['coverage']}; errored items "
        f"{metrics['errors']}, skipped records {metrics['skipped_records']}"
    )
