"""The SelFee pipeline: teacher data -> training -> revision-enforced answers -> judge.

``chorus-selfee`` (cli.py) only parses flags and calls these functions. From a shell::

    chorus-selfee generate --recipe offline --out runs/selfee/data        # teacher chains
    chorus-selfee train --recipe offline --data runs/selfee/data --out runs/selfee/train
    chorus-selfee train --recipe paper_llama7b --data feedback_merged_whole.json --out ...
    chorus-selfee infer --recipe offline --model hf:runs/selfee/train --max-num-revision 2 \\
        --out runs/selfee/infer-k2
    chorus-selfee evaluate --answers runs/selfee/infer-k2 --reference chatgpt.jsonl \\
        --judge openai:gpt-4 --out runs/selfee/eval-k2
    chorus-selfee report runs/selfee/eval-k0 runs/selfee/eval-k2 --out runs/selfee/report
    chorus-selfee serve --model hf:runs/selfee/train

and from Python::

    from chorus_selfee.pipeline import infer
    from chorus_selfee.recipes import load_recipe
    run, metrics = infer(load_recipe("offline", limit=2), out="runs/try")

generate, infer and evaluate write through the shared run engine (``chorus_shared.engine``):
``item_ids`` and the fingerprint of every input file go into config.json (a resume on
changed inputs is refused), the writer lock is taken before any compute, finished items are
skipped on resume, a failed reply is an errored record (never graded or judged, retried on
resume), a window that errored whole stops the run (exit != 0), and ``--ray`` fans windows
out over Ray actors. Bad input fails before a run folder exists.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_selfee.constrained import ConstrainedChooser
from chorus_selfee.datasets import load_instructions
from chorus_selfee.enforce import enforce_generate, load_continuer
from chorus_selfee.evaluate import (
    evaluate_metrics,
    generate_metrics,
    infer_metrics,
    load_answers,
    run_verb,
    write_outputs,
)
from chorus_selfee.judge import judge_likelihood, judge_pairwise, judge_reviews
from chorus_selfee.recipes import SelfeeRecipe
from chorus_selfee.records import ORDERS, InferRecord
from chorus_selfee.teacher import generate_feedback_data
from chorus_selfee.training_data import read_original_records, training_records
from chorus_shared.data import load_dataset_records, track_data_reads
from chorus_shared.engine import RayOptions, errored_record, run_windows, start_run
from chorus_shared.judges import available_judge_schemes, load_pairwise_judge
from chorus_shared.models import ChatModel, SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import RunDir

Record = dict[str, Any]
WindowFn = Callable[[list[Record]], list[Record]]
TASK_VERSION = 2  # 2: typed records, the original's final answer and score parsing


def _chat_model(spec: str, recipe: SelfeeRecipe) -> ChatModel:
    backend, _ = parse_spec(spec)
    opts = {"batch_size": recipe.batch_size} if backend in ("hf", "default") else {}
    return load_chat_model(spec, **opts)


def window_seed(seed: int, items: list[Record]) -> int:
    """Returns a window's sampling seed: derived from its first id, so a resume draws the same."""
    return seed + zlib.crc32(str(items[0]["id"]).encode()) % 1_000_000


def _config(recipe: SelfeeRecipe, verb: str, **extra: Any) -> dict[str, Any]:
    return {
        "recipe": recipe.identity(verb),
        "task": {"name": f"selfee-{verb}", "version": TASK_VERSION},
        "runtime": recipe.runtime(),
        **extra,
    }


# -- generate --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TeacherWorker:
    """Loads the teacher once and returns the window function (picklable, for Ray)."""

    recipe: SelfeeRecipe

    def __call__(self) -> WindowFn:
        """Returns the function turning a window of instructions into teacher records."""
        r = self.recipe
        teacher = _chat_model(r.teacher, r)
        chooser = (
            ConstrainedChooser(teacher, batch_size=r.batch_size)
            if r.teacher_verdict == "constrained"
            else None
        )

        def run_window(items: list[Record]) -> list[Record]:
            params = SamplingParams(temperature=r.temperature, seed=window_seed(r.seed, items))
            return generate_feedback_data(
                teacher,
                items,
                params,
                max_iterations=r.max_iterations,
                use_reference=r.use_reference,
                chooser=chooser,
                tokens=(r.answer_tokens, r.critique_tokens, r.revision_tokens),
            )

        return run_window


