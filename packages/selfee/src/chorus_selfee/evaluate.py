"""Reading and scoring selfee runs: typed records in, metrics and report.md out.

Every reader goes through the engine's one validated path (``chorus_shared.engine.read_run``):
only the run's own item ids count, a duplicated id counts once, and every skipped line is
counted with its reason; each remaining line must parse as the verb's typed record
(:mod:`chorus_selfee.records`), else it is skipped and counted too. Answers and judge scores
are parsed here every time (never stored), so a parsing fix applies to old runs. Every
summary says "k of n items" and warns when a run is incomplete.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from chorus_selfee.chain import verdict
from chorus_selfee.judge import GROUPS, aggregate, aggregate_pairwise, pct, table
from chorus_selfee.records import (
    InferRecord,
    PreferenceRecord,
    RecordFormatError,
    ReviewRecord,
    TeacherRecord,
)
from chorus_shared.engine import RunRead, read_run
from chorus_shared.report import image_link, line_plot, markdown_table
from chorus_shared.runs import OutputFolder, RunDir

R = TypeVar("R")
VERBS = ("generate", "infer", "evaluate")


def run_verb(run: RunDir) -> str:
    """Returns the verb that made ``run`` (``task.name`` "selfee-<verb>"); raises
    ``ValueError`` naming the folder when it is not a selfee run."""
    name = (
        run.config.get("task", {}).get("name") if isinstance(run.config.get("task"), dict) else None
    )
    if not isinstance(name, str) or name.removeprefix("selfee-") not in VERBS:
        raise ValueError(
            f"{run.path} is not a chorus-selfee generate/infer/evaluate run "
            "(its config.json has no task.name 'selfee-<verb>')"
        )
    return name.removeprefix("selfee-")


def typed_records(
    run: RunDir, parse: Callable[[dict[str, Any]], R], *, kind: str | None = None
) -> tuple[list[R], RunRead]:
    """Returns the run's finished records parsed with ``parse`` (a ``from_json``) and what the
    reader found; a line that does not parse (or has another ``kind``) is a counted skip."""
    read = read_run(run)
    usable = []
    for line in list(read.finished):
        try:
            if kind is not None and line.get("kind") != kind:
                raise RecordFormatError(f"'kind' should be {kind!r}, found {line.get('kind')!r}")
            usable.append(parse(line))
        except RecordFormatError as err:
            read.records.skip(line, f"record {line['id']!r}: malformed: {err}")
    return usable, read


def _coverage(read: RunRead, usable: int) -> dict[str, Any]:
    return {
        "items": usable,
        "expected_items": read.expected,
        "errors": len(read.records.errored),
        "skipped_records": len(read.records.skipped),
        "notes": read.notes(),
    }


def coverage_text(metrics: dict[str, Any]) -> str:
    """Returns "k of n items" (or "k items") for a metrics dict."""
    expected = metrics.get("expected_items")
    return (
        f"{metrics['items']} items"
        if expected is None
        else f"{metrics['items']} of {expected} items"
    )


# -- generate --------------------------------------------------------------------------------


def generate_metrics(run: RunDir) -> dict[str, Any]:
    """Returns the teacher data's counts: chains, mean texts, truncated, verdicts."""
    recs, read = typed_records(run, TeacherRecord.from_json)
    counts = {"verdicts_needed": 0, "verdicts_not_needed": 0, "verdicts_missing": 0}
    for rec in recs:
        for step in rec.outputs:
            if step.feedback is None:
                continue
            v = verdict(step.feedback)
            counts[f"verdicts_{'missing' if v is None else 'needed' if v else 'not_needed'}"] += 1
    return {
        "verb": "generate",
        **_coverage(read, len(recs)),
        "mean_iterations": sum(r.iteration for r in recs) / len(recs) if recs else None,
        "truncated": sum(r.iteration_truncated for r in recs),
        "missing_verdicts": sum(r.missing_verdicts for r in recs),
        **counts,
    }


# -- infer -----------------------------------------------------------------------------------


def infer_metrics(run: RunDir) -> dict[str, Any]:
    """Returns the answers' counts: revisions (complete ones, as the final answer counts
    them), forced verdicts, rows that hit the budget, empty final answers."""
    recs, read = typed_records(run, InferRecord.from_json)
    finals = [r.final for r in recs]
    return {
        "verb": "infer",
        **_coverage(read, len(recs)),
        "max_num_revision": run.config_value("recipe.max_num_revision", int),
        "mean_revisions": sum(f.revisions for f in finals) / len(finals) if finals else None,
        "forced": sum(r.forced for r in recs),
        "hit_budget": sum(r.finish == "length" for r in recs),
        "empty_answers": sum(not f.text.strip() for f in finals),
    }


