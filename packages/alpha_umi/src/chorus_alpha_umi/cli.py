"""Command line: ``chorus-alpha-umi preprocess | train | evaluate | run | report``; the work is
in pipeline.py.

Every agent recipe field is a flag of ``evaluate`` and ``run`` (generated from
:class:`~chorus_alpha_umi.recipes.AgentRecipe`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from chorus_alpha_umi import pipeline
from chorus_alpha_umi.compare import compare_runs
from chorus_alpha_umi.glpft import GlpftRecipe, available_glpft_recipes, load_glpft_recipe
from chorus_alpha_umi.recipes import PARTS, ROLES, AgentRecipe, available_recipes, load_recipe
from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.engine import RayOptions
from chorus_shared.runs import RunDir


def _add_agent_flags(p: argparse.ArgumentParser, out_help: str) -> None:
    p.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    fields = p.add_argument_group("recipe fields (override the recipe's values)")
    add_recipe_arguments(fields, AgentRecipe)
    p.add_argument("--out", help=out_help)
    p.add_argument("--overwrite", action="store_true", help="discard the records in --out")
    p.add_argument("--ray", action="store_true", help="fan windows out over a Ray cluster")
    p.add_argument("--ray-address", help="Ray address ('auto' = running cluster; default: local)")
    p.add_argument("--ray-workers", type=int, help="model replicas (default: one per GPU/CPU)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus-alpha-umi", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    pre = verbs.add_parser(
        "preprocess", help="ToolBench answer trees or dialogs -> per-role training sets (JSONL)"
    )
    pre.add_argument("inputs", nargs="*", help="ToolBench answer JSON files or folders")
    pre.add_argument(
        "--split", help="instead of inputs: the alpha-UMi test file of this split (data loader)"
    )
    pre.add_argument(
        "--part",
        choices=PARTS,
        default="all",
        help="with --split: all dialogs, or the offline GLPFT train / heldout part",
    )
    pre.add_argument("--data-dir", help="with --split: folder holding toolbench_alpha_umi/")
    pre.add_argument("--out", required=True, help="folder for <role>.jsonl and stats.json")

    tr = verbs.add_parser("train", help="GLPFT: --stage backbone | planner | caller | summarizer")
    tr.add_argument("--stage", required=True, choices=("backbone", *ROLES))
    tr.add_argument(
        "--recipe",
        default="glpft_offline",
        help=f"GLPFT recipe ({', '.join(available_glpft_recipes())}) or a YAML path",
    )
    tr.add_argument("--data", required=True, help="folder written by `preprocess`")
    tr.add_argument("--out", required=True, help="training run directory")
    stage_fields = tr.add_argument_group("GLPFT recipe fields (override the recipe's values)")
    add_recipe_arguments(stage_fields, GlpftRecipe)

    ev = verbs.add_parser(
        "evaluate",
        help="static step-level evaluation (paper metrics); RUN_DIR: re-score a run; with "
        "--episodes/--reference: real-time pass rate and win rate of two `run` folders",
    )
    ev.add_argument("run_dir", nargs="?", help="re-score this run folder (nothing generated)")
    _add_agent_flags(ev, "run directory (with RUN_DIR: where metrics.json and report.md go)")
    ev.add_argument(
        "--episodes", help="real-time: a `run` folder of episodes (e.g. the multi-LLM agent)"
    )
    ev.add_argument(
        "--reference", help="real-time: the `run` folder it is compared with (e.g. single-LLM)"
    )

    run = verbs.add_parser(
        "run", help="whole episodes against the offline tool simulator (cache, then an LLM)"
    )
    _add_agent_flags(run, "run directory")

    rep = verbs.add_parser("report", help="one table over several evaluate runs")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="write the markdown table (and chart) here")
    return parser


def _ray(args: argparse.Namespace) -> RayOptions | None:
    if not args.ray:
        return None
    return RayOptions(args.ray_address, args.ray_workers, args.ray_gpus_per_worker)


def _dispatch(args: argparse.Namespace) -> None:
    if args.verb == "preprocess":
        stats = pipeline.preprocess_data(
            args.inputs, args.out, split=args.split, part=args.part, data_dir=args.data_dir
        )
        print(json.dumps(stats, indent=2))
    elif args.verb == "train":
        glpft = load_glpft_recipe(args.recipe, **cli_overrides(args, GlpftRecipe))
        result = pipeline.train_stage(glpft, args.stage, args.data, args.out)
        print(json.dumps(result, default=str))
    elif args.verb == "report":
        print(compare_runs(args.run_dirs, args.out))
    elif args.verb == "evaluate" and args.run_dir:
        if args.episodes or args.reference:
            raise ValueError("give a RUN_DIR to re-score, or --episodes/--reference, not both")
        print(pipeline.summary(pipeline.score(RunDir.open(args.run_dir), args.out)))
    else:
        recipe = load_recipe(args.recipe, **cli_overrides(args, AgentRecipe))
        if args.verb == "run":
            run = pipeline.run_realtime(recipe, args.out, args.overwrite, _ray(args))
        elif args.episodes or args.reference:
            if not (args.episodes and args.reference):
                raise ValueError(
                    "real-time evaluation needs both --episodes and --reference run folders"
                )
            run = pipeline.evaluate_realtime(
                recipe, args.episodes, args.reference, args.out, args.overwrite
            )
        else:
            run = pipeline.evaluate_static(recipe, args.out, args.overwrite, _ray(args))
        print(pipeline.summary(pipeline.score(run)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-alpha-umi``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        _dispatch(args)
    except (ValueError, OSError, ImportError, RuntimeError) as err:
        # User errors (a model that cannot load, bad data, a mismatched run folder, a run whose
        # replies all failed) get one line and exit 2; a failed run left no new run folder.
        print(f"chorus-alpha-umi: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
