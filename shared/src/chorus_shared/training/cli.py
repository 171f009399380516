"""``python -m chorus_shared.training``: train any recipe on a JSONL file of records.

The generic entry point, for data a package has already written as records (TRAINING_API.md)
and for launchers (one process per GPU)::

    python -m chorus_shared.training --recipe r.yaml --data train.jsonl --out runs/x
    torchrun --nproc_per_node 8 -m chorus_shared.training --recipe r.yaml --data ... --out ...
    accelerate launch --config_file fsdp.yaml -m chorus_shared.training --recipe ... --out ...
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """Returns the JSON objects of a JSONL file; a bad line raises ``ValueError`` naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist")
    records = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not a JSON line ({err.msg})") from err
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: a record must be a JSON object")
            records.append(record)
    return records


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of ``python -m chorus_shared.training``."""
    parser = argparse.ArgumentParser(
        prog="python -m chorus_shared.training",
        description="Fine-tune a causal LM on weighted records (segments or chat messages).",
    )
    parser.add_argument("--recipe", required=True, help="training recipe YAML")
    parser.add_argument("--data", required=True, type=Path, help="records, one JSON per line")
    parser.add_argument("--out", required=True, type=Path, help="run folder (resumed if present)")
    parser.add_argument("--model", default=None, help="override the recipe's model spec")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--report-to", choices=("none", "wandb", "tensorboard"), default=None)
    parser.add_argument("--deepspeed", default=None, help="zero2 | zero3 | zero3_offload | path")
    parser.add_argument(
        "--fresh", action="store_true", help="start over instead of resuming (deletes the run)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one training; returns the process exit status."""
    from chorus_shared.training.recipe import load_train_recipe
    from chorus_shared.training.trainer import process_rank, train

    args = build_parser().parse_args(argv)
    try:
        recipe = load_train_recipe(
            args.recipe,
            model=args.model,
            max_steps=args.max_steps,
            report_to=args.report_to,
            deepspeed=args.deepspeed,
        )
        result = train(recipe, read_records(args.data), args.out, resume=not args.fresh)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if process_rank() == 0:
        print(f"trained {result.metrics['global_step']} steps; model in {result.model_dir}")
    return 0
