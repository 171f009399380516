"""``chorus-tripost``: make task items, collect training data, train, evaluate, report.

Verbs: ``make-data`` (task items with ground-truth rationales, as JSONL), ``collect`` (one
iteration's sampling rounds -> mixed, weighted training records), ``train`` (baseline SFT,
then TriPosT / LMSI / FT-from-demonstrations, each a resumable step), ``evaluate`` (seen /
unseen accuracy with and without test-time self-improvement; few-shot baselines for any
ChatModel spec), ``report`` (one table re-graded from several evaluation runs) and
``check-helper`` (how often the LLM verifier / improver judge and repair known errors).
The work is in pipeline.py and training.py; every recipe field is a flag.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.engine import RayOptions
from chorus_shared.redact import redact_urls, redact_value
from chorus_tripost import pipeline, tasks
from chorus_tripost.arithmetic import MAX_DEPTH
from chorus_tripost.evaluate import summary_line
from chorus_tripost.recipes import Recipe, available_recipes, load_recipe

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chorus-tripost", description=__doc__.splitlines()[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    for name in ("make-data", "generate"):  # ``generate``: the old name, kept as an alias
        gen = verbs.add_parser(
            name,
            help="write task items with ground-truth rationales (JSONL)"
            if name == "make-data"
            else "old name of make-data",
        )
        gen.add_argument("--task", choices=tasks.TASKS, required=True)
        gen.add_argument("--split", choices=("train", "dev", "test", "generated"), default="test")
        gen.add_argument("--n", type=int, default=100, help="items to generate (split 'generated')")
        gen.add_argument("--length", type=int, default=3, help="numbers per group (generated)")
        gen.add_argument(
            "--depth", type=int, default=2, help=f"nesting depth, 2..{MAX_DEPTH} (generated)"
        )
        gen.add_argument("--seed", type=int, default=0)
        gen.add_argument("--limit", type=int, default=None)
        gen.add_argument("--out", type=Path, default=None, help="file (default: stdout)")

    col = _with_recipe(verbs.add_parser("collect", help="one iteration's training data"))
    _out(col, "collection folder (sampling rounds + train.jsonl)")
    _ray(col)

    tr = _with_recipe(verbs.add_parser("train", help="baseline SFT + loop iterations (resumable)"))
    tr.add_argument("--num-iterations", type=int, default=1, help="loop iterations after the SFT")
    _out(tr, "training run folder")
    _ray(tr)

    ev = _with_recipe(verbs.add_parser("evaluate", help="seen / unseen accuracy of one model"))
    ev.add_argument(
        "--eval-method",
        choices=pipeline.EVAL_METHODS,
        default="model",
        help="model: a trained model (hf:<dir>, a train run's model folder); fewshot[_si]: "
        "prompt any ChatModel spec (+ its own feedback and improvement)",
    )
    ev.add_argument("--label", default=None, help="row name in the report table")
    _out(ev, "evaluation run folder")
    _ray(ev)

    chk = _with_recipe(
        verbs.add_parser("check-helper", help="measure the LLM verifier / improver on known errors")
    )
    chk.add_argument("--n", type=int, default=20, help="training items to check")
    _out(chk, "check run folder")

    rep = verbs.add_parser("report", help="one markdown table from evaluation run folders")
    rep.add_argument("eval_dirs", type=Path, nargs="+")
    rep.add_argument("--out", type=Path, default=None, help="also write the table here")
    return p


def _out(sub: argparse.ArgumentParser, what: str) -> None:
    # --run-dir: the flag's first name, kept so existing commands still work.
    sub.add_argument("--out", "--run-dir", dest="out", type=Path, required=True, help=what)


def _ray(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--ray", action="store_true", help="fan windows out over a Ray cluster")
    sub.add_argument("--ray-address", help="Ray address ('auto' = running cluster; default: local)")
    sub.add_argument("--ray-workers", type=int, help="model replicas (default: one per GPU/CPU)")
    sub.add_argument("--ray-gpus-per-worker", type=float, default=0.0)


def _ray_options(args: argparse.Namespace) -> RayOptions | None:
    if not args.ray:
        return None
    return RayOptions(args.ray_address, args.ray_workers, args.ray_gpus_per_worker)


def _with_recipe(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub.add_argument(
        "--recipe", help=f"shipped recipe ({', '.join(available_recipes())}) or a YAML path"
    )
    add_recipe_arguments(sub.add_argument_group("recipe fields (override the recipe)"), Recipe)
    return sub


@contextmanager
def _redacted_argv() -> Iterator[None]:
    # wandb (inside the training core) stores the command line; a helper spec such as
    # openai:m@http://user:pw@host must not reach it.
    saved = list(sys.argv)
    sys.argv[:] = [redact_urls(a) for a in sys.argv]
    try:
        yield
    finally:
        sys.argv[:] = saved


def _make_data(args: argparse.Namespace) -> int:
    items = pipeline.make_data(
        args.task, args.split, n=args.n, length=args.length, depth=args.depth,
        seed=args.seed, limit=args.limit,
    )  # fmt: skip
    lines = "".join(json.dumps(it) + "\n" for it in items)
    if args.out:
        args.out.write_text(lines)
    else:
        sys.stdout.write(lines)
    return 0


def _recipe(args: argparse.Namespace) -> Recipe:
    return load_recipe(args.recipe, **cli_overrides(args, Recipe))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.verb in ("make-data", "generate"):
            return _make_data(args)
        if args.verb == "report":
            print(pipeline.report(args.eval_dirs, args.out))
            return 0
        recipe = _recipe(args)
        if args.verb == "collect":
            stats = pipeline.collect(recipe, args.out, ray=_ray_options(args))
            print(json.dumps(stats))
        elif args.verb == "train":
            from chorus_tripost.training import run_training

            with _redacted_argv():
                metrics = run_training(
                    recipe, args.out, num_iterations=args.num_iterations, ray=_ray_options(args)
                )
            keys = ("method", "iterations_done", "final_model")
            print(json.dumps(redact_value({k: metrics[k] for k in keys})))
        elif args.verb == "evaluate":
            metrics = pipeline.evaluate(
                recipe, recipe.model, args.out, method=args.eval_method, label=args.label,
                ray=_ray_options(args),
            )  # fmt: skip
            print(summary_line(metrics))
        elif args.verb == "check-helper":
            pipeline.check_helper(recipe, args.out, n=args.n)
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        # User errors (a model spec that cannot load, missing data, a run folder holding
        # another config, a bad value) get one line and exit 2; bugs still trace.
        print(f"chorus-tripost: error: {redact_urls(str(exc))}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
