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
    # Recorded in config.json: bump when the prompts, data or grading change what a run means.
    version: int = 1

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
    """Return ``limit`` (default 100) generated ``a+b*c+d-e*f`` items with integers 0..29."""
    rng = random.Random(seed)
    items = []
    for i in range(100 if limit is None else limit):
        a, b, c, d, e, f = (rng.randint(0, 29) for _ in range(6))
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


def load_mmlu(limit: int | None, seed: int, data_dir: str | Path | None = None) -> list[Item]:
    """Return MMLU test questions from all 57 subjects, shuffled with ``seed``."""
    items = []
    for record in _take(load_dataset_records("mmlu", "test", path=data_dir), limit, seed):
        a, b, c, d = record["choices"]
        items.append({**record, "A": a, "B": b, "C": c, "D": d, "target": record["answer"]})
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
    """Return the biography's bullet lines (or the whole text), None when the reply is empty."""
    bullets = [ln.strip() for ln in text.splitlines() if re.match(r"\s*[-*•]\s+\S", ln)]
    body = "\n".join(bullets) if bullets else text.strip()
    return body or None


BIOGRAPHY = Task(
    name="biography",
    load=load_biography,
    question_prompt=(
        "Write a biography of {person} as a list of bullet points, one fact per line, "
        "each starting with '- '. Include only facts you are confident about."
    ),
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
