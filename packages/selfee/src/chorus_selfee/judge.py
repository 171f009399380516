"""Pairwise judging, both orders, with the Vicuna category prompts (general, coding, math).

Every question is judged twice: (model, reference) and (reference, model), so a judge that
prefers a position cancels out. Scores are parsed exactly as the paper notes define: the first
line "a b" (commas read as spaces), else the last "(a, b)" tuple, else unparsed — counted,
never guessed. Relative score = total(model) / total(reference) over parsed reviews.

Offline, any pairwise scorer that implements ``chorus_shared.judges.PairwiseJudge`` (e.g.
packages/blender's PairRanker as ``pairrm:<folder>``) can judge instead: it gives one logit
per question (both orders averaged by the protocol's contract), read as a win, loss or tie;
the result is a win rate, not a 1-10 relative score, and is reported as such.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from chorus_shared.judges import PairwiseJudge
from chorus_shared.models import ChatModel, Completion, SamplingParams

_NUM = r"(-?\d+(?:\.\d+)?)"
_TUPLE = re.compile(rf"\(\s*{_NUM}\s*,\s*{_NUM}\s*\)")
_FIRST_LINE = re.compile(rf"^\s*{_NUM}\s+{_NUM}\s*$")

# Vicuna-80 categories -> the reviewer prompt used for them (the paper's three groups).
PROMPT_FOR = {"coding": "coding", "math": "math"}
GROUPS = ("general", "coding", "math")
JUDGE_SCORE_MODES = ("review", "constrained", "likelihood")
# Likelihood judge: the reviewer prompt with this request in place of the scoring one; the
# judge's next token after "Assistant " is read as its preference between "1" and "2".
PAIRWISE_REQUEST = (
    "Which of the two AI assistants answered the user question above better (helpfulness, "
    "relevance, accuracy, level of detail)? Reply with the number of that assistant only: 1 or 2."
)
# Constrained judge: the review's first line, "a b" with both scores in 1..10.
SCORE_LINES: tuple[str, ...] = tuple(f"{a} {b}\n" for a in range(1, 11) for b in range(1, 11))


def group_of(category: str) -> str:
    """Return the judge prompt group (general, coding, math) of a Vicuna-80 category."""
    return PROMPT_FOR.get(category, "general")


def parse_scores(review: str) -> tuple[float, float] | None:
    """Return ``(score_1, score_2)`` read from a review, or None when unparseable."""
    lines = review.strip().splitlines()
    if lines:
        m = _FIRST_LINE.match(lines[0].replace(",", " "))
        if m:
            return float(m.group(1)), float(m.group(2))
    tuples = _TUPLE.findall(review)
    if tuples:
        a, b = tuples[-1]
        return float(a), float(b)
    return None


def judge_prompt(prompts: dict[str, dict], category: str, question: str, a1: str, a2: str) -> list:
    """Return the judge conversation for one ordered pair (Assistant 1 = ``a1``)."""
    p = prompts[PROMPT_FOR.get(category, "general")]
    content = p["template"].format(question=question, answer_1=a1, answer_2=a2, prompt=p["prompt"])
    return [{"role": "system", "content": p["system"]}, {"role": "user", "content": content}]


def judge_pairs(
    judge: ChatModel,
    prompts: dict[str, dict],
    questions: Sequence[dict],
    model_answers: dict[str, str],
    reference_answers: dict[str, str],
    params: SamplingParams,
    chooser: Any = None,
) -> list[dict]:
    """Return one review record per (question, order), from one batched ``chat`` call.

    ``order`` "model-first" puts the model as Assistant 1. A question missing either answer
    raises, naming it: a silent gap would change the relative score. With a ``chooser``
    (``chorus_selfee.constrained``), the judge does not write free text: its review is the
    first line "a b" it picks among ``SCORE_LINES``, then parsed like any review.
    """
    _check_answers(questions, model_answers, reference_answers)
    convs, meta = [], []
    for q in questions:
        m, r = model_answers[q["id"]], reference_answers[q["id"]]
        for order, a1, a2 in (("model-first", m, r), ("reference-first", r, m)):
            convs.append(judge_prompt(prompts, q["category"], q["instruction"], a1, a2))
            meta.append((q, order))
    if chooser is None:
        out = judge.chat(convs, params)
    else:
        picks = chooser.choose(convs, [""] * len(convs), SCORE_LINES)
        out = [Completion(text=SCORE_LINES[k], finish_reason="stop") for k in picks]
    records = []
    for (q, order), c in zip(meta, out, strict=True):
        s = parse_scores(c.text) if c.finish_reason != "error" else None
        if s is None:
            model_score = ref_score = None
        elif order == "model-first":
            model_score, ref_score = s
        else:
            ref_score, model_score = s
        records.append(
            {
                "id": f"{q['id']}-{order}",
                "question": q["id"],
                "category": q["category"],
                "group": group_of(q["category"]),
                "order": order,
                "review": c.text,
                "model_score": model_score,
                "reference_score": ref_score,
            }
        )
    return records


def judge_likelihood(
    chooser: Any,
    prompts: dict[str, dict],
    questions: Sequence[dict],
    model_answers: dict[str, str],
    reference_answers: dict[str, str],
) -> list[dict]:
    """Return one record per question, like ``judge_pairwise``: the judge reads the category's
    reviewer prompt asking which assistant is better, in both orders; per order the margin is
    log P(model's number) - log P(reference's number) of its next token after "Assistant ",
    and ``logit`` is the mean of the two margins (position bias cancels). > 0: model wins."""
    _check_answers(questions, model_answers, reference_answers)
    convs = []
    for q in questions:
        m, r = model_answers[q["id"]], reference_answers[q["id"]]
        for a1, a2 in ((m, r), (r, m)):
            p = dict(prompts[group_of(q["category"])], prompt=PAIRWISE_REQUEST)
            convs.append(
                judge_prompt({group_of(q["category"]): p}, q["category"], q["instruction"], a1, a2)
            )
    lps = chooser.token_logprobs(convs, ["Assistant "] * len(convs), ["1", "2"])
    records = []
    for n, q in enumerate(questions):
        (mf1, mf2), (rf1, rf2) = lps[2 * n], lps[2 * n + 1]
        margins = (mf1 - mf2, rf2 - rf1)  # model is Assistant 1, then Assistant 2
        record = _verdict_record(q, sum(margins) / 2)
        record["group"] = group_of(q["category"])
        record["margins"] = list(margins) if record["logit"] is not None else None
        records.append(record)
    return records


def _verdict_record(q: dict, x: float) -> dict:
    """Return the record of one both-orders verdict ``x`` on question ``q``: > 0 a model win,
    < 0 a reference win, 0 a tie; a non-finite ``x`` is invalid (logit and winner None)."""
    valid = math.isfinite(x)
    return {
        "id": f"{q['id']}-pairwise",
        "question": q["id"],
        "category": q["category"],
        "order": "both",
        "logit": x if valid else None,
        "winner": None if not valid else ("model" if x > 0 else "reference" if x < 0 else "tie"),
    }


def _check_answers(questions: Sequence[dict], mine: dict[str, str], ref: dict[str, str]) -> None:
    missing = [q["id"] for q in questions if q["id"] not in mine or q["id"] not in ref]
    if missing:
        raise ValueError(f"answers missing for {len(missing)} question(s): {missing[:5]}")


def judge_pairwise(
    judge: PairwiseJudge,
    questions: Sequence[dict],
    model_answers: dict[str, str],
    reference_answers: dict[str, str],
) -> list[dict]:
    """Return one record per question from one batched ``compare`` call of a pairwise judge.

    ``logit > 0`` is a model win, ``< 0`` a reference win, ``0`` a tie; a non-finite logit is
    counted as invalid, never read as a result.
    """
    _check_answers(questions, model_answers, reference_answers)
    prompts = [
        q["instruction"] + (f"\n\n{q['input']}" if q.get("input") else "") for q in questions
    ]
    logits = judge.compare(
        prompts,
        [model_answers[q["id"]] for q in questions],
        [reference_answers[q["id"]] for q in questions],
    )
    if len(logits) != len(questions):
        raise ValueError(f"pairwise judge returned {len(logits)} logits for {len(questions)} pairs")
    return [_verdict_record(q, float(logit)) for q, logit in zip(questions, logits, strict=True)]


def aggregate_pairwise(records: Sequence[dict]) -> dict:
    """Return ``{judge_kind, win_rate, wins, losses, ties, invalid, per_category}``.

    ``win_rate`` = (wins + ties / 2) / valid comparisons; None when none is valid.
    """
    tot: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    groups: dict[str, list[int]] = {g: [0, 0, 0, 0] for g in GROUPS}
    slot = {"model": 0, "reference": 1, "tie": 2, None: 3}
    for r in records:
        for t in (tot[r["category"]], tot["all"], groups[group_of(r["category"])]):
            t[slot[r["winner"]]] += 1

    def summary(t: list[int]) -> dict:
        n = t[0] + t[1] + t[2]
        return {
            "wins": t[0],
            "losses": t[1],
            "ties": t[2],
            "invalid": t[3],
            "win_rate": (t[0] + t[2] / 2) / n if n else None,
        }

    result = {"judge_kind": "pairwise", **summary(tot.pop("all", [0, 0, 0, 0]))}
    result["per_group"] = {g: summary(v) for g, v in groups.items() if sum(v)}
    result["per_category"] = {k: summary(v) for k, v in sorted(tot.items())}
    return result


def aggregate(reviews: Sequence[dict]) -> dict:
    """Return ``{relative, model_total, reference_total, parsed, unparsed, parse_rate,
    per_group, per_category}``.

    ``per_group`` uses the paper's three judge prompts (general, coding, math), ``per_category``
    the Vicuna-80 categories. Unparsed reviews are left out of both totals and counted.
    ``relative`` = total(model) / total(reference) over both orders; None when no review
    parsed (or the reference total is 0).
    """
    tot: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    groups: dict[str, list[float]] = {g: [0.0, 0.0, 0, 0] for g in GROUPS}
    for r in reviews:
        for t in (tot[r["category"]], tot["all"], groups[group_of(r["category"])]):
            if r["model_score"] is None:
                t[3] += 1
            else:
                t[0] += r["model_score"]
                t[1] += r["reference_score"]
                t[2] += 1

    def summary(t: list[float]) -> dict:
        n = int(t[2] + t[3])
        return {
            "model_total": t[0],
            "reference_total": t[1],
            "parsed": int(t[2]),
            "unparsed": int(t[3]),
            "parse_rate": t[2] / n if n else None,
            "relative": t[0] / t[1] if t[1] else None,
        }

    result = summary(tot.pop("all", [0.0, 0.0, 0, 0]))
    result["per_group"] = {g: summary(v) for g, v in groups.items() if v[2] + v[3]}
    result["per_category"] = {k: summary(v) for k, v in sorted(tot.items())}
    return result


def pct(x: float | None) -> str:
    """Return a ratio as a percentage with one decimal, or n/a."""
    return "n/a" if x is None else f"{100 * x:.1f}%"


def table(metrics: dict) -> str:
    """Return a markdown table of the relative score (or, for a pairwise judge, the win
    rate), overall and per category."""

    if metrics.get("judge_kind") == "pairwise":
        rows = [
            "| category | win rate | wins | losses | ties | invalid |",
            "|---|---|---|---|---|---|",
        ]
        groups = [(f"**{g}** (prompt)", m) for g, m in metrics.get("per_group", {}).items()]
        for name, m in [*metrics["per_category"].items(), *groups, ("all", metrics)]:
            rows.append(
                f"| {name} | {pct(m['win_rate'])} | {m['wins']} | {m['losses']} | "
                f"{m['ties']} | {m['invalid']} |"
            )
        return "\n".join(rows)

    rows = [
        "| category | relative | model | reference | parsed | unparsed |",
        "|---|---|---|---|---|---|",
    ]
    groups = [(f"**{g}** (prompt)", m) for g, m in metrics.get("per_group", {}).items()]
    for name, m in [*metrics["per_category"].items(), *groups, ("all", metrics)]:
        rows.append(
            f"| {name} | {pct(m['relative'])} | {m['model_total']:g} | "
            f"{m['reference_total']:g} | {m['parsed']} | {m['unparsed']} |"
        )
    return "\n".join(rows)
