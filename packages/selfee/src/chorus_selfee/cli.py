"""Command line: ``chorus-selfee generate | train | infer | evaluate | score | report | serve``.

Flags come from the recipe dataclass (``chorus_selfee.recipes``); the work is in
``chorus_selfee.pipeline``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from chorus_selfee.recipes import SelfeeRecipe, available_recipes, load_recipe, verb_view
from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.engine import RayOptions


def _verb(verbs: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """Add a verb with ``--recipe`` and one flag per recipe field it uses (from the dataclass)."""
    p = verbs.add_parser(name, help=help_text)
    p.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    add_recipe_arguments(
        p.add_argument_group("recipe fields (override the recipe's values)"), verb_view(name)
    )
    return p


def _run_flags(p: argparse.ArgumentParser, out_help: str = "run folder") -> None:
    p.add_argument("--out", help=out_help)
    p.add_argument("--overwrite", action="store_true", help="delete an existing run there first")
    p.add_argument("--ray", action="store_true", help="fan windows out over a Ray cluster")
    p.add_argument("--ray-address", help="Ray address ('auto' = running cluster; default: local)")
    p.add_argument("--ray-workers", type=int, help="model replicas (default: one per GPU/CPU)")
    p.add_argument("--ray-gpus-per-worker", type=float, default=0.0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus-selfee", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    _run_flags(_verb(verbs, "generate", "teacher writes answer/feedback/revision chains"))

    tr = _verb(verbs, "train", "build training records and fine-tune")
    tr.add_argument("--out", required=True, help="training run folder")
    tr.add_argument("--records-only", action="store_true", help="write records, do not train")

    _run_flags(_verb(verbs, "infer", "autonomous or revision-enforced generation"))

    ev = _verb(verbs, "evaluate", "pairwise judge, both orders, vs a reference")
    ev.add_argument("--answers", required=True, help="infer run folder or FastChat answer JSONL")
    ev.add_argument("--reference", required=True, help="infer run folder or FastChat answer JSONL")
    _run_flags(ev)

    sc = verbs.add_parser("score", help="recompute a run's metrics and report from its records")
    sc.add_argument("run_dir")
    sc.add_argument("--out", help="write metrics.json and report.md here instead of the run")

    srv = _verb(verbs, "serve", "serve the model behind FastChat (controller, worker, OpenAI API)")
    srv.add_argument("--host", default="127.0.0.1", help="address of all three servers")
    srv.add_argument("--port", type=int, default=8000, help="OpenAI-compatible API port")
    srv.add_argument("--controller-port", type=int, default=21001)
    srv.add_argument("--worker-port", type=int, default=21002)
    srv.add_argument("--model-name", help="served model name (default: the model folder's name)")
    srv.add_argument("--log-dir", help="FastChat log folder (default: a new temporary one)")

    rep = verbs.add_parser("report", help="compare evaluate runs (re-scored from their records)")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="folder for report.md, metrics.json and the plot")
    return parser


def _recipe(args: argparse.Namespace) -> SelfeeRecipe:
    return load_recipe(args.recipe, **cli_overrides(args, SelfeeRecipe))


def _ray(args: argparse.Namespace) -> RayOptions | None:
    if not args.ray:
        return None
    return RayOptions(args.ray_address, args.ray_workers, args.ray_gpus_per_worker)


def _print_notes(metrics: dict[str, Any]) -> None:
    for note in metrics.get("notes", []):
        print(f"chorus-selfee: note: {note}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from chorus_selfee import evaluate as ev
    from chorus_selfee import pipeline

    if args.verb == "report":
        print(ev.report(args.run_dirs, args.out))
        return 0
    if args.verb == "score":
        metrics = pipeline.rescore(args.run_dir, args.out)
        _print_notes(metrics)
        print(ev.table(metrics) if metrics["verb"] == "evaluate" else json.dumps(metrics))
        return 0
    recipe = _recipe(args)
    if args.verb == "generate":
        _, metrics = pipeline.generate(recipe, args.out, args.overwrite, _ray(args))
    elif args.verb == "infer":
        _, metrics = pipeline.infer(recipe, args.out, args.overwrite, _ray(args))
    elif args.verb == "evaluate":
        _, metrics = pipeline.evaluate(
            recipe, args.answers, args.reference, args.out, args.overwrite, _ray(args)
        )
        _print_notes(metrics)
        print(ev.table(metrics))
        print(f"judged: {metrics['judged_of_questions']}")
        return 0
    elif args.verb == "train":
        if not recipe.train_data:
            raise ValueError("train needs --data (a generate run folder or a data file)")
        print(json.dumps(pipeline.train(recipe, recipe.train_data, args.out, args.records_only)))
        return 0
    else:  # serve
        from chorus_selfee.serve import serve

        return serve(
            recipe.model,
            min_revisions=recipe.serve_min_revisions,
            max_revisions=recipe.serve_max_revisions,
            max_new_tokens=recipe.infer_max_new_tokens,
            temperature=recipe.infer_temperature,
            host=args.host,
            port=args.port,
            controller_port=args.controller_port,
            worker_port=args.worker_port,
            model_name=args.model_name,
            batch_size=recipe.batch_size,
            log_dir=args.log_dir,
        )
    _print_notes(metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "notes"}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-selfee``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        print(f"chorus-selfee: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # a last resort: input readers name their missing keys themselves
        print(f"chorus-selfee: error: missing key {exc} in the input", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
