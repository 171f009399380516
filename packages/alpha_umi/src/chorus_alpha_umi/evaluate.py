"""Scoring run folders: static steps (paper metrics), real-time episodes and comparisons.

Every reader goes through :func:`chorus_shared.engine.read_run` (only the run's own item ids,
a duplicated id once, every skipped line counted with its reason, "k of n items") and parses
each line with its typed record; a line that does not parse is a counted skip. Scores are
recomputed from the stored replies every time.

Static steps are scored as the original: each record becomes the prediction string the
original pipeline writes (infer_pipeline.py: the planner's turn cut after its marker, then
"</s>caller: ..." or "</s>conclusion: ..." when that role was asked) and is parsed with the
reference string by :func:`chorus_alpha_umi.metrics.parse_output`.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

from chorus_alpha_umi.dialog import MARKERS, cut_plan, parse_route
from chorus_alpha_umi.judge import pass_rate, win_rate
from chorus_alpha_umi.metrics import aggregate, parse_output, score_step
from chorus_alpha_umi.records import EpisodeRecord, PairRecord, RecordFormatError, StepRecord
from chorus_shared.engine import RunRead, read_run
from chorus_shared.report import markdown_table
from chorus_shared.runs import OutputFolder, RunDir

PAPER_COLUMNS = (
    ("Plan ACC", "plan_acc"),
    ("Act EM", "act_em"),
    ("Hallu", "hallucination"),
    ("Arg F1", "arg_f1"),
    ("Arg F1 easy", "arg_f1_easy"),
    ("Arg F1 hard", "arg_f1_hard"),
    ("R-L", "rouge_l"),
)
OURS_COLUMNS = (
    ("Arg F1 lenient (ours)", "arg_f1_lenient"),
    ("R-L rouge-score (ours)", "rouge_l_lenient"),
)


def clean_reply(text: str) -> str:
    """Return a reply as the original stores it: a leading ": " dropped, and "none" for a
    reply that is empty or only ".", ","."""
    if text.startswith(": "):
        text = text[2:]
    return "none" if text.strip() in ("", ".", ",") else text


def prediction_text(record: StepRecord) -> str:
    """Return the prediction string the original pipeline writes for this step."""
    plan = clean_reply(record.replies["planner"])
    if record.mode == "backbone":
        return plan
    route, _ = parse_route(plan)
    if route == "give up":
        return cut_plan(plan)
    role = "caller" if route == "caller" else "summarizer"
    label = "caller" if route == "caller" else "conclusion"
    reply = record.replies.get(role)
    if reply is None:
        raise RecordFormatError(f"the planner routed to the {role}, but no {role!r} reply")
    # The original's own prefix, misspelling included: nothing parses it.
    return f"asssitant: {cut_plan(plan)}</s>{label}: {clean_reply(reply)}"


def gold_routed_text(record: StepRecord) -> str | None:
    """Return the diagnostic prediction string: the gold step's role asked whatever the
    planner routed (None when that reply is not in the record)."""
    ref_plan = parse_output(record.reference, record.mode).plan
    if record.mode == "backbone" or ref_plan == "give up":
        return None
    role = "caller" if ref_plan == "call" else "summarizer"
    reply = record.replies.get(role, record.replies.get(f"diagnostic_{role}"))
    if reply is None:
        return None
    label = "caller" if role == "caller" else "conclusion"
    marker = MARKERS["caller" if role == "caller" else "conclusion"]
    return f"asssitant: {marker}</s>{label}: {clean_reply(reply)}"


def read_steps(run: RunDir) -> tuple[list[StepRecord], RunRead]:
    """Return the run's typed step records and what the reader found (skips counted)."""
    read = read_run(run)
    usable = []
    for line in list(read.finished):
        try:
            record = StepRecord.from_json(line)
            prediction_text(record)
        except RecordFormatError as err:
            read.records.skip(line, f"record {line.get('id')!r}: malformed: {err}")
            continue
        usable.append(record)
    return usable, read


def _no_records(run: RunDir, read: RunRead, verb: str) -> ValueError:
    details = "".join(f"\n  {note}" for note in read.notes())
    return ValueError(f"{run.path} has no finished records to score: run `{verb}` first{details}")


