"""Instruction and evaluation sets, registered with ``chorus_shared.data`` (local first)."""

from __future__ import annotations

import json
from pathlib import Path

from chorus_shared.data import load_dataset_records, read_data_text, register_dataset


def _jsonl(path: Path, root: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    rows = []
    # Read through chorus_shared.data so the file is fingerprinted in the run's config.
    for n, line in enumerate(read_data_text(path, root).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
            if not isinstance(rows[-1], dict):
                raise ValueError(f"{path}:{n}: expected a JSON object")
    return rows


def _need(row: dict, keys: tuple[str, ...], path: Path, n: int) -> dict:
    """Returns ``row`` when it has every key, else raises ValueError naming file, line, key."""
    for key in keys:
        if key not in row:
            raise ValueError(f"{path}:{n}: no {key!r} (each line needs {', '.join(keys)})")
    return row


def _base(root: Path, name: str) -> Path:
    return root if root.name == name else root / name


def _read_vicuna80(root: Path, split: str) -> list[dict]:
    path = root if root.is_file() else _base(root, "vicuna80") / "question.jsonl"
    rows = [
        _need(r, ("question_id", "text", "category"), path, n)
        for n, r in enumerate(_jsonl(path, root), 1)
    ]
    return [
        {
            "id": f"vicuna80-{r['question_id']}",
            "question_id": r["question_id"],
            "instruction": r["text"],
            "input": "",
            "category": r["category"],
        }
        for r in rows
    ]


def _read_vicuna80_judge(root: Path, split: str) -> list[dict]:
    base = _base(root, "vicuna80")
    keys = ("prompt_id", "system_prompt", "prompt_template", "defaults")
    prompts = {
        p["prompt_id"]: _need(p, keys, base / "prompt.jsonl", n)
        for n, p in enumerate(_jsonl(base / "prompt.jsonl", root), 1)
    }
    out = []
    for n, r in enumerate(_jsonl(base / "reviewer.jsonl", root), 1):
        _need(r, ("prompt_id", "category"), base / "reviewer.jsonl", n)
        if r["prompt_id"] not in prompts:
            where = base / "reviewer.jsonl"
            raise ValueError(f"{where}:{n}: prompt_id {r['prompt_id']!r} is not in prompt.jsonl")
        p = prompts[r["prompt_id"]]
        out.append(
            {
                "id": f"judge-{r['category']}",
                "category": r["category"],
                "system": p["system_prompt"],
                "template": p["prompt_template"],
                "prompt": p["defaults"]["prompt"],
            }
        )
    return out


def _read_mt_bench(root: Path, split: str) -> list[dict]:
    path = _base(root, "mt_bench") / "mt_bench" / "question.jsonl"
    rows = [
        _need(r, ("question_id", "turns", "category"), path, n)
        for n, r in enumerate(_jsonl(path, root), 1)
    ]
    # First turns only, as SelFee's evaluation is single-turn.
    return [
        {
            "id": f"mt_bench-{r['question_id']}",
            "question_id": r["question_id"],
            "instruction": r["turns"][0],
            "input": "",
            "category": r["category"],
        }
        for r in rows
    ]


def _read_gsm8k_instructions(root: Path, split: str) -> list[dict]:
    return [
        {
            "id": r["id"],
            "instruction": r["question"],
            "input": "",
            "reference": r.get("answer", ""),
            "category": "math",
        }
        for r in load_dataset_records("gsm8k", split, path=root)
    ]


register_dataset("vicuna80", _read_vicuna80, splits=("test",))
register_dataset("vicuna80-judge", _read_vicuna80_judge, splits=("test",))
register_dataset("mt_bench", _read_mt_bench, splits=("test",))
register_dataset("selfee-gsm8k", _read_gsm8k_instructions, splits=("train", "test"))

INSTRUCTION_SETS = ("vicuna80", "mt_bench", "selfee-gsm8k")


def load_instructions(name: str, split: str = "test", data_dir: str | None = None) -> list[dict]:
    """Return ``{id, instruction, input, category[, reference]}`` items of a registered set."""
    if name not in INSTRUCTION_SETS:
        raise ValueError(f"unknown instruction set {name!r}; choose from {INSTRUCTION_SETS}")
    return load_dataset_records(name, split, path=data_dir)
