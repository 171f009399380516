"""Evaluation: accuracy on the seen / unseen splits, with and without test-time self-improvement.

A TriPosT-trained model writes an attempt, then ``Feedback: ...`` on it and, when it finds an
error, ``Updated Answer: ...``. "Without self-improvement" grades the first attempt, "with" the
last answer. Both come from the same greedy generation (the attempt is its prefix), so one
generation gives both numbers. When the model stops after an update without judging it, it is
prompted again with that update as its answer, up to ``rounds`` updates in all.

Few-shot baselines prompt any ChatModel with ground-truth demonstrations; "+ self-improvement"
then lets the same model give feedback and improve (LLM verifier and improver = itself).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from typing import TypedDict

from chorus_shared.models.base import ChatModel, FinishReason, Message, SamplingParams
from chorus_tripost import loop, tasks

__all__ = [
    "accuracy_table",
    "fewshot_demos",
    "fewshot_generate",
    "final_answer",
    "is_correct",
    "parse_trajectory",
    "self_improve_generate",
    "summarize",
]

_ANSWER = re.compile(r"\(Final response\)\s*So the answer is:?\s*(.+)")
_MARKER = re.compile(r"(\n?Feedback:|\n?Updated Answer:(?: Let's think step by step\.)?)")


class Attempts(TypedDict):
    """One item's generation: the first answer then each update, the feedback sections, and
    the finish reason of the last generation call."""

    answers: list[str]
    feedback: list[str]
    finish_reason: FinishReason


def _norm(text: str) -> str:
    return " ".join(text.strip().rstrip(".").split())


def final_answer(rationale: str) -> str | None:
    """Return the answer stated in the last ``(Final response) So the answer is ...`` line, or
    None when there is none (an unreadable answer is graded wrong, and counted)."""
    found = _ANSWER.findall(rationale)
    return _norm(found[-1]) if found else None


def is_correct(item: dict, rationale: str) -> bool:
    """Return True when the rationale's final answer equals the item's answer (multiple
    choice: the option letter, read by ``chorus_shared.grading.extract_choice``)."""
    got = tasks.answer_of(item, rationale)
    return got is not None and got == _norm(item["answer"])


def parse_trajectory(text: str) -> tuple[list[str], list[str]]:
    """Split a generation into ``(answers, feedback)``: the first answer, then each
    ``Feedback:`` section and ``Updated Answer:`` section in order."""
    chunks = _MARKER.split(text)
    answers = [chunks[0].strip()]
    feedback: list[str] = []
    for marker, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
        (feedback if "Feedback" in marker else answers).append(chunk.strip())
    return answers, feedback


def self_improve_generate(
    model: loop.RawModel,
    items: list[dict],
    *,
    max_new_tokens: int,
    rounds: int,
) -> list[Attempts]:
    """Return one result per item: ``answers`` (first attempt, then updates), ``feedback``,
    ``finish_reason``. Each round is one batched ``complete`` call over the open items."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    states: list[Attempts] = [
        {"answers": [], "feedback": [], "finish_reason": "stop"} for _ in items
    ]
    open_ = list(range(len(items)))
    for round_ in range(rounds + 1):
        if not open_:
            break
        prompts = [
            loop.attempt_prompt(items[i]) + ([states[i]["answers"][-1]] if round_ else [])
            for i in open_
        ]
        outs = model.complete(prompts, params)
        still = []
        for i, out in zip(open_, outs, strict=True):
            st = states[i]
            prefix = st["answers"].pop() if round_ else ""
            answers, feedback = parse_trajectory(prefix + out.text)
            st["answers"] += answers
            st["feedback"] += feedback
            st["finish_reason"] = out.finish_reason
            # An update with no verdict after it: ask the model to judge (and maybe improve) it.
            if (
                len(st["answers"]) > len(st["feedback"])
                and len(st["answers"]) > 1
                and out.finish_reason == "stop"
            ):
                still.append(i)
        open_ = [i for i in still if len(states[i]["answers"]) - 1 < rounds]
    for st in states:
        del st["answers"][rounds + 1 :]  # never grade more updates than allowed
    return states


def fewshot_demos(train_items: list[dict], k: int, *, seed: int = 0) -> list[dict]:
    """Return ``k`` training items (with ground-truth rationales) to show as demonstrations."""
    if k > len(train_items):
        raise ValueError(f"asked for {k} demonstrations, only {len(train_items)} training items")
    return random.Random(seed).sample(train_items, k)


FEWSHOT_SYSTEM = (
    "Solve the problem step by step in the exact numbered format of the examples, and end "
    'with the line "(Final response) So the answer is ...".'
)


def _fewshot_conversation(item: dict, demos: list[dict]) -> list[Message]:
    msgs: list[Message] = [{"role": "system", "content": FEWSHOT_SYSTEM}]
    for d in demos:
        msgs.append({"role": "user", "content": "".join(loop.attempt_prompt(d)).strip()})
        msgs.append({"role": "assistant", "content": d["rationale"]})
    msgs.append({"role": "user", "content": "".join(loop.attempt_prompt(item)).strip()})
    return msgs


