"""The debate pipeline: recipe -> run folder of records -> metrics and report.

``chorus-debate`` (cli.py) only parses flags and calls :func:`generate` and :func:`score`.
The same steps from a shell, from a source checkout or an installed wheel::

    chorus-debate generate --recipe gsm_default                 # debate row, offline model
    chorus-debate generate --recipe gsm_default_single          # the paper table's other rows
    chorus-debate generate --recipe gsm_default_majority --limit 5 --out runs/g5-majority
    chorus-debate evaluate runs/debate/gsm-debate               # re-score stored replies
    chorus-debate evaluate runs/debate/gsm-debate --out scores/  # metrics/report elsewhere
    chorus-debate report runs/debate/gsm-single runs/debate/gsm-debate --out cmp.md

and from Python::

    from chorus_debate.pipeline import generate, score
    from chorus_debate.recipes import load_recipe
    run = generate(load_recipe("gsm_default", limit=2), out="runs/try")
    print(score(run)["accuracy"])

The run folder contract (config.json, records.jsonl, metrics.json, report.md) is described in
ARCHITECTURE.md at the repository root.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from chorus_debate.debate import DebateEngine, DebateSetup
from chorus_debate.evaluate import evaluate_run, pct, write_run_report
from chorus_debate.methods import plan_method
from chorus_debate.recipes import DebateRecipe
from chorus_debate.tasks import get_task
from chorus_shared.data import track_data_reads
from chorus_shared.engine import RayOptions, run_windows, start_run
from chorus_shared.models import ChatModel, SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import OutputFolder, RunDir


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

        def run_window(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # Plain JSON objects: what RunDir stores and what Ray sends back to the driver.
            return [record.to_json() for record in engine.run(items)]

        return run_window


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
    seed = task.default_seed if recipe.seed is None else recipe.seed
    recipe = replace(recipe, task=task.name, seed=seed)
    # Built before the run folder so a bad value (SamplingParams checks the sampling fields)
    # leaves nothing behind to mismatch on resume.
    factory = EngineFactory(
        recipe,
        specs,
        params=SamplingParams(
            max_new_tokens=recipe.max_new_tokens,
            temperature=recipe.temperature,
            top_p=recipe.top_p,
            repetition_penalty=recipe.repetition_penalty,
            min_p=recipe.min_p,
            seed=recipe.seed,
        ),
        judge_params=SamplingParams(max_new_tokens=recipe.judge_max_new_tokens),
    )
    # Data first: a wrong --data-dir fails before a run folder exists, and the fingerprint of
    # what was read goes into config.json so a resume on other data is refused.
    with track_data_reads() as data_fingerprint:
        items = task.load(recipe.limit, seed, recipe.data_dir)
    # The engine adds item_ids (what evaluate accepts) and the data fingerprint to config.json
    # and takes the writer lock before any compute, so a second writer is refused at once.
    run = start_run(
        out or Path("runs") / "debate" / f"{task.name}-{recipe.method}",
        {
            "recipe": recipe.identity(),
            "task": {"name": task.name, "version": task.version},
            "runtime": recipe.runtime(),
        },
        items,
        data=data_fingerprint,
        overwrite=overwrite,
    )
    # A model that cannot load (or fails at once) leaves no new, empty run folder; a window
    # that failed whole stops the run after storing it.
    run_windows(
        run,
        items,
        factory,
        window=recipe.window,
        desc=f"{task.name}/{recipe.method} windows",
        ray=ray,
    )
    return run


def _coverage(metrics: dict[str, Any]) -> str:
    expected = metrics.get("expected_items")
    items = metrics["items"]
    return f"{items} items" if expected is None else f"{items} of {expected} items"


def summary(metrics: dict[str, Any]) -> str:
    """Return the one-line result of a run that ``generate``/``evaluate`` print."""
    by_round = metrics.get("accuracy_by_round")
    rounds = " → ".join(pct(s) for s in by_round) if by_round else "–"
    return (
        f"{metrics['task']} {metrics['method']}: accuracy {pct(metrics['accuracy'])} % "
        f"over {_coverage(metrics)} (by round: {rounds}); "
        f"unparseable {metrics['unparseable']}, errored items {metrics['errors']}, "
        f"skipped records {metrics['skipped_records']}"
    )


def score(run: RunDir, out: str | Path | None = None) -> dict[str, Any]:
    """Grade ``run``'s stored replies, say what the reader skipped, and write metrics.json and
    report.md into the run folder, or into ``out`` when given; return the metrics.

    Without ``out``, a run folder that cannot be written (read-only) gets the metrics printed
    instead, with a note saying so.
    """
    metrics = evaluate_run(run, write=False)
    for note in metrics["notes"]:
        print(f"chorus-debate: note: {note}", file=sys.stderr)
    if out is not None:
        folder = OutputFolder(out)
        folder.write_metrics(metrics)
        write_run_report(folder, metrics)
        return metrics
    try:
        run.write_metrics(metrics)
        write_run_report(run, metrics)
    except OSError as err:
        print(
            f"chorus-debate: cannot write into {run.path} ({err.strerror or err}); "
            "printing the metrics instead of saving them (pass --out DIR to save them there)",
            file=sys.stderr,
        )
        print(json.dumps(metrics, indent=2, ensure_ascii=False))
    return metrics