def infer_answers(run: RunDir) -> tuple[dict[str, str], RunRead]:
    """Returns ``{question id: final answer}`` of an infer run's finished records."""
    recs, read = typed_records(run, InferRecord.from_json)
    return {r.id: r.final.text for r in recs}, read


# -- evaluate --------------------------------------------------------------------------------


def evaluate_metrics(run: RunDir) -> dict[str, Any]:
    """Returns the judge's metrics (relative score or win rate), re-parsed from the stored
    reviews, with "k of n questions" for the evaluation set."""
    kind = run.config_value("recipe.kind", str)
    questions = run.config_value("questions", int)
    if kind == "chat":
        reviews, read = typed_records(run, ReviewRecord.from_json, kind="review")
        metrics = aggregate(reviews)
        judged = metrics["judged_questions"]
    else:
        prefs, read = typed_records(run, PreferenceRecord.from_json, kind="preference")
        metrics = aggregate_pairwise(prefs)
        judged = sum(p.logit is not None for p in prefs)
    unanswered = run.config_value("unanswered", list)
    metrics.update(
        verb="evaluate",
        **_coverage(read, len(read.finished)),
        judge=run.config_value("recipe.judge", str),
        judge_scores=run.config_value("recipe.judge_scores", str),
        questions=questions,
        judged_of_questions=f"{judged} of {questions} questions",
        unanswered=unanswered,
        answers_k=run.config.get("answers_k"),
    )
    if unanswered:
        metrics["notes"].append(
            f"{len(unanswered)} of {questions} questions have no usable answer on one side "
            f"(first: {unanswered[:5]}); they were not judged"
        )
    if kind == "chat" and metrics["flagged_questions"]:
        metrics["notes"].append(
            f"{metrics['flagged_reviews']} review(s) have no score pair the original's parser "
            f"accepts; both orders of questions {metrics['flagged_questions'][:10]} are left "
            "out (the original asks for a manual fix)"
        )
    return metrics


def evaluate_report(metrics: dict[str, Any]) -> str:
    """Returns report.md of an evaluate run."""
    kind = "pairwise" if metrics.get("judge_kind") == "pairwise" else "chat"
    return (
        f"# SelFee pairwise evaluation\n\njudge: `{metrics['judge']}` ({kind}, "
        f"{metrics['judge_scores']}); {metrics['judged_of_questions']} judged; records "
        f"{coverage_text(metrics)}\n\n{table(metrics)}\n"
        + "".join(f"\n- {note}" for note in metrics["notes"])
        + "\n"
    )


def metrics_of(run: RunDir) -> dict[str, Any]:
    """Returns the metrics of any selfee run, recomputed from its records."""
    verb = run_verb(run)
    if verb == "generate":
        return generate_metrics(run)
    if verb == "infer":
        return infer_metrics(run)
    return evaluate_metrics(run)


def summary_report(metrics: dict[str, Any]) -> str:
    """Returns report.md of a generate or infer run (a table of its counts)."""
    rows = [[k, v] for k, v in metrics.items() if k not in ("notes",) and not isinstance(v, dict)]
    notes = "".join(f"\n- {n}" for n in metrics["notes"])
    return (
        f"# SelFee {metrics['verb']}: {coverage_text(metrics)}\n\n"
        + markdown_table(["metric", "value"], rows)
        + ("\n" + notes if notes else "")
        + "\n"
    )


def write_outputs(run: RunDir, metrics: dict[str, Any], out: str | Path | None = None) -> None:
    """Writes metrics.json and report.md into the run (or ``out``)."""
    target: RunDir | OutputFolder = OutputFolder(out) if out is not None else run
    target.write_metrics(metrics)
    text = evaluate_report(metrics) if metrics["verb"] == "evaluate" else summary_report(metrics)
    target.write_report(text)


# -- report over several evaluate runs ------------------------------------------------------


def _by_group_table(
    runs: list[tuple[str, dict]], score: str, count_name: str, count: Callable[[dict], str]
) -> str:
    """Returns one markdown row per run: K, forced revisions, ``score`` per judge prompt group
    and over all, and ``count`` under ``count_name``."""
    rows = []
    for d, m in runs:
        groups = m.get("per_group", {})
        rows.append(
            [
                Path(d).name,
                "" if m.get("answers_k") is None else m["answers_k"],
                *(pct(groups.get(g, {}).get(score)) for g in GROUPS),
                pct(m[score]),
                count(m),
                m["judged_of_questions"],
            ]
        )
    return markdown_table(["run", "K", *GROUPS, "all", count_name, "questions"], rows)


def _valid_of_all(m: dict) -> str:
    """Returns "valid/all" comparisons of a pairwise evaluate run's metrics."""
    valid = m["wins"] + m["losses"] + m["ties"]
    return f"{valid}/{valid + m['invalid']}"


