"""Command line: ``chorus-debate generate | evaluate | report``; the work is in pipeline.py.

Every recipe field is a flag (generated from :class:`~chorus_debate.recipes.DebateRecipe`),
so a new setting is added in one place: the dataclass.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from chorus_debate.compare import compare_runs
from chorus_debate.evaluate import export_original
from chorus_debate.pipeline import generate, score, summary
from chorus_debate.recipes import DebateRecipe, available_recipes, load_recipe
from chorus_shared.config import add_recipe_arguments, cli_overrides, count_type
from chorus_shared.engine import RayOptions
from chorus_shared.redact import install_log_redaction, redact_urls
from chorus_shared.runs import RunDir

# What `chorus-debate --help` says: plain words, not the module docstring (reST markup).
DESCRIPTION = (
    "Multi-agent debate (Du et al., 2023): generate a run, evaluate it, compare runs. "
    "Every recipe field is also a flag; `generate --help` lists them."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus-debate", description=DESCRIPTION)
    verbs = parser.add_subparsers(dest="verb", required=True)

    gen = verbs.add_parser(
        "generate", help="run a method on a task and append records to a run dir"
    )
    gen.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    fields = gen.add_argument_group("recipe fields (override the recipe's values)")
    add_recipe_arguments(fields, DebateRecipe)
    gen.add_argument("--out", help="run directory (default runs/debate/<task>-<method>)")
    gen.add_argument("--ray", action="store_true", help="fan windows out over a Ray cluster")
    gen.add_argument("--ray-address", help="Ray address ('auto' = running cluster; default: local)")
    gen.add_argument(
        "--ray-workers", type=count_type(1), help="model replicas (default: one per GPU/CPU)"
    )
    gen.add_argument("--ray-gpus-per-worker", type=float, default=0.0)
    gen.add_argument(
        "--overwrite", action="store_true", help="discard the records already in --out"
    )

    ev = verbs.add_parser(
        "evaluate", help="score a run: accuracy per round, unparseable count, report.md"
    )
    ev.add_argument("run_dir")
    ev.add_argument(
        "--out",
        help="write metrics.json, report.md and plots here instead of into the run folder",
    )
    ev.add_argument(
        "--export", help="also write the original {question: [agent_contexts, answer]} JSON here"
    )

    rep = verbs.add_parser("report", help="compare runs in one table (and accuracy vs agents)")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="write the comparison markdown (and plot) here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-debate``; returns the process exit code."""
    install_log_redaction()  # no credential of a model URL reaches a log line
    args = _parser().parse_args(argv)
    try:
        if args.verb == "generate":
            recipe = load_recipe(args.recipe, **cli_overrides(args, DebateRecipe))
            ray = (
                RayOptions(args.ray_address, args.ray_workers, args.ray_gpus_per_worker)
                if args.ray
                else None
            )
            print(summary(score(generate(recipe, args.out, args.overwrite, ray))))
        elif args.verb == "evaluate":
            run = RunDir.open(args.run_dir)
            metrics = score(run, args.out)
            if args.export:
                export_original(run, args.export)
            print(summary(metrics))
        elif args.verb == "report":
            print(compare_runs(args.run_dirs, args.out))
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        print(f"chorus-debate: error: {redact_urls(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
