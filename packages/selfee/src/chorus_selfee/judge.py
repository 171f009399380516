"""Pairwise judging, both orders, with the Vicuna category prompts (general, coding, math).

Every question is judged twice: (model, reference) and (reference, model), so a judge that
prefers a position cancels out. Reviews are stored as written; scores are parsed when the run
is evaluated, as the original's ``parse_score`` (evaluation/gpt4_automatic_evaluation.py):
the first line when it holds exactly two numbers, else the tuple on the last line, else the
review is flagged (the original asks for a manual fix) and both orders of its question are
left out and counted, never guessed. Relative score = total(model) / total(reference).

Offline, any pairwise scorer that implements ``chorus_shared.judges.PairwiseJudge`` (e.g.
packages/blender's PairRanker as ``pairrm:<folder>``) can judge instead: it gives one logit
per question (both orders averaged by the protocol's contract), read as a win, loss or tie;
the result is a win rate, not a 1-10 relative score, and is reported as such.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from chorus_selfee.records import PreferenceRecord, ReviewRecord
from chorus_shared.engine import errored_record, first_error
from chorus_shared.judges import PairwiseJudge
from chorus_shared.models import ChatModel, Completion, SamplingParams

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
    """Return ``(score_1, score_2)`` read from a review as the original's ``parse_score``, or
    None when it would be flagged for a manual fix.

    The first line (commas read as spaces) when it splits on single spaces into exactly two
    parts; otherwise the last line's last ``( ... )`` (or the whole last line) split on ", "
    into exactly two parts. Both parts must be numbers, and (our check, the prompts' scale)
    both in 1..10: a pair quoted from the question, a 0 or an 85 is never read as scores.
    """
    lines = review.split("\n")
    first = lines[0].replace(",", " ").split(" ")
    if len(first) == 2:
        pair = first
    else:
        pair = lines[-1].split("(")[-1].split(")")[0].split(", ")
        if len(pair) != 2:
            return None
    try:
        a, b = float(pair[0]), float(pair[1])
    except ValueError:
        return None
    if not (1 <= a <= 10 and 1 <= b <= 10):  # also refuses nan and inf
        return None
    return a, b


def judge_prompt(prompts: dict[str, dict], category: str, question: str, a1: str, a2: str) -> list:
    """Return the judge conversation for one ordered pair (Assistant 1 = ``a1``)."""
    p = prompts[PROMPT_FOR.get(category, "general")]
    content = p["template"].format(question=question, answer_1=a1, answer_2=a2, prompt=p["prompt"])
    return [{"role": "system", "content": p["system"]}, {"role": "user", "content": content}]


def judge_reviews(
    judge: ChatModel,
    prompts: dict[str, dict],
    items: Sequence[dict],
    params: SamplingParams,
    chooser: Any = None,
) -> list[dict]:
    """Return one record per evaluate item (a question in one order), from one batched
    ``chat`` call: a :class:`ReviewRecord` as JSON, or an errored record when the judge's
    reply failed (never parsed, retried on resume).

    An item holds ``id, question, category, instruction, order, model_answer,
    reference_answer``; ``order`` "model-first" puts the model as Assistant 1. With a
    ``chooser`` (``chorus_selfee.constrained``), the judge does not write free text: its
    review is the first line "a b" it picks among ``SCORE_LINES``.
    """
    convs = []
    for it in items:
        pair = (it["model_answer"], it["reference_answer"])
        a1, a2 = pair if it["order"] == "model-first" else pair[::-1]
        convs.append(judge_prompt(prompts, it["category"], it["instruction"], a1, a2))
    if chooser is None:
        out = judge.chat(convs, params)
    else:
        picks = chooser.choose(convs, [""] * len(convs), SCORE_LINES)
        out = [Completion(text=SCORE_LINES[k], finish_reason="stop") for k in picks]
    records = []
    for it, c in zip(items, out, strict=True):
        reason = first_error([c])
        if reason is not None:
            records.append(errored_record(it["id"], reason, question=it["question"]))
            continue
        records.append(
            ReviewRecord(
                id=it["id"],
                question=it["question"],
                category=it["category"],
                order=it["order"],
                review=c.text,
                finish_reason=c.finish_reason,
            ).to_json()
        )
    return records


def judge_likelihood(chooser: Any, prompts: dict[str, dict], items: Sequence[dict]) -> list[dict]:
    """Return one :class:`PreferenceRecord` (as JSON) per item (a question): the judge reads
    the category's reviewer prompt asking which assistant is better, in both orders; per order
    the margin is log P(model's number) - log P(reference's number) of its next token after
    "Assistant ", and ``logit`` is the mean of the two margins (position bias cancels)."""
    convs = []
    for it in items:
        m, r = it["model_answer"], it["reference_answer"]
        group = group_of(it["category"])
        for a1, a2 in ((m, r), (r, m)):
            p = dict(prompts[group], prompt=PAIRWISE_REQUEST)
            convs.append(judge_prompt({group: p}, it["category"], it["instruction"], a1, a2))
    lps = chooser.token_logprobs(convs, ["Assistant "] * len(convs), ["1", "2"])
    records = []
    for n, it in enumerate(items):
        (mf1, mf2), (rf1, rf2) = lps[2 * n], lps[2 * n + 1]
        margins = [mf1 - mf2, rf2 - rf1]  # model is Assistant 1, then Assistant 2
        x = sum(margins) / 2
        valid = math.isfinite(x)
        records.append(
            PreferenceRecord(
                id=it["id"],
                question=it["question"],
                category=it["category"],
                logit=x if valid else None,
                margins=margins if valid else None,
            ).to_json()
        )
    return records


def judge_pairwise(judge: PairwiseJudge, items: Sequence[dict]) -> list[dict]:
    """Return one :class:`PreferenceRecord` (as JSON) per item from one batched ``compare``
    call of a pairwise judge; a non-finite logit is stored as None (invalid, counted)."""
    prompts = [it["instruction"] for it in items]
    logits = judge.compare(
        prompts,
        [it["model_answer"] for it in items],
        [it["reference_answer"] for it in items],
    )
    if len(logits) != len(items):
        raise ValueError(f"pairwise judge returned {len(logits)} logits for {len(items)} pairs")
    records = []
    for it, logit in zip(items, logits, strict=True):
        x = float(logit)
        records.append(
            PreferenceRecord(
                id=it["id"],
                question=it["question"],
                category=it["category"],
                logit=x if math.isfinite(x) else None,
            ).to_json()
        )
    return records


def aggregate_pairwise(records: Sequence[PreferenceRecord]) -> dict:
    """Return ``{judge_kind, win_rate, wins, losses, ties, invalid, per_group,
    per_category}``; ``win_rate`` = (wins + ties / 2) / valid comparisons (None when none)."""
    tot: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    groups: dict[str, list[int]] = {g: [0, 0, 0, 0] for g in GROUPS}
    slot = {"model": 0, "reference": 1, "tie": 2, None: 3}
    for r in records:
        for t in (tot[r.category], tot["all"], groups[group_of(r.category)]):
            t[slot[r.winner]] += 1

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


def aggregate(reviews: Sequence[ReviewRecord]) -> dict:
    """Return ``{relative, model_total, reference_total, parsed, unparsed, flagged_questions,
    flagged_reviews, parse_rate, per_group, per_category}`` from the stored reviews.

    Scores are parsed here (:func:`parse_scores`). A question counts only when both of its
    orders were reviewed and parsed: a review the original would flag for a manual fix leaves
    *both* orders of its question out of the totals (``unparsed`` counts them, and
    ``flagged_questions`` lists the questions), so the two positions stay balanced.
    ``relative`` = total(model) / total(reference) over both orders; None when nothing
    parsed (or the reference total is 0).
    """
    by_question: dict[str, dict[str, ReviewRecord]] = defaultdict(dict)
    for r in reviews:
        by_question[r.question][r.order] = r
    tot: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    groups: dict[str, list[float]] = {g: [0.0, 0.0, 0, 0] for g in GROUPS}
    flagged_questions: list[str] = []
    flagged_reviews = 0
    for question, orders in by_question.items():
        scores = {o: parse_scores(r.review) for o, r in orders.items()}
        flagged_reviews += sum(s is None for s in scores.values())
        category = next(iter(orders.values())).category
        keep = len(scores) == 2 and all(s is not None for s in scores.values())
        if not keep:
            flagged_questions.append(question)
        for t in (tot[category], tot["all"], groups[group_of(category)]):
            if not keep:
                t[3] += len(orders)
                continue
            mf, rf = scores["model-first"], scores["reference-first"]
            assert mf is not None and rf is not None
            t[0] += mf[0] + rf[1]
            t[1] += mf[1] + rf[0]
            t[2] += 2

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
    result["judged_questions"] = len(by_question) - len(flagged_questions)
    result["flagged_questions"] = sorted(flagged_questions)
    result["flagged_reviews"] = flagged_reviews
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
