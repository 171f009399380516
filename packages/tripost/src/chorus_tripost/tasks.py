"""The four TriPosT tasks: their local data, splits, prompt headers and answers.

Splits, as the original: ``train`` is the original's training file of each task
(``training/<task>/*_world_rationale_*.jsonl``: arithmetic 550 items of length 3-4 and depth 2,
word sorting 433 lists of up to 7 words, date understanding 191, logical deduction 360): only
the "seen" difficulty, so the unseen test items measure generalisation. ``dev`` is the
original's validation file (50 / 40 / 20 / 40) and ``test`` the raw file's ``new_split ==
validation`` rows the original's evaluator reads (arithmetic 360, word sorting 379, date 77;
logical deduction: rebuilt, see :mod:`chorus_tripost.multiple_choice`).
All data is read through ``chorus_shared.data``'s loader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from chorus_shared.data import load_dataset_records, register_dataset
from chorus_shared.grading import extract_choice
from chorus_tripost.arithmetic import (
    arithmetic_rationale,
    decompose,
    format_rationale,
    generate_arithmetic,
)
from chorus_tripost.multiple_choice import (
    LD_HEADER,
    read_date_understanding,
    read_logical_deduction,
    rebuild_logical_deduction,
)
from chorus_tripost.word_sort import format_labeled, word_sort_rationale, word_sort_words

__all__ = [
    "ARITHMETIC_INFO",
    "LD_HEADER",
    "MC_TASKS",
    "SCRIPTED_TASKS",
    "SPLITS",
    "TASKS",
    "answer_header",
    "answer_of",
    "answers_match",
    "arithmetic_rationale",
    "decompose",
    "format_labeled",
    "format_rationale",
    "generate_arithmetic",
    "load_items",
    "rebuild_logical_deduction",
    "seen_unseen",
    "word_sort_rationale",
    "word_sort_words",
]

SCRIPTED_TASKS = ("multistep_arithmetic", "word_sort")
# Multiple choice, LLM-made rationales, LLM verifier and improver (as in the paper).
MC_TASKS = ("date_understanding", "logical_deduction")
TASKS = SCRIPTED_TASKS + MC_TASKS
SPLITS = ("train", "dev", "test")

# The sentence the original puts after "Let's think step by step." for arithmetic, in every
# prompt and training text of the task (its data files carry it too).
ARITHMETIC_INFO = (
    "Recall that the order of operations in mathematics is as follows: (1) Parentheses, "
    "(2) exponents, (3) multiplication and division (from left to right), (4) addition and "
    "multiplication (from left to right). So, remember to always compute the expressions "
    "inside parentheses or brackets first."
)


def answer_header(task: str, *, updated: bool = False) -> str:
    """Return the line that opens an answer (``\\nAnswer: Let's think step by step.\\n``, or
    ``\\nUpdated Answer: ...``), with arithmetic's order-of-operations sentence as the original."""
    info = f" {ARITHMETIC_INFO}" if task == "multistep_arithmetic" else ""
    return f"\n{'Updated Answer' if updated else 'Answer'}: Let's think step by step.{info}\n"


# ----------------------------------------------------------------------------- local data
_RAW = {
    "multistep_arithmetic": "multistep_arithmetic_scripted_rationales.jsonl",
    "word_sort": "word_sorting_scripted_rationales.jsonl",
}
_FILES = {
    "multistep_arithmetic": {
        "train": "training/multistep_arithmetic/"
        "multistep_arithmetic_world_rationale_l3-4d2-22.jsonl",
        "dev": "validation/multistep_arithmetic/"
        "multistep_arithmetic_baseline_rationale_l3-4d2-22_val.jsonl",
    },
    "word_sort": {
        "train": "training/word_sorting/word_sorting_world_rationale_1-7.jsonl",
        "dev": "validation/word_sorting/word_sorting_baseline_rationale_1-7_val.jsonl",
    },
}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _answer_text(answer: object) -> str:
    return " ".join(answer) if isinstance(answer, list) else str(answer)