def _coverage(read: RunRead, metrics: dict[str, Any]) -> dict[str, Any]:
    metrics.update(
        items=len(read.finished),
        expected_items=read.expected,
        coverage=read.coverage(),
        errors=len(read.records.errored),
        skipped_records=len(read.records.skipped),
        notes=read.notes(),
    )
    return metrics


def static_metrics(run: RunDir) -> dict[str, Any]:
    """Return the static metrics of ``run`` (paper-comparable columns, our lenient ones,
    the gold-routed diagnostic when the run asked for it, counts and notes)."""
    records, read = read_steps(run)
    if not records:
        raise _no_records(run, read, "chorus-alpha-umi evaluate")
    scores = [score_step(r.reference, prediction_text(r), r.tool_names, r.mode) for r in records]
    metrics = aggregate(scores)
    metrics["mode"] = records[0].mode
    metrics["planner_without_marker"] = sum(
        1 for r in records if r.mode == "multi" and not parse_route(r.replies["planner"])[1]
    )
    metrics["routed"] = dict(Counter(s["pred_plan"] for s in scores))
    diagnostic = [(r, gold_routed_text(r)) for r in records]
    diagnostic_scores = [
        score_step(r.reference, text, r.tool_names, r.mode) for r, text in diagnostic if text
    ]
    if run.config.get("recipe", {}).get("gold_routed_diagnostic") and diagnostic_scores:
        gold = aggregate(diagnostic_scores)
        metrics["gold_routed_diagnostic"] = {
            k: gold[k] for k in ("act_em", "arg_f1", "arg_f1_easy", "arg_f1_hard", "rouge_l")
        }
    else:
        metrics["gold_routed_diagnostic"] = None
    task = run.config.get("task") or {}
    metrics["dialogs"] = task.get("dialogs")
    metrics["dialogs_without_steps"] = task.get("dialogs_without_steps")
    metrics["defective_gold_steps"] = task.get("defective_gold_steps", 0)
    return _coverage(read, metrics)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}"


def metrics_table(rows: list[tuple[str, str, dict[str, Any]]]) -> str:
    """Return the markdown table of ``(run name, roles, metrics)`` rows (``—`` = no steps)."""
    columns = (*PAPER_COLUMNS, *OURS_COLUMNS)
    headers = ["run", "roles", *(h for h, _ in columns), "steps", "unmarked plans"]
    body = [
        [
            name,
            roles,
            *(_fmt(m.get(k)) for _, k in columns),
            m.get("coverage", m.get("steps", 0)),
            m.get("planner_without_marker", 0),
        ]
        for name, roles, m in rows
    ]
    return markdown_table(headers, body)


def describe_roles(config: dict[str, Any]) -> str:
    """Return which models played the roles, from a run's recorded recipe."""
    recipe = config.get("recipe") or {}
    if recipe.get("mode") == "backbone":
        return f"single-LLM backbone: `{recipe.get('planner', recipe.get('model', '?'))}`"
    specs = [str(recipe.get(role, "?")) for role in ("planner", "caller", "summarizer")]
    if len(set(specs)) == 1:
        return f"1 model, 3 role prompts: `{specs[0]}`"
    return f"{len(set(specs))} models: " + ", ".join(
        f"{role} `{spec}`"
        for role, spec in zip(("planner", "caller", "summarizer"), specs, strict=True)
    )


def static_report(run: RunDir, metrics: dict[str, Any]) -> str:
    """Return report.md of a static run."""
    lines = [
        f"# alpha-UMi static evaluation ({metrics.get('mode', 'multi')})",
        "",
        f"{describe_roles(run.config)}; {metrics['coverage']}, "
        f"{metrics['errors']} errored (retried on resume), "
        f"{metrics['skipped_records']} record lines skipped.",
        "",
        "Paper-comparable columns (the authors' evaluation scripts); the two last are ours "
        "(lenient argument values, the rouge-score package).",
        "",
        metrics_table([(run.path.name, describe_roles(run.config), metrics)]),
    ]
    gold = metrics.get("gold_routed_diagnostic")
    if gold:
        lines += [
            "",
            "Diagnostic, not the paper's protocol: the caller / summarizer asked at every gold "
            "call / conclusion step whatever the planner routed:",
            "",
            markdown_table(
                ["Act EM", "Arg F1", "Arg F1 easy", "Arg F1 hard", "R-L"],
                [
                    [
                        _fmt(gold[k])
                        for k in ("act_em", "arg_f1", "arg_f1_easy", "arg_f1_hard", "rouge_l")
                    ]
                ],
            ),
        ]
    if metrics["notes"]:
        lines += ["", "Notes:", "", *(f"- {note}" for note in metrics["notes"])]
    return "\n".join(lines) + "\n"


