"""Command line: ``chorus-alpha-umi preprocess | train | run | evaluate | report``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chorus_alpha_umi.agent import new_episode, run_episodes
from chorus_alpha_umi.compare import compare_runs, describe_roles, metrics_table
from chorus_alpha_umi.glpft import read_stage_records, stage_recipe
from chorus_alpha_umi.judge import judge_episodes, pass_rate
from chorus_alpha_umi.preprocess import preprocess, write_role_files
from chorus_alpha_umi.realtime import KIND as REALTIME
from chorus_alpha_umi.realtime import (
    evaluate_realtime,
    load_episodes,
    pair_up,
    realtime_metrics,
    realtime_table,
)
from chorus_alpha_umi.recipes import PARTS, ROLES, AgentRecipe, available_recipes, load_recipe
from chorus_alpha_umi.static import (
    gold_steps,
    load_dialogs,
    run_static,
    score_run,
    select_part,
)
from chorus_alpha_umi.tools import SimulatedTools
from chorus_shared.config import add_recipe_arguments, cli_overrides
from chorus_shared.models import ChatModel, SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import RunDir, pending


def _add_agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe", help=f"shipped recipe name ({', '.join(available_recipes())}) or a YAML path"
    )
    fields = p.add_argument_group("recipe fields (override the recipe's values)")
    add_recipe_arguments(fields, AgentRecipe)
    p.add_argument("--out", help="run directory")
    p.add_argument("--overwrite", action="store_true", help="discard the records in --out")


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
    tr.add_argument("--recipe", default="glpft_offline", help="GLPFT recipe name or YAML")
    tr.add_argument("--data", required=True, help="folder written by `preprocess`")
    tr.add_argument("--model", help="start model (role stages: hf:<backbone run>/model)")
    tr.add_argument("--out", required=True, help="training run directory")
    tr.add_argument("--max-steps", type=int, help="stop after N optimizer steps")
    tr.add_argument("--max-length", type=int)
    tr.add_argument("--limit", type=int, help="first N records")

    ev = verbs.add_parser(
        "evaluate",
        help="static step-level evaluation (paper metrics); with --episodes/--reference: "
        "real-time pass rate and win rate of two `run` folders",
    )
    _add_agent_flags(ev)
    ev.add_argument(
        "--episodes", help="real-time: a `run` folder of episodes (e.g. the multi-LLM agent)"
    )
    ev.add_argument(
        "--reference", help="real-time: the `run` folder it is compared with (e.g. single-LLM)"
    )

    run = verbs.add_parser(
        "run", help="whole episodes against the offline tool simulator (cache, then an LLM)"
    )
    _add_agent_flags(run)

    rep = verbs.add_parser("report", help="one table over several evaluate runs")
    rep.add_argument("run_dirs", nargs="+")
    rep.add_argument("--out", help="write the markdown table here")
    return parser


def _recipe(args: argparse.Namespace) -> AgentRecipe:
    return load_recipe(args.recipe, **cli_overrides(args, AgentRecipe))


def _dialogs(recipe: AgentRecipe) -> list[dict[str, Any]]:
    dialogs = select_part(load_dialogs(recipe.split, recipe.data_dir), recipe.part)
    return dialogs if recipe.limit is None else dialogs[: recipe.limit]


class _Models:
    """Role -> ChatModel, loading one replica per distinct spec (one model with three role
    prompts, the simulator or the judge on the same spec load once)."""

    def __init__(self, recipe: AgentRecipe) -> None:
        self.recipe = recipe
        self.cache: dict[str, ChatModel] = {}

    def load(self, spec: str) -> ChatModel:
        """Return the (cached) model of ``spec``."""
        if spec not in self.cache:
            options: dict[str, Any] = {}
            if parse_spec(spec)[0] in ("default", "hf"):
                options["batch_size"] = self.recipe.batch_size
            self.cache[spec] = load_chat_model(spec, **options)
        return self.cache[spec]

    def __call__(self, role: str) -> ChatModel:
        return self.load(self.recipe.spec(role))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Predict every gold step of the split with the recipe's roles, then score the run
    (static); or, with --episodes and --reference, judge two `run` folders (real-time)."""
    if args.episodes or args.reference:
        return cmd_evaluate_realtime(args)
    recipe = _recipe(args)
    dialogs = _dialogs(recipe)
    steps = [s for d in dialogs for s in gold_steps(d)]
    out = Path(args.out or f"runs/alpha_umi/static-{recipe.split}")
    config = {"recipe": recipe.identity(), "runtime": recipe.runtime()}
    with RunDir.create(out, config, overwrite=args.overwrite) as run:
        params = {role: recipe.params(role) for role in ROLES}
        done = run_static(run, steps, _Models(recipe), params, window=recipe.window)
        records = run.read_records().finished
        metrics = score_run(records)
        metrics["dialogs"] = len(dialogs)
        metrics["dialogs_without_steps"] = sum(1 for d in dialogs if not gold_steps(d))
        run.write_metrics(metrics)
        run.write_report(
            f"# alpha-UMi static evaluation ({recipe.split}, {len(dialogs)} dialogs)\n\n"
            + f"Dialogs: part `{recipe.part}` of the file"
            + ("" if recipe.limit is None else f", first {recipe.limit}")
            + ". Roles: "
            + ", ".join(f"{r} = `{recipe.spec(r)}`" for r in ROLES)
            + "\n\n"
            + metrics_table([(out.name, describe_roles(config), metrics)])
        )
    print(f"{done} steps predicted, {len(records)} in {out}")
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run agent episodes on the split's queries against the simulator; store one record each."""
    recipe = _recipe(args)
    dialogs = _dialogs(recipe)
    out = Path(args.out or f"runs/alpha_umi/episodes-{recipe.split}")
    config = {"recipe": recipe.identity(), "runtime": recipe.runtime()}
    model_for = _Models(recipe)
    params = {role: recipe.params(role) for role in ROLES}
    with RunDir.create(out, config, overwrite=args.overwrite) as run:
        cache = Path(recipe.simulator_cache or out / "simulator_cache.jsonl")
        env = SimulatedTools(
            model_for.load(recipe.simulator or recipe.spec("planner")), cache, params["summarizer"]
        )
        judge_params = SamplingParams(max_new_tokens=recipe.judge_max_new_tokens)
        todo = pending(dialogs, run)
        for start in range(0, len(todo), recipe.window):
            window = todo[start : start + recipe.window]
            episodes = [
                new_episode(d["id"], d["tools"], d.get("instruction") or "") for d in window
            ]
            done = run_episodes(episodes, model_for, env, params, max_turns=recipe.max_turns)
            if recipe.judge is not None:
                # Judged window by window: a record is stored with its verdict (resumable).
                judge_episodes(done, model_for.load(recipe.judge), judge_params)
            run.append_many([{k: v for k, v in e.items() if k != "tools"} for e in done])
        records = run.read_records().finished
        statuses = Counter(r["status"] for r in records)
        metrics = {
            "episodes": len(records),
            "status": dict(statuses),
            "mean_planner_turns": (
                sum(r["planner_turns"] for r in records) / len(records) if records else None
            ),
            "bad_calls": sum(r["bad_calls"] for r in records),
            "tool_errors": sum(r.get("tool_errors", 0) for r in records),
            "unmarked_plans": sum(r["unmarked_plans"] for r in records),
            "simulator_non_json_this_session": env.non_json,
            "simulator_errors_this_session": env.errors,
            "judge": recipe.judge,
            **pass_rate(records),
        }
        run.write_metrics(metrics)
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_evaluate_realtime(args: argparse.Namespace) -> int:
    """Pass rate of both `run` folders and win rate of --episodes over --reference, judged
    by the recipe's `judge` spec; one record per query in the output run folder."""
    if not (args.episodes and args.reference):
        raise ValueError("real-time evaluation needs both --episodes and --reference run folders")
    recipe = _recipe(args)
    if recipe.judge is None:
        raise ValueError("real-time evaluation needs a judge: pass --judge SPEC (e.g. default)")
    pairs = pair_up(load_episodes(args.episodes), load_episodes(args.reference))
    out = Path(args.out or "runs/alpha_umi/realtime")
    config = {
        "kind": REALTIME,
        "recipe": {
            "episodes": str(args.episodes),
            "reference": str(args.reference),
            "judge": recipe.judge,
            "judge_max_new_tokens": recipe.judge_max_new_tokens,
        },
        "runtime": recipe.runtime(),
    }
    params = SamplingParams(max_new_tokens=recipe.judge_max_new_tokens)
    with RunDir.create(out, config, overwrite=args.overwrite) as run:
        judge = _Models(recipe).load(recipe.judge)
        done = evaluate_realtime(run, pairs, judge, params, window=recipe.window)
        metrics = realtime_metrics(run.read_records().finished)
        run.write_metrics(metrics)
        run.write_report(
            "# alpha-UMi real-time evaluation\n\n"
            + realtime_table([(out.name, run.config, metrics)])
            + "\n"
        )
    print(f"{done} queries judged in {out}")
    print(json.dumps(metrics, indent=2))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print one metrics table over evaluate runs; with --out also write it and a bar chart."""
    print(compare_runs(args.run_dirs, args.out))
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    """Build the backbone / planner / caller / summarizer JSONL files."""
    if bool(args.inputs) == bool(args.split):
        raise ValueError("give either input files/folders or --split, not both or neither")
    if args.split:
        dialogs = select_part(load_dialogs(args.split, args.data_dir), args.part)
        stats = write_role_files(dialogs, args.out, split=args.split, part=args.part)
    else:
        if args.part != "all":
            raise ValueError("--part selects dialogs of --split; it does not apply to inputs")
        stats = preprocess(args.inputs, args.out)
    print(json.dumps(stats, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train one GLPFT stage with chorus_shared.training; print where the model is."""
    from chorus_shared.training import load_train_recipe, train

    mapping = stage_recipe(
        args.recipe,
        args.stage,
        model=args.model,
        max_steps=args.max_steps,
        max_length=args.max_length,
    )
    recipe = load_train_recipe(mapping)
    records = read_stage_records(args.data, args.stage)
    if args.limit is not None:
        records = records[: args.limit]
    result = train(recipe, records, args.out)
    print(json.dumps({"model_dir": str(result.model_dir), **result.metrics}, default=str))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``chorus-alpha-umi``; returns the exit status."""
    args = _parser().parse_args(argv)
    handlers = {
        "preprocess": cmd_preprocess,
        "evaluate": cmd_evaluate,
        "run": cmd_run,
        "report": cmd_report,
        "train": cmd_train,
    }
    handler = handlers.get(args.verb)
    if handler is None:
        print(f"error: `{args.verb}` is not implemented yet", file=sys.stderr)
        return 2
    try:
        return handler(args)
    except (ValueError, OSError, ImportError, RuntimeError, KeyError) as err:
        # User errors (a model that cannot load, missing data, a mismatched run folder) get
        # one line and exit 2, as in chorus-debate; a failed run left no new run folder.
        print(f"chorus-alpha-umi: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