def _reader(task: str) -> Callable[[Path, str], list[dict]]:
    def read(root: Path, split: str) -> list[dict]:
        if split in _FILES[task]:
            path = root if root.is_file() else root / "tripost" / _FILES[task][split]
            rows = [r["meta_data"] for r in _jsonl(path)]
        else:
            path = root if root.is_file() else root / "tripost" / "raw" / _RAW[task]
            rows = [
                {**r, "answer": r["correct_answer"]}
                for r in _jsonl(path)
                if r.get("meta_data", {}).get("new_split") == "validation"
            ]
        return [
            {
                "id": f"{task}-{split}-{line_no}",
                "task": task,
                "question": row["question"],
                "rationale": row["rationale"],
                "answer": _answer_text(row["answer"]),
                "meta": row.get("meta_data", {}),
            }
            for line_no, row in enumerate(rows)
        ]

    read.__qualname__ = f"read_tripost_{task}"
    return read


for _task in SCRIPTED_TASKS:
    register_dataset(f"tripost_{_task}", _reader(_task), splits=SPLITS, replace=True)
register_dataset("tripost_date_understanding", read_date_understanding, splits=SPLITS, replace=True)
register_dataset("tripost_logical_deduction", read_logical_deduction, splits=SPLITS, replace=True)


def load_items(task: str, split: str, *, path: str | None = None) -> list[dict]:
    """Return the items of a task's split (``train``, ``dev`` or ``test``) from the local data."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return load_dataset_records(f"tripost_{task}", split, path=path)


# ----------------------------------------------------------------------------- answers
_ANSWER = re.compile(r"\(Final response\)\s*So the answer is:?\s*(.+)")


def answer_of(item: dict, rationale: str) -> str | None:
    """Return the answer a rationale gives for ``item``, or None when it has none readable.

    Scripted tasks: the text after ``(Final response) So the answer is`` (last such line),
    whitespace-normalised, no final period. Multiple choice: the option letter of the last
    ``(X)`` on the final-response line (``chorus_shared.grading.extract_choice``, only the
    item's letters count).
    """
    if item.get("task") in MC_TASKS:
        lines = re.findall(r"\(Final response\)(.*)", rationale)
        return extract_choice(lines[-1], item["choices"]) if lines else None
    found = _ANSWER.findall(rationale)
    return " ".join(found[-1].strip().rstrip(".").split()) if found else None


def answers_match(item: dict, got: str | None) -> bool:
    """Return True when an extracted answer equals the item's gold answer.

    Arithmetic compares as numbers, as the original (``float(pred) == float(gold)``: ``-7.0``
    is ``-7``); an answer that is not a number is wrong. Other tasks compare the normalised text.
    """
    if got is None:
        return False
    gold = " ".join(str(item["answer"]).strip().rstrip(".").split())
    if item.get("task") == "multistep_arithmetic":
        try:
            return float(got) == float(gold)
        except ValueError:
            return False
    return got == gold


def seen_unseen(item: dict) -> str:
    """Return ``"seen"`` or ``"unseen"`` for an item, as the paper defines them.

    Arithmetic: seen = length 3-4 with depth 2 (at most two levels of groups); word sorting:
    seen = up to 7 words; date understanding: seen = 1-2 rationale steps; logical deduction:
    seen = 3 and 5 objects.
    """
    if item["task"] == "date_understanding":
        return "seen" if item["meta"]["n_steps"] <= 2 else "unseen"
    if item["task"] == "logical_deduction":
        return "seen" if item["meta"]["n_objects"] <= 5 else "unseen"
    if item["task"] == "multistep_arithmetic":
        meta = item["meta"]
        return "seen" if meta["length"] <= 4 and len(meta["depth_levels"]) <= 2 else "unseen"
    return "seen" if len(word_sort_words(item["question"])) <= 7 else "unseen"