def fewshot_generate(
    model: ChatModel,
    items: list[dict],
    demos: list[dict],
    *,
    max_new_tokens: int,
    rounds: int = 0,
    seed: int = 0,
) -> list[Attempts]:
    """Return one result per item (as :func:`self_improve_generate`) from few-shot prompting
    of any ChatModel; with ``rounds`` > 0 the same model verifies and improves its answer (its
    demonstrations: planted errors on the demo items with their feedback and repairs, see
    ``helpers.helper_demos``)."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    outs = model.chat([_fewshot_conversation(it, demos) for it in items], params)
    states: list[Attempts] = [
        {
            "answers": [loop.first_answer(_drop_header(o.text))],
            "feedback": [],
            "finish_reason": o.finish_reason,
        }
        for o in outs
    ]
    if rounds <= 0:
        return states
    from chorus_tripost.helpers import llm_helpers

    # The model is its own verifier and improver (no gold answer check at test time).
    verifier, improver = llm_helpers(
        model, model, demos, seed=seed, check_answers=False,
        max_new_tokens=max_new_tokens,
    )  # fmt: skip
    open_ = list(range(len(items)))
    for _ in range(rounds):
        if not open_:
            break
        vs = verifier([items[i] for i in open_], [states[i]["answers"][-1] for i in open_])
        wrong = []
        for i, v in zip(open_, vs, strict=True):
            states[i]["feedback"].append(v.feedback)
            if not v.correct:
                wrong.append((i, v))
        if not wrong:
            break
        texts = improver(
            [items[i] for i, _ in wrong], [states[i]["answers"][-1] for i, _ in wrong],
            [v for _, v in wrong],
        )  # fmt: skip
        for (i, _), text in zip(wrong, texts, strict=True):
            states[i]["answers"].append(_drop_header(text))
        open_ = [i for i, _ in wrong]
    return states


def _drop_header(text: str) -> str:
    text = text.strip()
    marker = "Let's think step by step."
    return text.split(marker, 1)[1].strip() if marker in text[:80] else text


def summarize(results: Iterable[dict]) -> dict:
    """Return accuracy (mean, s.e., n) per split (seen, unseen, all) for the first answer
    (``no_si``) and the last answer (``si``), plus how many answers had no readable result.

    s.e. = sqrt(p (1 - p) / n), the standard error of a mean of 0/1 scores (ddof = 0).
    """
    results = list(results)
    out: dict = {}
    for split in ("seen", "unseen", "all"):
        rows = [r for r in results if split == "all" or r["eval_split"] == split]
        n = len(rows)
        entry: dict = {"n": n}
        for key, field_ in (("no_si", "correct_first"), ("si", "correct_final")):
            p = sum(bool(r[field_]) for r in rows) / n if n else float("nan")
            entry[key] = {"mean": p, "se": math.sqrt(p * (1 - p) / n) if n else float("nan")}
        entry["unreadable_first"] = sum(r["answer_first"] is None for r in rows)
        entry["unreadable_final"] = sum(r["answer_final"] is None for r in rows)
        entry["improved_at_test_time"] = sum(r["n_updates"] > 0 for r in rows)
        out[split] = entry
    return out


def grade(item: dict, state: Attempts, split: str) -> dict:
    """Return the stored evaluation record of one item."""
    answers = state["answers"]
    return {
        "id": item["id"],
        "eval_split": split,
        "gold": item["answer"],
        "answer_first": tasks.answer_of(item, answers[0]),
        "answer_final": tasks.answer_of(item, answers[-1]),
        "correct_first": is_correct(item, answers[0]),
        "correct_final": is_correct(item, answers[-1]),
        "n_updates": len(answers) - 1,
        "finish_reason": state["finish_reason"],
        "answers": answers,
        "feedback": state["feedback"],
    }


def accuracy_table(rows: list[tuple[str, dict]]) -> tuple[list[str], list[list[str]]]:
    """Return (headers, rows) of a markdown table from ``(label, summary)`` pairs."""

    def cell(entry: dict, key: str) -> str:
        a = entry[key]
        return f"{100 * a['mean']:.1f} ± {100 * a['se']:.1f}" if entry["n"] else "—"

    headers = [
        "method",
        "seen (no SI)",
        "seen (SI)",
        "unseen (no SI)",
        "unseen (SI)",
        "n seen/unseen",
    ]
    body = [
        [
            label,
            cell(s["seen"], "no_si"),
            cell(s["seen"], "si"),
            cell(s["unseen"], "no_si"),
            cell(s["unseen"], "si"),
            f"{s['seen']['n']}/{s['unseen']['n']}",
        ]
        for label, s in rows
    ]
    return headers, body