def generate(
    recipe: SelfeeRecipe,
    out: str | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> tuple[RunDir, dict[str, Any]]:
    """Runs the teacher over the instruction set into a run folder (resuming); returns the
    run and its metrics (also written as metrics.json and report.md)."""
    parse_spec(recipe.teacher)
    SamplingParams(temperature=recipe.temperature)  # a bad value fails before the folder
    with track_data_reads() as data:
        items = load_instructions(recipe.instructions, recipe.split, recipe.data_dir)[
            : recipe.limit
        ]
    run = start_run(
        out or f"runs/selfee/generate-{recipe.instructions}",
        _config(recipe, "generate"),
        items,
        data=data,
        overwrite=overwrite,
    )
    run_windows(
        run, items, TeacherWorker(recipe), window=recipe.window, desc="generate windows", ray=ray
    )
    metrics = generate_metrics(run)
    write_outputs(run, metrics)
    return run, metrics


# -- train -----------------------------------------------------------------------------------


def training_source(source: str) -> list[Record]:
    """Returns the data records of a ``generate`` run folder (finished, typed) or of a file in
    the original's format (``.json``/``.jsonl``, no ids needed)."""
    path = Path(source)
    if path.is_dir():
        from chorus_selfee.evaluate import typed_records
        from chorus_selfee.records import TeacherRecord

        run = RunDir.open(path)
        if run_verb(run) != "generate":
            raise ValueError(f"{source} is a {run_verb(run)} run; train takes generate runs")
        recs, read = typed_records(run, TeacherRecord.from_json)
        for note in read.notes():
            print(f"chorus-selfee: note: {note}", file=sys.stderr)
        return [{"id": r.id, **r.to_original()} for r in recs]
    if not path.is_file():
        raise FileNotFoundError(
            f"training data {source!r}: neither a generate run folder nor a .json/.jsonl file"
        )
    return read_original_records(path)


def train(recipe: SelfeeRecipe, data: str, out: str, records_only: bool = False) -> dict[str, Any]:
    """Writes the training examples (and fine-tunes through ``chorus_shared.training`` unless
    ``records_only``); returns the counts and, when trained, the model folder and metrics."""
    recs, skipped = training_records(training_source(data), recipe.objective)
    if not recs:
        raise ValueError(f"no usable records in {data} ({skipped} skipped)")
    if not records_only:
        from chorus_shared.training import check_base_model, load_train_recipe

        # Before train_records.jsonl is written: a base model that cannot load leaves no
        # folder behind (train() removes its own new run, but not a folder holding records).
        check_base_model(load_train_recipe(recipe.train))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    records_file = folder / "train_records.jsonl"
    with records_file.open("w") as f:
        for rec in recs:
            f.write(json.dumps(rec) + "\n")
    result: dict[str, Any] = {
        "records": len(recs),
        "skipped": skipped,
        "records_file": str(records_file),
    }
    if records_only:
        return result
    from chorus_shared.training import load_train_recipe
    from chorus_shared.training import train as train_model

    trained = train_model(load_train_recipe(recipe.train), recs, folder)
    result.update({"model_dir": str(trained.model_dir), "metrics": trained.metrics})
    return result


# -- infer -----------------------------------------------------------------------------------


def questions(recipe: SelfeeRecipe) -> list[Record]:
    """Returns the evaluation questions: the first ``per_category`` of each category (all when
    null), in file order, then the first ``limit``."""
    items = load_instructions(recipe.eval_set, "test", recipe.data_dir)
    if recipe.per_category is not None:
        seen: dict[str, int] = {}
        kept = []
        for q in items:
            seen[q["category"]] = seen.get(q["category"], 0) + 1
            if seen[q["category"]] <= recipe.per_category:
                kept.append(q)
        items = kept
    return items[: recipe.limit]


@dataclass(frozen=True)
class InferWorker:
    """Loads the SelFee model once (raw prompts) and returns the window function."""

    recipe: SelfeeRecipe

    def __call__(self) -> WindowFn:
        """Returns the function turning a window of questions into infer records."""
        r = self.recipe
        continuer = load_continuer(
            r.model, temperature=r.infer_temperature, timeout_s=r.request_timeout, window=r.window
        )

        def run_window(items: list[Record]) -> list[Record]:
            results = enforce_generate(
                continuer,
                [(q["instruction"], q.get("input") or "") for q in items],
                max_num_revision=r.max_num_revision,
                max_new_tokens=r.infer_max_new_tokens,
                seed=window_seed(r.seed, items),
            )
            out = []
            for q, res in zip(items, results, strict=True):
                if res.error is not None:
                    out.append(errored_record(q["id"], res.error, category=q["category"]))
                    continue
                out.append(
                    InferRecord(
                        id=q["id"],
                        category=q["category"],
                        instruction=q["instruction"],
                        generation=res.text,
                        forced=res.forced,
                        rounds=res.rounds,
                        tokens=res.tokens,
                        finish=res.finish,
                    ).to_json()
                )
            return out

        return run_window


def infer(
    recipe: SelfeeRecipe,
    out: str | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> tuple[RunDir, dict[str, Any]]:
    """Answers the evaluation questions with (or without) enforced revisions into a run folder
    (resuming); returns the run and its metrics."""
    parse_spec(recipe.model)
    SamplingParams(temperature=recipe.infer_temperature)
    with track_data_reads() as data:
        items = questions(recipe)
    run = start_run(
        out or f"runs/selfee/infer-{recipe.eval_set}-k{recipe.max_num_revision}",
        _config(recipe, "infer"),
        items,
        data=data,
        overwrite=overwrite,
    )
    run_windows(
        run, items, InferWorker(recipe), window=recipe.window, desc="infer windows", ray=ray
    )
    metrics = infer_metrics(run)
    write_outputs(run, metrics)
    return run, metrics


# -- evaluate --------------------------------------------------------------------------------


def judge_kind(recipe: SelfeeRecipe) -> str:
    """Returns "plugin" (a pairwise judge named by an installed scheme), "likelihood" or
    "chat"; raises ``ValueError`` for a spec that is neither."""
    if recipe.judge.partition(":")[0] in available_judge_schemes():
        return "plugin"
    try:
        parse_spec(recipe.judge)
    except ValueError as exc:
        schemes = ", ".join(available_judge_schemes()) or "none installed (e.g. chorus-blender)"
        raise ValueError(
            f"{exc}; a pairwise judge spec is '<scheme>:<target>' ({schemes})"
        ) from exc
    return "likelihood" if recipe.judge_scores == "likelihood" else "chat"


@dataclass(frozen=True)
class JudgeWorker:
    """Loads the judge once and returns the window function (picklable, for Ray)."""

    recipe: SelfeeRecipe
    kind: str

    def __call__(self) -> WindowFn:
        """Returns the function turning a window of evaluate items into judge records."""
        r = self.recipe
        if self.kind == "plugin":
            plugin = load_pairwise_judge(r.judge)
            return lambda items: judge_pairwise(plugin, items)
        prompts = {
            p["category"]: p
            for p in load_dataset_records("vicuna80-judge", "test", path=r.data_dir)
        }
        judge = _chat_model(r.judge, r)
        chooser = (
            ConstrainedChooser(judge, batch_size=r.batch_size)
            if self.kind == "likelihood" or r.judge_scores == "constrained"
            else None
        )
        if self.kind == "likelihood":
            return lambda items: judge_likelihood(chooser, prompts, items)

        def run_window(items: list[Record]) -> list[Record]:
            params = SamplingParams(
                max_new_tokens=r.judge_max_new_tokens,
                temperature=r.judge_temperature,
                seed=window_seed(r.seed, items),
            )
            return judge_reviews(judge, prompts, items, params, chooser)

        return run_window


def evaluate(
    recipe: SelfeeRecipe,
    answers: str,
    reference: str,
    out: str | None = None,
    overwrite: bool = False,
    ray: RayOptions | None = None,
) -> tuple[RunDir, dict[str, Any]]:
    """Judges the answers against the reference (chat judge: each question in both orders;
    pairwise or likelihood judge: one both-orders preference per question) into a run folder
    (resuming); returns the run and its metrics. Questions without an answer on either side
    are not judged; the metrics say "k of n questions"."""
    kind = judge_kind(recipe)
    mine, mine_print, mine_info = load_answers(answers, recipe.eval_set)
    ref, ref_print, ref_info = load_answers(reference, recipe.eval_set)
    with track_data_reads() as data:
        qs = questions(recipe)
        if kind != "plugin":
            load_dataset_records("vicuna80-judge", "test", path=recipe.data_dir)
    data = {**data, "answers": mine_print, "reference": ref_print}
    usable = [q for q in qs if q["id"] in mine and q["id"] in ref]
    unanswered = [q["id"] for q in qs if q["id"] not in mine or q["id"] not in ref]
    if not usable:
        raise ValueError(
            f"none of the {len(qs)} questions has an answer in both {answers} and {reference} "
            f"(ids like {qs[0]['id'] if qs else '?'}); check --eval-set and the files"
        )
    items = []
    for q in usable:
        base = {
            "question": q["id"],
            "category": q["category"],
            "instruction": q["instruction"],
            "model_answer": mine[q["id"]],
            "reference_answer": ref[q["id"]],
        }
        if kind == "chat":
            items += [{"id": f"{q['id']}-{o}", "order": o, **base} for o in ORDERS]
        else:
            items.append({"id": f"{q['id']}-pairwise", **base})
    for note in mine_info["notes"] + ref_info["notes"]:
        print(f"chorus-selfee: note: {note}", file=sys.stderr)
    config = _config(
        recipe,
        "evaluate",
        questions=len(qs),
        unanswered=unanswered,
        answers_k=mine_info["k"],
    )
    config["recipe"]["kind"] = "chat" if kind == "chat" else "pairwise"
    config["runtime"] = {**config["runtime"], "answers": answers, "reference": reference}
    run = start_run(out or "runs/selfee/evaluate", config, items, data=data, overwrite=overwrite)
    run_windows(
        run, items, JudgeWorker(recipe, kind), window=recipe.window, desc="judge windows", ray=ray
    )
    metrics = evaluate_metrics(run)
    write_outputs(run, metrics)
    return run, metrics


def rescore(run_dir: str, out: str | None = None) -> dict[str, Any]:
    """Recomputes a run's metrics from its records (any selfee run); writes metrics.json and
    report.md into the run, or into ``out``; returns the metrics."""
    run = RunDir.open(run_dir)
    verb = run_verb(run)
    metrics = (
        evaluate_metrics(run)
        if verb == "evaluate"
        else (generate_metrics(run) if verb == "generate" else infer_metrics(run))
    )
    write_outputs(run, metrics, out)
    return metrics
