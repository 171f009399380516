"""The four tasks of the paper as data: how to load items, what to ask, how to read the answer.

A task is a small bundle of functions and prompt templates; the engine never special-cases a
task by name. The wording of every prompt is ours; the *format asked for* follows the paper
(a number at the end, ``\\boxed{}``, ``(X)``, bullet points).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chorus_shared.data import load_dataset_records
from chorus_shared.grading import (
    extract_choice,
    extract_gsm_answer,
    extract_last_number,
    numbers_equal,
    safe_eval_arithmetic,
)

Item = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """What the engine needs to know about one task."""

    name: str
    load: Callable[[int | None, int, str | Path | None], list[Item]]
    question_prompt: str  # format fields: the item's fields
    parse: Callable[[str], Any]  # reply text -> answer, or None when unparseable
    is_correct: Callable[[Any, Item], bool]
    default_seed: int = 0
    judged: bool = False  # graded by an LLM judge instead of an exact answer
    # Added to the debate turn of the last round only (the paper's biography "examine" turn).
    last_round_hint: str | None = None
    # reply text -> True when the reply declines to answer (that item stops debating, and the
    # reply is not scored); None for tasks where a reply cannot decline.
    declines: Callable[[str], bool] | None = None
    # Recorded in config.json: bump when the prompts, data or grading change what a run means.
    # 2: the paper's item sampling, anonymous agents, exact integers, biography protocol.
    version: int = 2

    def first_prompt(self, item: Item) -> str:
        """Return the round-1 user message for ``item``."""
        return self.question_prompt.format(**item)


def _take(records: list[Item], limit: int | None, seed: int) -> list[Item]:
    # Shuffle the whole split, then take a prefix: a smaller --limit is always a prefix of a
    # larger one, and random.Random(0) shuffles exactly like the paper's random.seed(0).
    records = list(records)
    random.Random(seed).shuffle(records)
    return records if limit is None else records[:limit]


# -- arithmetic ------------------------------------------------------------------------------


def load_arithmetic(limit: int | None, seed: int, data_dir: str | Path | None = None) -> list[Item]:
    """Return ``limit`` (default 100) generated ``a+b*c+d-e*f`` items with integers 0..29.

    The numbers come from NumPy's legacy generator seeded once (the paper: ``np.random.seed(0)``
    then ``randint(0, 30, size=6)`` per item, in order), so seed 0 gives the paper's items and a
    smaller ``limit`` is a prefix of a larger one.
    """
    rng = np.random.RandomState(seed)
    items = []
    for i in range(100 if limit is None else limit):
        a, b, c, d, e, f = (int(x) for x in rng.randint(0, 30, size=6))
        expression = f"{a}+{b}*{c}+{d}-{e}*{f}"
        items.append(
            {
                "id": f"arithmetic-{seed}-{i}",
                "question": expression,
                "target": safe_eval_arithmetic(expression),
            }
        )
    return items


ARITHMETIC = Task(
    name="arithmetic",
    load=load_arithmetic,
    question_prompt=(
        "Compute {question}. Work it out step by step, then write the final number as the "
        "last thing in your reply."
    ),
    parse=extract_last_number,
    is_correct=lambda answer, item: numbers_equal(answer, item["target"]),
)


# -- GSM8K -----------------------------------------------------------------------------------


def load_gsm(limit: int | None, seed: int, data_dir: str | Path | None = None) -> list[Item]:
    """Return GSM8K test items, shuffled with ``seed`` (the paper: seed 0, first 100)."""
    return _take(load_dataset_records("gsm8k", "test", path=data_dir), limit, seed)


GSM = Task(
    name="gsm",
    load=load_gsm,
    question_prompt=(
        "Solve this math word problem. Reason step by step, then give the final answer as a "
        "single number in the form \\boxed{{answer}} at the end.\n\nProblem: {question}"
    ),
    parse=extract_gsm_answer,
    is_correct=lambda answer, item: numbers_equal(answer, item["target"]),
)


# -- MMLU ------------------------------------------------------------------------------------


def sample_mmlu(records: list[Item], n: int, seed: int) -> list[Item]:
    """Return ``n`` draws as the paper samples: a subject uniformly, then a question in it.

    Draws are with replacement (a question can come twice; ``evaluate`` counts duplicates).
    Subjects are sorted by name and questions keep the data's order, so ``random.Random(seed)``
    makes the draws reproducible, and a smaller ``n`` is a prefix of a larger one.
    """
    by_subject: dict[str, list[Item]] = {}
    for record in records:
        by_subject.setdefault(record["subject"], []).append(record)
    subjects = sorted(by_subject)
    rng = random.Random(seed)
    draws = []
    for _ in range(n):
        questions = by_subject[rng.choice(subjects)]
        draws.append(questions[rng.randrange(len(questions))])
    return draws


def load_mmlu(limit: int | None, seed: int, data_dir: str | Path | None = None) -> list[Item]:
    """Return ``limit`` (default 100) MMLU test draws: uniform subject, then question.

    Each draw gets its own id (``<question id>#<draw>``) so a question drawn twice is two items.
    """
    records = load_dataset_records("mmlu", "test", path=data_dir)
    items = []
    for k, record in enumerate(sample_mmlu(records, 100 if limit is None else limit, seed)):
        a, b, c, d = record["choices"]
        items.append(
            {
                **record,
                "id": f"{record['id']}#{k}",
                "source_id": record["id"],
                "A": a,
                "B": b,
                "C": c,
                "D": d,
                "target": record["answer"],
            }
        )
    return items


MMLU = Task(
    name="mmlu",
    load=load_mmlu,
    question_prompt=(
        "Answer this multiple-choice question as accurately as you can.\n\n{question}\n"
        "(A) {A}\n(B) {B}\n(C) {C}\n(D) {D}\n\n"
        "Explain your reasoning, then end your reply with the letter of your choice in the "
        "form (X)."
    ),
    parse=extract_choice,
    is_correct=lambda answer, item: answer is not None and answer == item["target"],
)


# -- biographies -----------------------------------------------------------------------------


def load_biography(limit: int | None, seed: int, data_dir: str | Path | None = None) -> list[Item]:
    """Return people for the biography task: sorted, shuffled with ``seed`` (paper: 1), first 40."""
    records = sorted(
        load_dataset_records("biography", "test", path=data_dir), key=lambda r: r["id"]
    )
    return _take(records, 40 if limit is None else limit, seed)


def parse_biography(text: str) -> str | None:
    """Return every line of the biography that has text (bullets, numbered lines and prose
    alike, as the paper's judge sees them), None when the reply is empty."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines) or None


_DECLINE = re.compile(
    r"\b(?:(?:do not|don't|dont|cannot|can't|couldn't|could not|am not able to|unable to)"
    r"\s+(?:know|find|provide|recall|recognize|recognise|identify)"
    r"|not familiar|no (?:information|knowledge|record)|not aware of|sorry)\b",
    re.IGNORECASE,
)


def biography_declines(text: str) -> bool:
    """Return True for a one-line reply that declines ("I don't know this person").

    The paper does not score such a reply and stops debating that person. A reply with two or
    more lines is a biography, whatever it says.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) == 1 and _DECLINE.search(lines[0]) is not None


BIOGRAPHY = Task(
    name="biography",
    load=load_biography,
    # The paper's framing: the people are computer scientists (some names are ambiguous
    # without it). No "only confident facts" instruction: it would aim at yes / (yes + no).
    question_prompt=(
        "Write a biography of the computer scientist {person} as bullet points, one fact per "
        "line, covering their work, contributions and achievements."
    ),
    last_round_hint=(
        "Look closely at your own biography and at the other agents' biographies, then write "
        "your updated biography as bullet points, one fact per line."
    ),
    declines=biography_declines,
    parse=parse_biography,
    # Biographies are graded fact by fact by the judge (judge.py), never by exact match.
    is_correct=lambda answer, item: False,
    default_seed=1,
    judged=True,
)

TASKS: dict[str, Task] = {t.name: t for t in (ARITHMETIC, GSM, MMLU, BIOGRAPHY)}
ALIASES = {"math": "arithmetic", "gsm8k": "gsm", "bio": "biography", "biographies": "biography"}


def get_task(name: str) -> Task:
    """Return the task called ``name`` (aliases math, gsm8k, bio accepted)."""
    key = ALIASES.get(name, name)
    if key not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS[key]
