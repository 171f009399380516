"""Scoring a finished run: accuracy per round and per number of agents, exports, report.md.

Scores are recomputed from the stored replies with the current grading code, so a grading
fix applies to old runs too. Unparseable answers are wrong and are counted, never dropped.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_debate.judge import biography_score, pooled_accuracy
from chorus_debate.records import DebateRecord, RecordFormatError
from chorus_debate.tasks import Task, get_task
from chorus_shared.engine import RunRead
from chorus_shared.engine import read_run as read_records_of_run
from chorus_shared.grading import format_stat, majority_vote
from chorus_shared.report import image_link, line_plot, markdown_table
from chorus_shared.runs import OutputFolder, RunDir


@dataclass(frozen=True)
class RecordScore:
    """How one exact-answer record grades (derived from its replies, never stored)."""

    answers: list[list[Any]]  # [round][agent] parsed answers, None = unparseable
    finals: list[Any]  # [round] majority answer
    by_round: list[bool]  # [round] majority correct
    by_agents_first: list[bool]  # [k-1] majority of the first k agents correct, round 1
    by_agents_last: list[bool]  # the same in the last round
    per_agent_last: list[bool]  # [agent] correct in the last round

    @property
    def correct(self) -> bool:
        """Returns whether the final (last-round majority) answer is correct."""
        return self.by_round[-1]

    @property
    def unparseable_last(self) -> int:
        """Returns the number of last-round replies with no answer in them."""
        return sum(a is None for a in self.answers[-1])


def score_record(task: Task, record: DebateRecord) -> RecordScore:
    """Return the grading of one record of an exact-answer task, from its stored replies.

    A reply of a failed request (finish reason "error") is unparseable, whatever its text.
    """
    answers = [
        [
            None if reason == "error" else task.parse(text)
            for text, reason in zip(rnd, why, strict=True)
        ]
        for rnd, why in zip(record.replies_by_round(), record.finish_reasons, strict=True)
    ]
    item = {"id": record.id, "target": record.target}
    n_agents = len(answers[0])
    finals = [majority_vote(rnd) for rnd in answers]
    return RecordScore(
        answers=answers,
        finals=finals,
        by_round=[task.is_correct(f, item) for f in finals],
        # Majority of the first k agents: how accuracy grows with the number of agents.
        by_agents_first=[
            task.is_correct(majority_vote(answers[0][:k]), item) for k in range(1, n_agents + 1)
        ],
        by_agents_last=[
            task.is_correct(majority_vote(answers[-1][:k]), item) for k in range(1, n_agents + 1)
        ],
        per_agent_last=[task.is_correct(a, item) for a in answers[-1]],
    )


def declined_replies(task: Task, record: DebateRecord) -> int:
    """Return how many last-round replies declined to answer (not scored, as in the paper)."""
    declines = task.declines
    return 0 if declines is None else sum(declines(t) for t in record.last_replies())


def _mean_se(values: list[float]) -> dict[str, float]:
    """Return mean and standard error as the paper computes them: std with NumPy's default
    ddof=0 (divide by n), over sqrt(n). With n = 100 this is 0.5 % smaller than the ddof=1 form."""
    n = len(values)
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n)
    return {"mean": mean, "se": std / math.sqrt(n)}


CUT_WARNING = 0.10  # warn when more than this share of a run's replies hit the token budget
LOOP_TAIL_WORDS = 80  # how much of a cut reply's end the loop check reads


def ends_in_loop(text: str, tail_words: int = LOOP_TAIL_WORDS) -> bool:
    """Return True when ``text`` ends in a repetition loop.

    The end is a loop when fewer than half of the word trigrams among its last ``tail_words``
    words are distinct: a sentence, a line or a table row repeated over and over. A reply cut
    at the budget while looping would fill any budget, so a larger one does not help; a tail
    shorter than half of ``tail_words`` is never called a loop.
    """
    tail = text.split()[-tail_words:]
    if len(tail) < tail_words // 2:
        return False
    trigrams = list(zip(tail, tail[1:], tail[2:], strict=False))
    return len(set(trigrams)) < 0.5 * len(trigrams)


def _cut_in_loop(records: list[DebateRecord]) -> int:
    """Return how many replies were cut at the budget while repeating themselves."""
    return sum(
        reason == "length" and ends_in_loop(text)
        for r in records
        for reasons, texts in zip(r.finish_reasons, r.replies_by_round(), strict=True)
        for reason, text in zip(reasons, texts, strict=True)
    )


def read_run(run: RunDir) -> tuple[Task, str, list[DebateRecord], RunRead]:
    """Return the run's task, method, typed scorable records and what the reader found.

    Reads through the engine's one validated path (``chorus_shared.engine.read_run``): a
    duplicated id counts once; records of another task or method and records whose id is not
    one of the run's items (``item_ids`` in config.json) are skipped and counted with their
    line number. Each remaining line must parse as a :class:`DebateRecord` (every field present
    and typed; a judged task needs the judge's verdicts), else it is skipped and counted too:
    never graded, never a traceback.
    """
    task = get_task(run.config_value("recipe.task", str))
    method = run.config_value("recipe.method", str)
    read = read_records_of_run(run, match={"task": task.name, "method": method})
    usable = []
    for line in list(read.finished):
        try:
            record = DebateRecord.from_json(line)
            if task.judged and record.judge is None:
                raise RecordFormatError("no 'judge' verdicts, but this task is judged")
        except RecordFormatError as err:
            read.records.skip(line, f"record {line['id']!r}: malformed: {err}")
            continue
        usable.append(record)
    return task, method, usable, read


def evaluate_run(run: RunDir, *, write: bool = True) -> dict[str, Any]:
    """Return the run's metrics (also written to metrics.json unless ``write=False``).

    ``errors`` counts items that errored (stored with their reason, retried on resume),
    ``skipped_records`` the lines the reader left out; ``notes`` says why, line by line.
    """
    task, method, records, read = read_run(run)
    if not records:
        details = "".join(f"\n  {note}" for note in read.notes())
        raise ValueError(
            f"{run.path} has no finished records to score: run `chorus-debate generate` first"
            + details
        )
    metrics: dict[str, Any] = {
        "task": task.name,
        "method": method,
        "models": sorted({a.model for r in records for a in r.agents}),
        "agents": len(records[0].agents),
        "rounds": len(records[0].finish_reasons),
        "items": len(records),
        # The run's item set: "k of n" in the summary, and a note when k < n.
        "expected_items": read.expected,
        "errors": len(read.records.errored),
        "skipped_records": len(read.records.skipped),
        "notes": read.notes(),
        "prompt_tokens": sum(r.usage.prompt_tokens for r in records),
        "completion_tokens": sum(r.usage.completion_tokens for r in records),
        "finish_length": sum(
            f == "length" for r in records for rnd in r.finish_reasons for f in rnd
        ),
        "replies": sum(len(rnd) for r in records for rnd in r.finish_reasons),
        # Of the cut replies, those that end in a repetition loop: no budget would end them.
        "cut_in_loop": _cut_in_loop(records),
        # MMLU is drawn with replacement (as in the paper): the same question can come twice.
        "duplicates": len(records) - len({r.question for r in records}),
    }
    metrics["cut_rate"] = metrics["finish_length"] / metrics["replies"] if metrics["replies"] else 0
    if metrics["cut_rate"] > CUT_WARNING:
        looping = metrics["cut_in_loop"]
        # Most cut replies looping means the model, not the budget, keeps them from ending.
        advice = (
            f"{looping} of them end in a repetition loop, which a larger budget would not end"
            if 2 * looping >= metrics["finish_length"]
            else "the accuracy measures the budget, not the method; raise --max-new-tokens"
            + (f" ({looping} of them end in a repetition loop)" if looping else "")
        )
        print(
            f"warning: {metrics['finish_length']} of {metrics['replies']} replies "
            f"({100 * metrics['cut_rate']:.0f} %) in {run.path} were cut at the token budget: "
            + advice,
            file=sys.stderr,
        )
    if task.judged:
        # Re-score the stored verdicts with the current rule (uncertain/unparseable excluded).
        per_person = [biography_score(r.judge.verdicts if r.judge else []) for r in records]
        counts_list = [c for _, c in per_person]
        counts = {
            k: sum(c[k] for c in counts_list) for k in ("yes", "no", "uncertain", "unparseable")
        }
        counts["declined"] = sum(declined_replies(task, r) for r in records)
        person_scores = [s for s, _ in per_person if s is not None]
        pooled = pooled_accuracy(counts_list)
        metrics.update(
            # Headline = the paper's pooled yes / (yes + no); s.e. from the per-person scores.
            accuracy=(
                {"mean": pooled, "se": _mean_se(person_scores)["se"]}
                if pooled is not None
                else None
            ),
            accuracy_per_person=_mean_se(person_scores) if person_scores else None,
            people_unscored=len(records) - len(person_scores),
            accuracy_by_round=None,
            judge_counts=counts,
            unparseable=counts["unparseable"],
            judge_model=records[0].judge.model if records[0].judge else None,
        )
    else:
        graded = [score_record(task, r) for r in records]
        n_rounds, n_agents = metrics["rounds"], metrics["agents"]

        def column(key: str, k: int) -> list[float]:
            return [float(getattr(g, key)[k]) for g in graded]

        metrics.update(
            accuracy=_mean_se(column("by_round", n_rounds - 1)),
            accuracy_by_round=[_mean_se(column("by_round", k)) for k in range(n_rounds)],
            accuracy_by_agents_round1=[
                _mean_se(column("by_agents_first", k)) for k in range(n_agents)
            ],
            accuracy_by_agents_last=[
                _mean_se(column("by_agents_last", k)) for k in range(n_agents)
            ],
            agent_accuracy_last=[_mean_se(column("per_agent_last", k)) for k in range(n_agents)],
            unparseable=sum(g.unparseable_last for g in graded),
            unparseable_final=sum(g.finals[-1] is None for g in graded),
        )
    if write:
        run.write_metrics(metrics)
    return metrics


def pct(stat: dict[str, float] | None) -> str:
    """Return "mean ± se" in percent, or "–" when absent."""
    return format_stat(stat["mean"], stat["se"]) if stat else "–"


def write_run_report(run: RunDir | OutputFolder, metrics: dict[str, Any]) -> Path:
    """Write report.md (table + accuracy-vs-round and accuracy-vs-agents plots) into ``run``
    (the run folder, or the ``--out`` folder of ``evaluate``); return its path."""
    lines = [
        f"# {metrics['task']} — {metrics['method']}",
        "",
        f"Models: {', '.join(metrics['models'])}; agents {metrics['agents']}, rounds "
        f"{metrics['rounds']}, items {metrics['items']}.",
        "",
        markdown_table(
            ["metric", "value"],
            [
                ["accuracy (final, %)", pct(metrics["accuracy"])],
                *(
                    [["per-person mean accuracy (%)", pct(metrics["accuracy_per_person"])]]
                    if "accuracy_per_person" in metrics
                    else []
                ),
                ["unparseable answers (last round)", metrics["unparseable"]],
                ["items that errored (retried on resume)", metrics["errors"]],
                ["record lines skipped as invalid", metrics.get("skipped_records", 0)],
                [
                    "replies cut at the token budget",
                    f"{metrics['finish_length']} of {metrics['replies']}",
                ],
                ["of them ending in a repetition loop", metrics.get("cut_in_loop", "–")],
                ["duplicate items (drawn twice)", metrics["duplicates"]],
                ["generated tokens", metrics["completion_tokens"]],
            ],
        ),
    ]
    if metrics.get("accuracy_by_round"):
        rounds = list(range(1, metrics["rounds"] + 1))
        by_round = metrics["accuracy_by_round"]
        lines += [
            "",
            "## Accuracy per round",
            "",
            markdown_table(
                ["round", "accuracy (%)"],
                [[r, pct(s)] for r, s in zip(rounds, by_round, strict=True)],
            ),
        ]
        fig = line_plot(
            run.figure_path("accuracy_vs_round"),
            {
                metrics["method"]: (
                    rounds,
                    [100 * s["mean"] for s in by_round],
                    [100 * s["se"] for s in by_round],
                )
            },
            xlabel="round",
            ylabel="accuracy (%)",
            title=f"{metrics['task']}: accuracy vs round",
        )
        lines += ["", image_link(fig, run.path)]
        agents = list(range(1, metrics["agents"] + 1))
        series = {
            "round 1 majority of first k agents": metrics["accuracy_by_agents_round1"],
            "last round majority of first k agents": metrics["accuracy_by_agents_last"],
        }
        fig = line_plot(
            run.figure_path("accuracy_vs_agents"),
            {
                name: (agents, [100 * s["mean"] for s in st], [100 * s["se"] for s in st])
                for name, st in series.items()
            },
            xlabel="agents",
            ylabel="accuracy (%)",
            title=f"{metrics['task']}: accuracy vs agents",
        )
        lines += ["", "## Accuracy vs number of agents", "", image_link(fig, run.path)]
    if metrics.get("judge_counts"):
        lines += [
            "",
            f"Judge: {metrics['judge_model']}; verdicts: "
            + ", ".join(f"{k} {v}" for k, v in metrics["judge_counts"].items()),
        ]
    return run.write_report("\n".join(lines) + "\n")


def export_original(run: RunDir, path: str | Path) -> Path:
    """Write the original's export ``{question: [agent_contexts, answer]}``; return the path."""
    out = {r.question: [[a.messages for a in r.agents], r.target] for r in read_run(run)[2]}
    path = Path(path)
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1))
    return path