def report(run_dirs: list[str], out: str | None = None) -> str:
    """Returns the markdown report of evaluate runs (re-scored from their records): a
    comparison by judge prompt group and each run's table; with ``out``, also writes
    report.md, metrics.json and a plot of the relative score against K there."""
    runs = []
    for d in run_dirs:
        run = RunDir.open(d)
        if run_verb(run) != "evaluate":
            raise ValueError(f"{d} is a {run_verb(run)} run; report takes evaluate runs")
        runs.append((d, evaluate_metrics(run)))
    parts = ["# SelFee evaluation report\n"]
    chat = [(d, m) for d, m in runs if m.get("judge_kind") != "pairwise"]
    pair = [(d, m) for d, m in runs if m.get("judge_kind") == "pairwise"]
    if chat:
        parts.append(
            "Relative score = total(model) / total(reference) over both orders, by judge "
            "prompt (general / coding / math); K = forced revisions of the answers.\n\n"
            + _by_group_table(
                chat, "relative", "parsed", lambda m: f"{m['parsed']}/{m['parsed'] + m['unparsed']}"
            )
        )
    if pair:
        parts.append(
            "\nPairwise judges: win rate of the model vs the reference ((wins + ties/2) / "
            "valid), by judge prompt.\n\n"
            + _by_group_table(
                pair,
                "win_rate",
                "valid",
                _valid_of_all,
            )
        )
    for d, m in runs:
        parts.append(f"## {d}\n\n{table(m)}\n" + "".join(f"\n- {n}" for n in m["notes"]))
    text = "\n".join(parts)
    if out:
        folder = OutputFolder(out)
        with_k = sorted(
            ((m["answers_k"], m) for _, m in chat if m.get("answers_k") is not None),
            key=lambda x: x[0],
        )
        series = {}
        for g in (*GROUPS, "all"):
            pts = [
                (k, 100 * rel)
                for k, m in with_k
                if (rel := (m if g == "all" else m.get("per_group", {}).get(g, {})).get("relative"))
                is not None
            ]
            if pts:
                series[g] = ([p[0] for p in pts], [p[1] for p in pts], None)
        if series:
            png = line_plot(
                folder.figure_path("relative_by_group"),
                series,
                xlabel="forced revisions K",
                ylabel="relative score (%)",
                title="SelFee: relative score by judge prompt",
            )
            text += "\n" + image_link(png, folder.path) + "\n"
        folder.write_metrics({d: m for d, m in runs})
        folder.write_report(text)
    return text


# -- input files -----------------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    """Returns ``sha256:<hex>:<bytes>`` of a file (how config.json records an input)."""
    data = path.read_bytes()
    return f"sha256:{hashlib.sha256(data).hexdigest()}:{len(data)}"


def read_answer_file(path: Path, eval_set: str) -> dict[str, str]:
    """Returns ``{item id: text}`` of a FastChat answer file (JSONL: ``question_id``,
    ``text``); raises ``ValueError`` naming the file, line and missing key."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"answers file {path}: not UTF-8 text ({exc.reason})") from None
    out: dict[str, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"answers file {path}, line {n}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"answers file {path}, line {n}: expected a JSON object")
        for key, kinds in (("question_id", (int, str)), ("text", (str,))):
            if key not in row:
                raise ValueError(
                    f"answers file {path}, line {n}: no {key!r} (a FastChat answer line has "
                    "'question_id' and 'text')"
                )
            if not isinstance(row[key], kinds) or isinstance(row[key], bool):
                raise ValueError(f"answers file {path}, line {n}: {key!r} has the wrong type")
        key = f"{eval_set}-{row['question_id']}"
        if key in out:
            raise ValueError(f"answers file {path}, line {n}: question {row['question_id']} twice")
        out[key] = row["text"]
    return out


def load_answers(source: str, eval_set: str) -> tuple[dict[str, str], str, dict[str, Any]]:
    """Returns ``(answers by item id, fingerprint, info)`` of an infer run folder or a FastChat
    answer file; ``info`` holds the infer run's K and the reader's notes."""
    path = Path(source)
    if path.is_dir():
        run = RunDir.open(path)
        if run_verb(run) != "infer":
            raise ValueError(f"{source} is a {run_verb(run)} run; answers come from infer runs")
        answers, read = infer_answers(run)
        info = {
            "k": run.config_value("recipe.max_num_revision", int),
            "notes": read.notes(),
        }
        return (
            answers,
            fingerprint(run.records_path) if run.records_path.exists() else "empty",
            info,
        )
    if not path.is_file():
        raise FileNotFoundError(f"answers {source!r}: neither a run folder nor a JSONL file")
    return read_answer_file(path, eval_set), fingerprint(path), {"k": None, "notes": []}
