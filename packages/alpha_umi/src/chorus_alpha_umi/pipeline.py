"""The alpha-UMi pipeline: data -> GLPFT training -> static and real-time evaluation.

``chorus-alpha-umi`` (cli.py) only parses flags and calls these functions. From a shell::

    chorus-alpha-umi preprocess --split out_of_domain --part train --out runs/alpha_umi/data
    chorus-alpha-umi train --stage backbone --data runs/alpha_umi/data --out runs/alpha_umi/bb
    chorus-alpha-umi evaluate --recipe static_default --limit 20 --out runs/alpha_umi/static
    chorus-alpha-umi evaluate --mode backbone --model hf:runs/alpha_umi/bb/model --out runs/s
    chorus-alpha-umi evaluate runs/alpha_umi/static            # re-score a run's stored replies
    chorus-alpha-umi run --model default --limit 5 --out runs/alpha_umi/episodes
    chorus-alpha-umi evaluate --episodes runs/a --reference runs/b --judge default --out runs/rt
    chorus-alpha-umi report runs/alpha_umi/static runs/s --out cmp.md

and from Python::

    from chorus_alpha_umi.pipeline import evaluate_static, score
    from chorus_alpha_umi.recipes import load_recipe
    run = evaluate_static(load_recipe("static_default", limit=2), out="runs/try")
    print(score(run)["plan_acc"])

Every long step goes through the shared run engine (:mod:`chorus_shared.engine`): item ids
and the data fingerprint in config.json (a resume on changed inputs is refused), the writer
lock, resume by id, errored items kept with their reason and retried, a window that errored
whole stops the run (exit != 0), ``--ray`` fan-out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_alpha_umi.agent import new_episode, run_episodes
from chorus_alpha_umi.evaluate import (
    episode_metrics,
    pair_metrics,
    read_episodes,
    static_metrics,
    static_report,
    write_outputs,
)
from chorus_alpha_umi.glpft import GlpftRecipe
from chorus_alpha_umi.judge import judge_episodes
from chorus_alpha_umi.realtime import KIND as REALTIME
from chorus_alpha_umi.realtime import judge_window, pair_up, realtime_table
from chorus_alpha_umi.recipes import ROLES, AgentRecipe
from chorus_alpha_umi.records import EpisodeRecord
from chorus_alpha_umi.static import gold_steps, load_dialogs, predict_window, select_part
from chorus_alpha_umi.tools import SimulatedTools
from chorus_shared.data import track_data_reads
from chorus_shared.engine import RayOptions, errored_record, run_windows, start_run
from chorus_shared.models import ChatModel, SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import RunDir

PKG = "chorus-alpha-umi"
Record = dict[str, Any]


class Models:
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


def load_dialog_part(recipe: AgentRecipe) -> list[dict[str, Any]]:
    """Return the recipe's dialogs: its part of the split, then the first ``limit``."""
    dialogs = select_part(load_dialogs(recipe.split, recipe.data_dir), recipe.part)
    return dialogs if recipe.limit is None else dialogs[: recipe.limit]


# -- static ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticWorker:
    """Builds the role models of a static run; picklable (Ray workers build replicas)."""

    recipe: AgentRecipe

    def __call__(self) -> Callable[[list[Record]], list[Record]]:
        """Return the function that turns a window of steps into step records."""
        models = Models(self.recipe)
        params = {role: self.recipe.params(role) for role in ROLES}

        def run_window(steps: list[Record]) -> list[Record]:
            return predict_window(
                steps,
                models,
                params,
                mode=self.recipe.mode,
                gold_routed_diagnostic=self.recipe.gold_routed_diagnostic,
            )

        return run_window