# -- real time ---------------------------------------------------------------------------


def read_episodes(run: RunDir) -> tuple[list[EpisodeRecord], RunRead]:
    """Return the run's typed episode records and what the reader found (skips counted)."""
    read = read_run(run)
    usable = []
    for line in list(read.finished):
        try:
            usable.append(EpisodeRecord.from_json(line))
        except RecordFormatError as err:
            read.records.skip(line, f"record {line.get('id')!r}: malformed: {err}")
    return usable, read


def episode_metrics(run: RunDir) -> dict[str, Any]:
    """Return the metrics of a `run` folder of episodes (statuses, counters, pass rate)."""
    records, read = read_episodes(run)
    if not records:
        raise _no_records(run, read, "chorus-alpha-umi run")
    dicts = [r.to_json() for r in records if r.verdict is not None]
    metrics = {
        "status": dict(Counter(r.status for r in records)),
        "mean_planner_turns": sum(r.planner_turns for r in records) / len(records),
        "bad_calls": sum(r.bad_calls for r in records),
        "tool_errors": sum(r.tool_errors for r in records),
        "unmarked_plans": sum(r.unmarked_plans for r in records),
        "judge": (run.config.get("recipe") or {}).get("judge"),
        **pass_rate(dicts),
    }
    return _coverage(read, metrics)


def read_pairs(run: RunDir) -> tuple[list[PairRecord], RunRead]:
    """Return the typed comparison records of a real-time evaluation run."""
    read = read_run(run)
    usable = []
    for line in list(read.finished):
        try:
            usable.append(PairRecord.from_json(line))
        except RecordFormatError as err:
            read.records.skip(line, f"record {line.get('id')!r}: malformed: {err}")
    return usable, read


def pair_metrics(run: RunDir) -> dict[str, Any]:
    """Return pass rates of both sides and the win rate of the episodes' side."""
    records, read = read_pairs(run)
    if not records:
        raise _no_records(run, read, "chorus-alpha-umi evaluate --episodes --reference")
    rows = [r.as_dict() for r in records]
    mine = pass_rate(rows)
    ref = pass_rate(
        [{"verdict": r["reference_verdict"], "passed": r["reference_passed"]} for r in rows]
    )
    metrics = {
        "queries": len(rows),
        "pass_rate": mine["pass_rate"],
        "verdicts": mine["verdicts"],
        "reference_pass_rate": ref["pass_rate"],
        "reference_verdicts": ref["verdicts"],
        **win_rate(rows),
    }
    return _coverage(read, metrics)


def write_outputs(
    run: RunDir, metrics: dict[str, Any], report: str | None, out: str | Path | None, pkg: str
) -> None:
    """Write metrics.json (and report.md) into the run folder, or into ``out`` when given;
    print the reader's notes. A read-only run folder gets the metrics printed instead."""
    if out is not None and Path(out).resolve() != run.path.resolve():
        other = Path(out)
        if (other / "config.json").is_file() or (other / "manifest.json").is_file():
            # Another run's metrics.json / report.md are that run's: never overwrite them.
            raise ValueError(
                f"--out {other} is another run folder; give a new or plain folder for the "
                "metrics and report of " + str(run.path)
            )
    for note in metrics.get("notes", []):
        print(f"{pkg}: note: {note}", file=sys.stderr)
    target: RunDir | OutputFolder = run if out is None else OutputFolder(out)
    try:
        target.write_metrics(metrics)
        if report is not None:
            target.write_report(report)
    except OSError as err:
        if out is not None:
            raise
        print(
            f"{pkg}: cannot write into {run.path} ({err.strerror or err}); pass --out DIR",
            file=sys.stderr,
        )
