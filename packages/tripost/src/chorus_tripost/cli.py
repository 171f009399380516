"""``chorus-tripost``: generate task items, collect TriPosT training data.

Verbs: ``generate`` (items with ground-truth rationales, as JSONL), ``collect`` (one window of
the interactive loop: attempts of a model -> feedback -> improvements -> weighted training
records in a resumable run folder), ``train`` (baseline SFT, then TriPosT / LMSI / FT-from-
demonstrations iterations, each a resumable step), ``evaluate`` (seen / unseen accuracy with
and without test-time self-improvement; few-shot baselines for any ChatModel spec) and
``report`` (one table from several evaluation folders) and ``check-helper`` (how often the
LLM verifier / improver of a recipe judge and repair known errors correctly).
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
from chorus_shared.models import SamplingParams, parse_spec
from chorus_shared.runs import RunDir
from chorus_tripost import loop, pipeline, tasks
from chorus_tripost.generation import load_raw_model
from chorus_tripost.helpers import make_helpers
from chorus_tripost.recipes import Recipe, available_recipes, load_recipe

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

    col = _with_recipe(verbs.add_parser("collect", help="one loop window -> training records"))
    col.add_argument("--run-dir", type=Path, required=True)
    col.add_argument("--ray", action="store_true", help="run the collection as a Ray task")

    tr = _with_recipe(verbs.add_parser("train", help="baseline SFT + loop iterations (resumable)"))
    tr.add_argument("--num-iterations", type=int, default=1, help="loop iterations after the SFT")
    tr.add_argument("--run-dir", type=Path, required=True)
    tr.add_argument("--ray", action="store_true", help="each collect / train phase a Ray task")

    ev = _with_recipe(verbs.add_parser("evaluate", help="seen / unseen accuracy of one model"))
    ev.add_argument(
        "--eval-method",
        choices=("model", "fewshot", "fewshot_si"),
        default="model",
        help="model: a trained model (hf:<dir>, a train run's model folder); fewshot[_si]: "
        "prompt any ChatModel spec (+ its own feedback and improvement)",
    )
    ev.add_argument("--label", default=None, help="row name in the report table")
    ev.add_argument("--out", type=Path, required=True, help="evaluation run folder")
    ev.add_argument("--ray", action="store_true", help="run the evaluation as a Ray task")

    chk = _with_recipe(
        verbs.add_parser("check-helper", help="measure the LLM verifier / improver on known errors")
    )
    chk.add_argument("--n", type=int, default=20, help="training items to check")
    chk.add_argument("--out", type=Path, required=True, help="check run folder")

    rep = verbs.add_parser("report", help="one markdown table from evaluation folders")
    rep.add_argument("eval_dirs", type=Path, nargs="+")
    rep.add_argument("--out", type=Path, default=None, help="also write the table here")
    return p


def _with_recipe(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument(
        "--recipe", help=f"shipped recipe ({', '.join(available_recipes())}) or a YAML path"
    )
    add_recipe_arguments(sub.add_argument_group("recipe fields (override the recipe)"), Recipe)
    return sub


def _generate(args: argparse.Namespace) -> int:
    if args.split == "generated":
        if args.task != "multistep_arithmetic":
            raise SystemExit(
                "error: --split generated is for multistep_arithmetic; "
                "the other tasks read the local data"
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
    if getattr(args, "ray", False):
        args.ray = False
        return pipeline.phase_runner(True)(_collect, args)
    recipe = load_recipe(args.recipe, **cli_overrides(args, Recipe))
    parse_spec(recipe.model)  # a typo fails before a run folder exists
    run = RunDir.create(args.run_dir, {"recipe": asdict(recipe), "runtime": {}})
    if (run.path / "metrics.json").exists():
        print(f"{run.path}: this window is already collected (metrics.json); nothing to redo")
        return 0
    items = tasks.load_items(recipe.task, "train")
    random.Random(recipe.seed).shuffle(items)
    window = items[: recipe.collect_train_data_window]
    model = load_raw_model(recipe.model)
    verify, improve = make_helpers(recipe, items)
    kept, stats = loop.collect(
        model,
        window,
        verify=verify,
        improve=improve,
        max_improvements=recipe.max_improvements,
        params=SamplingParams(
            max_new_tokens=recipe.max_new_tokens, temperature=0.0, stop=(loop.FEEDBACK,)
        ),
    )
    improving, plain = loop.split_turns(kept)
    if len(improving) + len(plain) < recipe.min_data_length:
        raise SystemExit(
            f"error: only {len(improving) + len(plain)} samples collected, fewer than "
            f"min_data_length={recipe.min_data_length}; the loop stops here"
        )
    improving, plain = loop.rebalance(
        improving, plain, improve_data_ratio=recipe.improve_data_ratio, seed=recipe.seed
    )
    records = loop.build_records(
        improving,
        plain,
        window,
        self_improve_section_weight=recipe.self_improve_section_weight,
        mask_before_att_start_text=recipe.mask_before_att_start_text,
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


def _train(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, **cli_overrides(args, Recipe))
    metrics = pipeline.run_training(
        recipe, args.run_dir, num_iterations=args.num_iterations, use_ray=args.ray
    )
    print(json.dumps({k: metrics[k] for k in ("method", "iterations_done", "final_model")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, **cli_overrides(args, Recipe))
    call = pipeline.phase_runner(args.ray)
    summary = call(
        pipeline.run_evaluation,
        recipe,
        recipe.model,
        args.out,
        method=args.eval_method,
        label=args.label,
    )
    print(json.dumps(summary))
    return 0


def _check_helper(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe, **cli_overrides(args, Recipe))
    pipeline.check_helper(recipe, args.out, n=args.n)
    return 0


def _report(args: argparse.Namespace) -> int:
    from chorus_shared.report import markdown_table
    from chorus_tripost.evaluate import accuracy_table

    rows = []
    for folder in args.eval_dirs:
        run = RunDir.open(folder)
        metrics = run.read_metrics()
        rows.append((metrics.get("label") or str(folder), metrics))
    headers, body = accuracy_table(rows)
    table = markdown_table(headers, body)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    verbs = {
        "generate": _generate,
        "collect": _collect,
        "train": _train,
        "evaluate": _evaluate,
        "report": _report,
        "check-helper": _check_helper,
    }
    return verbs[args.verb](args)


if __name__ == "__main__":
    raise SystemExit(main())
