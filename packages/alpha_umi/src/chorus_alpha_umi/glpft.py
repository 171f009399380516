"""GLPFT: stage 1 fine-tunes a backbone on every role; stage 2 fine-tunes each role from it.

A GLPFT recipe has ``common`` training keys and one ``stages.<stage>`` block per stage; the
training itself is :func:`chorus_shared.training.train` (weighted loss on the target only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chorus_alpha_umi.recipes import read_recipe_file

STAGES = ("backbone", "planner", "caller", "summarizer")


def stage_recipe(recipe: str, stage: str, **overrides: Any) -> dict[str, Any]:
    """Return the training-recipe mapping of ``stage`` (common keys, stage keys, overrides).

    Raises ValueError when a role stage has no model (it must start from the backbone).
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose from {STAGES}")
    data = read_recipe_file(recipe)
    stages = data.get("stages") or {}
    merged = {**(data.get("common") or {}), **(stages.get(stage) or {})}
    merged.update({k: v for k, v in overrides.items() if v is not None})
    if "model" not in merged:
        raise ValueError(
            f"stage {stage} starts from the backbone: pass --model hf:<backbone run>/model"
        )
    return merged


def read_stage_records(
    data_dir: str | Path, stage: str, *, raw_text: bool = False
) -> list[dict[str, Any]]:
    """Return the training records of ``stage`` from a preprocess folder: ``{id, messages}``
    (chat models), or with ``raw_text`` ``{id, segments, add_eos}`` (the original's raw
    "system: " text, for base models without a chat template).

    A line that is not JSON or lacks a key is one ValueError naming the file, line and key.
    """
    path = Path(data_dir) / f"{stage}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}; build it with `chorus-alpha-umi preprocess`")
    keys = ("segments", "add_eos") if raw_text else ("messages",)
    records = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object")
        for key in ("id", *keys):
            if key not in row:
                raise ValueError(
                    f"{path}:{lineno}: no {key!r} key; rebuild the folder with "
                    "`chorus-alpha-umi preprocess`"
                )
        records.append({"id": row["id"], **{k: row[k] for k in keys}})
    if not records:
        raise ValueError(f"{path} holds no records")
    return records
