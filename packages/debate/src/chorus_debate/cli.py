"""Command line: ``chorus-debate generate | evaluate | report | train``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chorus_debate.compare import compare_runs
from chorus_debate.debate import DebateEngine, DebateSetup
from chorus_debate.evaluate import evaluate_run, export_original, pct, write_run_report
from chorus_debate.methods import METHODS, plan_method
from chorus_debate.recipes import DebateRecipe, available_recipes, load_recipe
from chorus_debate.tasks import get_task
from chorus_shared.data import track_data_reads
from chorus_shared.distributed import ray_map_windows
from chorus_shared.models import ChatModel, SamplingParams, load_chat_model, parse_spec
from chorus_shared.progress import progress
from chorus_shared.runs import RunDir, pending

DEFAULT_SYSTEM = (
    "You are one of several careful agents solving the same problem. Reason step by step "
    "and state your final answer clearly in the requested format."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus-debate", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    gen = verbs.add_parser(
        "generate", help="run a method on a task and append records to a run dir"
    )
    gen.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    gen.add_argument("--task", help="arithmetic (math), gsm, mmlu, biography (bio)")
    gen.add_argument("--method", choices=METHODS)
    gen.add_argument(
        "--model",
        action="append",
        help="model spec; repeat once per agent for a heterogeneous debate",
    )
    gen.add_argument("--agents", type=int)
    gen.add_argument("--rounds", type=int)
    gen.add_argument(
        "--summarize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="agents see a summary of the others' answers instead of the answers",
    )
    gen.add_argument(
        "--sys",
        nargs="?",
        const=DEFAULT_SYSTEM,
        default=None,
        metavar="TEXT",
        help="prepend a system message (default text if none given)",
    )
    gen.add_argument(
        "--judge", help="model spec of the biography fact checker (default: first agent's)"
    )
    gen.add_argument("--limit", type=int)
    gen.add_argument("--seed", type=int)
    gen.add_argument("--max-new-tokens", type=int)
    gen.add_argument("--temperature", type=float)
    gen.add_argument("--top-p", type=float)
    gen.add_argument(
        "--batch-size", type=int, help="sequences per generate() micro-batch (hf backend)"
    )
    gen.add_argument("--window", type=int, help="questions in flight at once")
    gen.add_argument(
        "--data-dir",
        help="folder with gsm8k/, mmlu/, biography/ (else $CHORUS_DATA_DIR, ../shared/data, hub)",
    )
    gen.add_argument(
        "--request-timeout",
        type=float,
        help="seconds before one API request times out (openai backend; default 120)",
    )
    gen.add_argument("--out", help="run directory (default runs/debate/<task>-<method>)")
    gen.add_argument("--ray", action="store_true", help="fan windows out over a Ray cluster")
    gen.add_argument("--ray-address", help="Ray address ('auto' = running cluster; default: local)")
    gen.add_argument("--ray-workers", type=int, help="model replicas (default: one per GPU/CPU)")
    gen.add_argument("--ray-gpus-per-worker", type=float, default=0.0)
    gen.add_argument(
        "--overwrite", action="store_true", help="discard the records already in --out"
    )

    ev = verbs.add_parser(
        "evaluate", help="score a run: accuracy per round, unparseable count, report.md"
    )
    ev.add_argument("run_dir")
    ev.add_argument(
        "--export", help="also write the original {question: [agent_contexts, answer]} JSON here"
    )

    rep = verbs.add_parser("report", help="compare runs in one table (and accuracy vs agents)")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="write the comparison markdown (and plot) here")

    verbs.add_parser("train", help="(debate has no training step)")
    return parser


def _recipe_from_args(args: argparse.Namespace) -> DebateRecipe:
    return load_recipe(
        args.recipe,
        task=args.task,
        method=args.method,
        model=args.model,
        agents=args.agents,
        rounds=args.rounds,
        summarize=args.summarize,
        system=args.sys,
        judge=args.judge,
        limit=args.limit,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=args.batch_size,
        window=args.window,
        data_dir=args.data_dir,
        request_timeout=args.request_timeout,
    )


def _backend_options(spec: str, recipe: DebateRecipe) -> dict[str, Any]:
    # Only the local transformers backend takes a micro-batch size.
    backend = parse_spec(spec)[0]
    if backend in ("default", "hf"):
        return {"batch_size": recipe.batch_size, "max_batch_tokens": recipe.max_batch_tokens}
    if backend == "openai":
        return {"timeout_s": recipe.request_timeout}
    return {}


@dataclass(frozen=True)
class EngineFactory:
    """Builds the models and the engine of a run; picklable, so Ray workers can build replicas."""

    recipe: DebateRecipe
    specs: tuple[str, ...]
    params: SamplingParams
    judge_params: SamplingParams

    def __call__(self) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
        """Return the function that turns a window of items into finished records."""
        recipe = self.recipe
        task = get_task(recipe.task)
        cache: dict[str, ChatModel] = {}

        def model(spec: str) -> ChatModel:
            # One replica per distinct spec: identical agents share weights and batches.
            if spec not in cache:
                cache[spec] = load_chat_model(spec, **_backend_options(spec, recipe))
            return cache[spec]

        engine = DebateEngine(
            task,
            [model(s) for s in self.specs],
            DebateSetup(
                plan=plan_method(recipe.method, recipe.agents, recipe.rounds),
                params=self.params,
                summarize=recipe.summarize,
                system=recipe.system,
                judge_params=self.judge_params,
            ),
            judge=model(recipe.judge or self.specs[0]) if task.judged else None,
        )
        return engine.run


def _agent_specs(recipe: DebateRecipe, n_agents: int) -> tuple[str, ...]:
    specs = list(recipe.model)
    if len(specs) == 1:
        return tuple(specs * n_agents)
    if n_agents == 1:
        return (specs[0],)
    if len(specs) != n_agents:
        raise ValueError(
            f"{len(specs)} model specs given for {n_agents} agents: give one --model for all "
            "agents or exactly one per agent"
        )
    return tuple(specs)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to fan out with ``--ray``."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0


def generate(
    recipe: DebateRecipe,
    out: str | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> RunDir:
    """Run ``recipe`` into a run directory (resuming finished items) and return it.

    With ``ray``, windows are spread over Ray actors (one model replica each) and streamed
    back into the same run directory.
    """
    task = get_task(recipe.task)
    plan = plan_method(recipe.method, recipe.agents, recipe.rounds)
    specs = _agent_specs(recipe, plan.agents)
    for spec in {*specs, recipe.judge or specs[0]}:
        parse_spec(spec)  # a typo fails here, before a run folder is written
    recipe = replace(
        recipe, task=task.name, seed=task.default_seed if recipe.seed is None else recipe.seed
    )
    # Built before the run folder so a bad value leaves nothing behind to mismatch on resume.
    factory = EngineFactory(
        recipe,
        specs,
        params=SamplingParams(
            max_new_tokens=recipe.max_new_tokens,
            temperature=recipe.temperature,
            top_p=recipe.top_p,
            seed=recipe.seed,
        ),
        judge_params=SamplingParams(max_new_tokens=recipe.judge_max_new_tokens),
    )
    # Data first: a wrong --data-dir fails before a run folder exists, and the fingerprint of
    # what was read goes into config.json so a resume on other data is refused.
    with track_data_reads() as data_fingerprint:
        items = task.load(recipe.limit, recipe.seed, recipe.data_dir)
    # The writer lock is taken here, before any compute, so a second writer is refused at once.
    run = RunDir.create(
        out or Path("runs") / "debate" / f"{task.name}-{recipe.method}",
        {"recipe": recipe.identity(), "runtime": recipe.runtime(), "data": data_fingerprint},
        overwrite=overwrite,
    )
    try:
        _generate_into(run, task.name, recipe, items, factory, ray)
    except BaseException:
        # A model that cannot load (or fails at once) leaves no new, empty run folder.
        run.discard_if_empty()
        raise
    return run


def _generate_into(
    run: RunDir,
    task_name: str,
    recipe: DebateRecipe,
    items: list[dict[str, Any]],
    factory: EngineFactory,
    ray: RayOptions | None,
) -> None:
    todo = pending(items, run)
    print(
        f"{run.path}: {len(items) - len(todo)} of {len(items)} items already done", file=sys.stderr
    )
    windows = [todo[k : k + recipe.window] for k in range(0, len(todo), recipe.window)]
    with run:
        if windows and ray is not None:
            ray_map_windows(
                factory,
                windows,
                run.append_many,
                num_workers=ray.workers,
                gpus_per_worker=ray.gpus_per_worker,
                address=ray.address,
            )
        elif windows:
            run_window = factory()
            desc = f"{task_name}/{recipe.method} windows"
            for window in progress(windows, total=len(windows), desc=desc):
                run.append_many(run_window(window))


def _score(run: RunDir) -> dict[str, Any]:
    """Score ``run``, say what the reader skipped, and save metrics.json and report.md.

    On a read-only run folder the metrics are printed instead. Returns the metrics.
    """
    metrics = evaluate_run(run, write=False)
    for note in metrics["notes"]:
        print(f"chorus-debate: note: {note}", file=sys.stderr)
    try:
        run.write_metrics(metrics)
        write_run_report(run, metrics)
    except OSError as err:
        print(
            f"chorus-debate: cannot write into {run.path} ({err.strerror or err}); "
            "printing the metrics instead of saving them",
            file=sys.stderr,
        )
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return metrics


def _summary(metrics: dict[str, Any]) -> str:
    by_round = metrics.get("accuracy_by_round")
    rounds = " → ".join(pct(s) for s in by_round) if by_round else "–"
    return (
        f"{metrics['task']} {metrics['method']}: accuracy {pct(metrics['accuracy'])} % "
        f"over {metrics['items']} items (by round: {rounds}); "
        f"unparseable {metrics['unparseable']}, errored items {metrics['errors']}, "
        f"skipped records {metrics['skipped_records']}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-debate``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.verb == "generate":
            ray = (
                RayOptions(args.ray_address, args.ray_workers, args.ray_gpus_per_worker)
                if args.ray
                else None
            )
            run = generate(_recipe_from_args(args), args.out, args.overwrite, ray)
            metrics = _score(run)
            print(_summary(metrics))
        elif args.verb == "evaluate":
            run = RunDir.open(args.run_dir)
            metrics = _score(run)
            if args.export:
                export_original(run, args.export)
            print(_summary(metrics))
        elif args.verb == "report":
            print(compare_runs(args.run_dirs, args.out))
        elif args.verb == "train":
            print(
                "chorus-debate has no training step: multi-agent debate works on frozen models.",
                file=sys.stderr,
            )
            return 2
    except (ValueError, OSError, ImportError, RuntimeError) as exc:
        print(f"chorus-debate: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
