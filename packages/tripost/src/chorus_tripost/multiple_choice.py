"""The multiple-choice tasks: date understanding and logical deduction (LLM-made rationales).

Their verifier and improver are LLMs, as in the paper. The logical-deduction raw file of the
original is missing from the data; :func:`rebuild_logical_deduction` rebuilds it from
BIG-Bench's 3/5/7-object task files (see its docstring for how).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = [
    "LD_HEADER",
    "read_date_understanding",
    "read_logical_deduction",
    "rebuild_logical_deduction",
]

_LETTERS_MC = "ABCDEFG"
_DATE_RAW = "date_understanding_codex_rationales_cleaned.jsonl"
# The original's training and validation files (``train_world_dset`` of its README commands).
_DATE_FILES = {
    "train": "training/date_understanding/date_understanding_world_rationale_1-2.jsonl",
    "dev": "validation/date_understanding/date_understanding_baseline_rationale_1-2_val.jsonl",
}
_LD_SIZES = {"three": 3, "five": 5, "seven": 7}
_LD_TRAIN = "training/logical_deduction/logical_deduction_baseline_rationale_3-5.jsonl"
_LD_VAL = "validation/logical_deduction/logical_deduction_baseline_rationale_3-5_val.jsonl"
# The header the TriPosT logical-deduction rationales open with (after "Let's think step by
# step."); we keep it as the rationale's first, unnumbered line.
LD_HEADER = 'Let "??" represents 0 or more objects, and "?" represents exactly 1 object.'
_STEP_LINE = re.compile(r"^\(\d+\)", re.M)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mc_item(task: str, rid: str, question: str, choices: str, rationale: str | None,
             answer: str, meta: dict) -> dict:  # fmt: skip
    letters = "".join(re.findall(r"^\(([A-Z])\)", choices, re.M))
    if answer not in letters:
        raise ValueError(f"{rid}: answer {answer!r} is not one of the options {letters!r}")
    return {
        "id": rid,
        "task": task,
        "question": f"{question.strip().removeprefix('Q:').strip()}\nOptions:\n{choices}",
        "rationale": rationale,
        "answer": answer,
        "choices": letters,
        "meta": meta,
    }


def read_date_understanding(root: Path, split: str) -> list[dict]:
    """Return the date-understanding items of ``split``: ``train`` (191) and ``dev`` (20) from
    the original's training and validation files, ``test`` (77) the raw file's
    ``new_split == validation`` rows (Codex-made, cleaned rationales), as the original's
    evaluator reads them.

    ``meta["n_steps"]`` counts the rationale's numbered steps (``(k)`` at a line start): the
    paper's seen split is 1-2 steps, unseen 3 or more.
    """
    if split in _DATE_FILES:
        path = root if root.is_file() else root / "tripost" / _DATE_FILES[split]
        rows = [
            {**r["meta_data"], "correct_choice": r["meta_data"]["answer"]} for r in _jsonl(path)
        ]
    else:
        path = root if root.is_file() else root / "tripost" / "raw" / _DATE_RAW
        rows = [r for r in _jsonl(path) if r.get("meta_data", {}).get("new_split") == "validation"]
    out = []
    for line_no, raw in enumerate(rows):
        meta = dict(raw.get("meta_data", {}))
        meta["n_steps"] = len(_STEP_LINE.findall(raw["rationale"]))
        out.append(
            _mc_item(
                "date_understanding",
                f"date_understanding-{split}-{line_no}",
                raw["question"],
                raw["formatted_choices"],
                raw["rationale"],
                raw["correct_choice"],
                meta,
            )
        )
    return out


def _ld_key(question: str, choices: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    # The paragraph without the task preface, and the option texts; BIG-Bench spells
    # "motorcyle", the TriPosT data (and BBH) "motorcycle".
    paragraph = re.sub(r"^The following paragraphs.*?within each paragraph\.\s*", "",
                       question.strip())  # fmt: skip
    return paragraph.replace("motorcyle", "motorcycle"), tuple(
        c.replace("motorcyle", "motorcycle") for c in choices
    )


def _options(formatted: str) -> tuple[str, ...]:
    return tuple(re.sub(r"^\([A-Z]\)\s*", "", line) for line in formatted.splitlines())


def rebuild_logical_deduction(root: Path) -> list[dict]:
    """Return the rebuilt rows of TriPosT's missing logical-deduction raw file, in that file's
    shape (``question``, ``formatted_choices``, ``correct_choice``, ``rationale`` or None,
    ``meta_data`` {split, new_split, idx, n_objects, source}).

    How: every example of BIG-Bench's ``logical_deduction/{three,five,seven}_objects`` task
    files (300 + 500 + 700; one paragraph is asked 3, 5 or 7 questions, one per position) becomes
    a row: question = the task preface + the paragraph ("motorcyle" spelled "motorcycle", as in
    the TriPosT data), options lettered (A), (B), ... in the file's order, correct choice = the
    option scored 1. Rows whose paragraph and options match a record of TriPosT's
    ``training/logical_deduction/*_baseline_rationale_3-5.jsonl`` (360, all matched) take its
    Codex-made rationale and are ``train``; the 40 of the TriPosT validation file are
    ``dev`` (the original's validation set during training). Our ``test`` split holds the rows
    whose paragraph appears in neither file: a training rationale derives the full order of its
    paragraph, so another question on the same paragraph would be answered from memory. That
    leaves 12 three-object, 40 five-object (seen) and 700 seven-object (unseen) test rows; the
    348 other 3/5-object rows (a paragraph in common with train or dev) are ``unused``.
    """
    bigbench = root / "bigbench" / "logical_deduction"
    tripost = root / "tripost"
    labelled: dict[tuple, tuple[str, str, str]] = {}
    for split, rel in (("train", _LD_TRAIN), ("dev", _LD_VAL)):
        for rec in _jsonl(tripost / rel):
            meta = rec["meta_data"]
            key = _ld_key(meta["question"], _options(meta["formatted_choices"]))
            labelled[key] = (split, meta["rationale"], meta["answer"])
    used_paragraphs = {key[0] for key in labelled}
    rows, matched = [], 0
    for size, n in _LD_SIZES.items():
        task = json.loads((bigbench / f"{size}_objects" / "task.json").read_text())
        preface = " ".join(task["task_prefix"].split())
        for idx, ex in enumerate(task["examples"]):
            options = tuple(ex["target_scores"])
            key = _ld_key(ex["input"], options)
            right = [k for k, v in enumerate(ex["target_scores"].values()) if v == 1]
            if len(right) != 1:
                raise ValueError(f"logical_deduction {size}_objects example {idx}: not one answer")
            found = labelled.get(key)
            rationale: str | None = None
            if found is not None:
                matched += 1
                split, labelled_rationale, answer = found
                if answer != _LETTERS_MC[right[0]]:
                    raise ValueError(f"{size}_objects example {idx}: TriPosT answer {answer} "
                                     f"!= BIG-Bench {_LETTERS_MC[right[0]]}")  # fmt: skip
                rationale = f"{LD_HEADER}\n{labelled_rationale}"
            else:
                split = "unused" if key[0] in used_paragraphs else "test"
            rows.append(
                {
                    "question": f"Q: {preface} {key[0]}",
                    "formatted_choices": "\n".join(
                        f"({_LETTERS_MC[k]}) {o}" for k, o in enumerate(key[1])
                    ),
                    "correct_choice": _LETTERS_MC[right[0]],
                    "rationale": rationale,
                    "meta_data": {
                        "split": split,
                        "new_split": {"test": "validation"}.get(split, split),
                        "idx": f"{size}-{idx}",
                        "n_objects": n,
                        "source": f"bigbench/logical_deduction/{size}_objects/task.json",
                    },
                }
            )
    if matched != len(labelled):
        raise ValueError(
            f"logical_deduction: {len(labelled) - matched} TriPosT records match no BIG-Bench "
            "example; the data folder is not the one this rebuild was written for"
        )
    return rows


def read_logical_deduction(root: Path, split: str) -> list[dict]:
    """Return the logical-deduction items of ``split`` (train 360 / test 752) from the
    rebuilt raw file (:func:`rebuild_logical_deduction`)."""
    # A file: a rebuilt raw file written earlier (the same rows).
    rows = _jsonl(root) if root.is_file() else rebuild_logical_deduction(root)
    return [
        _mc_item(
            "logical_deduction",
            f"logical_deduction-{split}-{row['meta_data']['idx']}",
            row["question"],
            row["formatted_choices"],
            row["rationale"],
            row["correct_choice"],
            row["meta_data"],
        )
        for row in rows
        if row["meta_data"]["split"] == split
    ]
