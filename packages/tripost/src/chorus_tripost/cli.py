"""``chorus-tripost``: generate task items, collect TriPosT training data.

Verbs: ``generate`` (items with ground-truth rationales, as JSONL), ``collect`` (one window of
the interactive loop: attempts of a model -> feedback -> improvements -> weighted training
records in a resumable run folder). ``train`` and ``evaluate`` are not wired yet.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.models import SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import RunDir
from chorus_tripost import loop, tasks
from chorus_tripost.recipes import CollectRecipe, available_recipes, load_recipe

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chorus-tripost", description=__doc__.splitlines()[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    gen = verbs.add_parser("generate", help="write task items with ground-truth rationales (JSONL)")
    gen.add_argument("--task", choices=tasks.TASKS, required=True)
    gen.add_argument("--split", choices=("train", "test", "generated"), default="test")
    gen.add_argument("--n", type=int, default=100, help="items to generate (split 'generated')")
    gen.add_argument("--length", type=int, default=3)
    gen.add_argument("--depth", type=int, default=2)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--limit", type=int, default=None)
    gen.add_argument("--out", type=Path, default=None, help="file (default: stdout)")

    col = verbs.add_parser("collect", help="one interactive-loop window -> training records")
    col.add_argument(
        "--recipe", help=f"shipped recipe ({', '.join(available_recipes())}) or a YAML path"
    )
    fields = col.add_argument_group("recipe fields (override the recipe's values)")
    add_recipe_arguments(fields, CollectRecipe)
    col.add_argument("--run-dir", type=Path, required=True)
    return p


def _generate(args: argparse.Namespace) -> int:
    if args.split == "generated":
        if args.task != "multistep_arithmetic":
            raise SystemExit(
                "error: --split generated is for multistep_arithmetic; "
                "word_sort reads the local data"
            )
        items = tasks.generate_arithmetic(
            args.n, length=args.length, depth=args.depth, seed=args.seed
        )
    else:
        items = tasks.load_items(args.task, args.split)
        for it in items:
            it["eval_split"] = tasks.seen_unseen(it) if args.split == "test" else "train"
    items = items[: args.limit] if args.limit else items
    lines = "".join(json.dumps(it) + "\n" for it in items)
    if args.out:
        args.out.write_text(lines)
    else:
        sys.stdout.write(lines)
    return 0


def _collect(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, **cli_overrides(args, CollectRecipe))
    parse_spec(recipe.model)  # a typo fails before a run folder exists
    run = RunDir.create(args.run_dir, {"recipe": asdict(recipe), "runtime": {}})
    if (run.path / "metrics.json").exists():
        print(f"{run.path}: this window is already collected (metrics.json); nothing to redo")
        return 0
    args = recipe  # the fields below read like the original knobs
    items = tasks.load_items(args.task, "train")
    random.Random(args.seed).shuffle(items)
    window = items[: args.collect_train_data_window]
    model = load_chat_model(args.model)
    kept, stats = loop.collect(
        model,
        window,
        max_improvements=args.max_improvements,
        params=SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0),
    )
    improving, plain = loop.split_turns(kept)
    if len(improving) + len(plain) < args.min_data_length:
        raise SystemExit(
            f"error: only {len(improving) + len(plain)} samples collected, fewer than "
            f"min_data_length={args.min_data_length}; the loop stops here"
        )
    improving, plain = loop.rebalance(
        improving, plain, improve_data_ratio=args.improve_data_ratio, seed=args.seed
    )
    records = loop.build_records(
        improving,
        plain,
        window,
        self_improve_section_weight=args.self_improve_section_weight,
        mask_before_att_start_text=args.mask_before_att_start_text,
    )
    with run:
        done = run.finished_ids()  # a crash mid-write resumes without duplicating records
        for r in records:
            if r["id"] not in done:
                run.append(r)
    metrics = {
        **stats.to_dict(),
        "improvement_samples": len(improving),
        "plain_samples": len(plain),
        "records": len(records),
    }
    run.write_metrics(metrics)
    print(json.dumps(metrics))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    return {"generate": _generate, "collect": _collect}[args.verb](args)


if __name__ == "__main__":
    raise SystemExit(main())