def evaluate_static(
    recipe: AgentRecipe,
    out: str | Path | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> RunDir:
    """Predict every gold step of the recipe's dialogs into a run folder (resuming finished
    steps); return the run. Bad data fails before any folder exists."""
    with track_data_reads() as data:
        dialogs = load_dialog_part(recipe)
    steps: list[Record] = []
    defects = without = 0
    for dialog in dialogs:
        found, bad = gold_steps(dialog, recipe.mode)
        steps += found
        defects += bad
        without += not found
    run = start_run(
        out or Path("runs") / "alpha_umi" / f"static-{recipe.mode}-{recipe.split}",
        {
            "kind": "static",
            "recipe": recipe.identity(),
            "task": {
                "name": f"toolbench-{recipe.split}",
                "dialogs": len(dialogs),
                "dialogs_without_steps": without,
                "defective_gold_steps": defects,
            },
            "runtime": recipe.runtime(),
        },
        steps,
        data=data,
        overwrite=overwrite,
    )
    run_windows(run, steps, StaticWorker(recipe), window=recipe.window, desc="steps", ray=ray)
    return run


# -- real time: episodes -------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeWorker:
    """Builds the role models, the API simulator and the judge of a `run`; picklable."""

    recipe: AgentRecipe
    cache: str

    def __call__(self) -> Callable[[list[Record]], list[Record]]:
        """Return the function that runs a window of queries to their end."""
        recipe = self.recipe
        models = Models(recipe)
        params = {role: recipe.params(role, episodes=True) for role in ROLES}
        env = SimulatedTools(
            models.load(recipe.simulator or recipe.spec("planner")),
            self.cache,
            params["summarizer"],
        )
        judge_params = SamplingParams(max_new_tokens=recipe.judge_max_new_tokens)

        def run_window(dialogs: list[Record]) -> list[Record]:
            episodes = [
                new_episode(d["id"], d["tools"], d.get("instruction") or "") for d in dialogs
            ]
            done = run_episodes(
                episodes,
                models,
                env,
                params,
                max_turns=recipe.max_turns,
                observation_chars=recipe.observation_chars,
            )
            finished = [e for e in done if e["status"] != "error"]
            if recipe.judge is not None and finished:
                # Judged window by window: a record is stored with its verdict (resumable).
                judge_episodes(finished, models.load(recipe.judge), judge_params)
            records = []
            for e in done:
                reason = e.get("error") or e.get("judge_error")
                if reason:
                    records.append(errored_record(e["id"], reason))
                    continue
                fields = {k: v for k, v in e.items() if k in EpisodeRecord.__dataclass_fields__}
                records.append(EpisodeRecord(**fields).to_json())
            return records

        return run_window


def run_realtime(
    recipe: AgentRecipe,
    out: str | Path | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> RunDir:
    """Run one episode per query of the recipe's dialogs against the API simulator; return
    the run folder (one :class:`EpisodeRecord` per query)."""
    with track_data_reads() as data:
        dialogs = load_dialog_part(recipe)
    out = Path(out or Path("runs") / "alpha_umi" / f"episodes-{recipe.split}")
    cache = Path(recipe.simulator_cache or out / "simulator_cache.jsonl")
    items = [
        {"id": d["id"], "tools": d["tools"], "instruction": d.get("instruction")} for d in dialogs
    ]
    run = start_run(
        out,
        {"kind": "episodes", "recipe": recipe.identity(), "runtime": recipe.runtime()},
        items,
        data=data,
        overwrite=overwrite,
    )
    worker = EpisodeWorker(recipe, str(cache))
    run_windows(run, items, worker, window=recipe.window, desc="episodes", ray=ray)
    return run


# -- real time: pass and win rate of two episode runs ----------------------------------------


def _fingerprint(path: Path) -> str:
    data = path.read_bytes() if path.is_file() else b""
    return f"sha256:{hashlib.sha256(data).hexdigest()}:{len(data)}"


@dataclass(frozen=True)
class JudgeWorker:
    """Builds the judge of a real-time comparison; picklable."""

    recipe: AgentRecipe

    def __call__(self) -> Callable[[list[Record]], list[Record]]:
        """Return the function that judges a window of ``{id, episode, reference}`` items."""
        assert self.recipe.judge is not None
        judge = Models(self.recipe).load(self.recipe.judge)
        params = SamplingParams(max_new_tokens=self.recipe.judge_max_new_tokens)

        def run_window(items: list[Record]) -> list[Record]:
            return judge_window([(i["episode"], i["reference"]) for i in items], judge, params)

        return run_window


def _episodes_of(path: str | Path) -> dict[str, Record]:
    records, read = read_episodes(RunDir.open(path))
    if not records:
        notes = "".join(f"\n  {n}" for n in read.notes())
        raise ValueError(
            f"{path} holds no finished episodes; run `chorus-alpha-umi run` first{notes}"
        )
    return {r.id: r.to_json() for r in records}


def evaluate_realtime(
    recipe: AgentRecipe,
    episodes: str | Path,
    reference: str | Path,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> RunDir:
    """Judge two `run` folders on the same queries (pass rate of each, win rate of
    ``episodes`` over ``reference``) into a run folder; return it."""
    if recipe.judge is None:
        raise ValueError("real-time evaluation needs a judge: pass --judge SPEC (e.g. default)")
    pairs = pair_up(_episodes_of(episodes), _episodes_of(reference))
    items = [{"id": m["id"], "episode": m, "reference": r} for m, r in pairs]
    data = {
        f"{side}/records.jsonl": _fingerprint(Path(path) / "records.jsonl")
        for side, path in (("episodes", episodes), ("reference", reference))
    }
    config = {
        "kind": REALTIME,
        "recipe": {
            "episodes": str(episodes),
            "reference": str(reference),
            "judge": recipe.judge,
            "judge_max_new_tokens": recipe.judge_max_new_tokens,
        },
        "runtime": recipe.runtime(),
    }
    run = start_run(
        out or Path("runs") / "alpha_umi" / "realtime", config, items, data=data,
        overwrite=overwrite,
    )  # fmt: skip
    run_windows(run, items, JudgeWorker(recipe), window=recipe.window, desc="judge")
    return run


# -- scoring any alpha-UMi run ---------------------------------------------------------------


def score(run: RunDir, out: str | Path | None = None) -> dict[str, Any]:
    """Score ``run`` by its kind (static, episodes, realtime); write metrics.json and
    report.md into it (or into ``out``); return the metrics."""
    kind = run.config.get("kind", "static")
    if kind == REALTIME:
        metrics = pair_metrics(run)
        report = (
            "# alpha-UMi real-time evaluation\n\n"
            + realtime_table([(run.path.name, run.config, metrics)])
            + f"\n\n{metrics['coverage']}, {metrics['errors']} errored.\n"
        )
    elif kind == "episodes":
        metrics = episode_metrics(run)
        report = None
    else:
        metrics = static_metrics(run)
        report = static_report(run, metrics)
    write_outputs(run, metrics, report, out, PKG)
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """Return the JSON that the CLI prints after a run or an evaluation."""
    return json.dumps({k: v for k, v in metrics.items() if k != "notes"}, indent=2)


# -- data and training -------------------------------------------------------------------


def preprocess_data(
    inputs: list[str],
    out: str | Path,
    *,
    split: str | None = None,
    part: str = "all",
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Write the backbone / planner / caller / summarizer training files under ``out`` from
    ToolBench answer trees or dialogs (``inputs``) or from a test split's part; return the
    stats. Every input is read and checked before anything is written."""
    from chorus_alpha_umi.preprocess import dialogs_from_inputs, write_role_files

    if bool(inputs) == bool(split):
        raise ValueError("give either input files/folders or --split, not both or neither")
    if split:
        dialogs = select_part(load_dialogs(split, data_dir), part)
        return write_role_files(dialogs, out, split=split, part=part)
    if part != "all":
        raise ValueError("--part selects dialogs of --split; it does not apply to inputs")
    dialogs, stats = dialogs_from_inputs(inputs)
    return write_role_files(dialogs, out, stats)


def train_stage(
    recipe: GlpftRecipe, stage: str, data: str | Path, out: str | Path
) -> dict[str, Any]:
    """Train one GLPFT stage with :func:`chorus_shared.training.train`; return where the model
    is and the training metrics. A base model without a chat template trains on the
    original's raw "system: " + prompt text."""
    from chorus_alpha_umi.glpft import read_stage_records, stage_recipe
    from chorus_shared.training import load_train_recipe, train

    train_recipe = load_train_recipe(stage_recipe(recipe, stage))
    records = read_stage_records(data, stage, raw_text=_without_chat_template(train_recipe.model))
    if recipe.limit is not None:
        records = records[: recipe.limit]
    result = train(train_recipe, records, out)
    return {"model_dir": str(result.model_dir), **result.metrics}


def _without_chat_template(spec: str) -> bool:
    """Return True when the base model's tokenizer has no chat template (then the stage
    trains on the original's raw "system: " + input text)."""
    kind, target = parse_spec(spec)
    if kind not in ("hf",) or not target or not Path(target).is_dir():
        return False  # the embedded default and hub models of the recipes have a template
    config = Path(target) / "tokenizer_config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return not data.get("chat_template") and not (Path(target) / "chat_template.jinja").is_file()
