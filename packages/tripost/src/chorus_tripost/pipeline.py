"""The TriPosT pipeline: task items, collection, evaluation, helper checks and reports.

``chorus-tripost`` (cli.py) only parses flags and calls these functions (and
``training.run_training``). The same steps from a shell::

    chorus-tripost make-data --task multistep_arithmetic --split test --out items.jsonl
    chorus-tripost train --recipe arithmetic_offline --num-iterations 2 --out runs/tripost/a
    chorus-tripost evaluate --recipe arithmetic_offline --model hf:runs/tripost/a/iter-2/train \\
        --label "TriPosT (2 it.)" --out runs/tripost/a-eval
    chorus-tripost evaluate --recipe arithmetic_offline --eval-method fewshot --model default \\
        --out runs/tripost/fewshot-eval
    chorus-tripost report runs/tripost/a-eval runs/tripost/fewshot-eval --out table.md

and from Python::

    from chorus_tripost.pipeline import evaluate
    from chorus_tripost.recipes import load_recipe
    metrics = evaluate(load_recipe("arithmetic_offline", eval_limit=2), "default", "runs/try")

Collection and evaluation write through the shared run engine (``chorus_shared.engine``):
item ids and an input fingerprint in config.json, resume by id, errored items kept and retried,
a window that errored whole stops the run with an error, ``--ray`` fans windows out.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_shared.engine import RayOptions, errored_record, run_windows, start_run
from chorus_shared.models import parse_spec
from chorus_shared.redact import redact_urls
from chorus_shared.report import markdown_table
from chorus_shared.runs import RunDir
from chorus_tripost import evaluate as ev
from chorus_tripost import loop, tasks
from chorus_tripost.collection import items_fingerprint
from chorus_tripost.recipes import Recipe
from chorus_tripost.records import EvalRecord
from chorus_tripost.testtime import fewshot_demos, fewshot_generate, self_improve_generate

__all__ = [
    "EvalWorker",
    "check_helper",
    "collect",
    "eval_items",
    "evaluate",
    "make_data",
    "report",
]

Log = Callable[[str], None]
EVAL_METHODS = ("model", "fewshot", "fewshot_si")


# ------------------------------------------------------------------------------ make-data
def make_data(
    task: str,
    split: str,
    *,
    n: int = 100,
    length: int = 3,
    depth: int = 2,
    seed: int = 0,
    limit: int | None = None,
) -> list[dict]:
    """Return task items with ground-truth rationales: a split of the local data (test items
    carry ``eval_split`` seen / unseen) or, for ``split="generated"``, ``n`` generated
    arithmetic items. Bad values are a ``ValueError`` naming the flag."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    if split == "generated":
        if task != "multistep_arithmetic":
            raise ValueError(
                "--split generated is for multistep_arithmetic; the other tasks read the local data"
            )
        items = tasks.generate_arithmetic(n, length=length, depth=depth, seed=seed)
    else:
        items = tasks.load_items(task, split)
        for it in items:
            it["eval_split"] = tasks.seen_unseen(it)
    return items[:limit] if limit else items


# ------------------------------------------------------------------------------ collect
def collect(
    recipe: Recipe, out: str | Path, *, ray: RayOptions | None = None, log: Log = print
) -> dict[str, Any]:
    """Collect one iteration's training data with ``recipe.model`` on the first window into
    ``out``: the sampling rounds (engine runs ``out/collect-r<i>``) and the mixed, weighted
    training records ``out/train.jsonl`` (the original's ``train_itr0.jsonl``); returns the
    statistics (also ``out/stats.json``)."""
    from chorus_tripost.training import (
        collect_rounds,
        mixture,
        round_stats,
        sum_stats,
        window_items,
    )

    parse_spec(recipe.model)  # a typo fails before a run folder exists
    items = tasks.load_items(recipe.task, "train")  # missing data fails before it too
    window = window_items(items, recipe.collect_train_data_window, 1)
    out = Path(out)
    model = None if recipe.method == "ft_demo" else recipe.model
    rounds = collect_rounds(
        recipe, out, window, model, items, recipe.max_data_itr, log, ray,
        stop_at=recipe.max_data_length,
    )  # fmt: skip
    samples, mix = mixture(
        rounds, window, improve_data_ratio=recipe.improve_data_ratio,
        convert_to_turns=recipe.convert_to_turns, seed=recipe.seed,
    )  # fmt: skip
    records = [
        loop.build_record(
            s,
            self_improve_section_weight=recipe.self_improve_section_weight,
            mask_before_att_start_text=recipe.mask_before_att_start_text,
        )
        for s in samples
    ]
    (out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    stats = {
        **sum_stats([round_stats(r) for r in rounds]),
        "rounds": len(rounds),
        "improvement_samples": mix["improvement"],
        "non_improvement_samples": mix["non_improvement"],
        "gold_samples": mix["gold"],
        "records": len(records),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


# ------------------------------------------------------------------------------ evaluate
def eval_items(task: str, limit: int | None, seed: int = 0) -> list[dict]:
    """Return the test items with ``eval_split`` (seen / unseen), at most ``limit`` per split
    (a seeded random subset, the same for every model)."""
    items = tasks.load_items(task, "test")
    for it in items:
        it["eval_split"] = tasks.seen_unseen(it)
    if limit is None:
        return items
    out = []
    for split in ("seen", "unseen"):
        part = [it for it in items if it["eval_split"] == split]
        random.Random(seed).shuffle(part)
        out += part[:limit]
    return out


@dataclass(frozen=True)
class EvalWorker:
    """Builds the evaluated model once; picklable, so Ray actors build their own replica."""

    recipe: Recipe
    model: str
    method: str
    demos: tuple[dict, ...] = ()

    def __call__(self) -> Callable[[list[dict]], list[dict]]:
        """Return the function that turns a window of test items into records."""
        recipe = self.recipe
        if self.method == "model":
            from chorus_tripost.generation import load_raw_model

            raw = load_raw_model(self.model)
        else:
            from chorus_shared.models import load_chat_model

            chat = load_chat_model(self.model)

        def run_window(items: list[dict]) -> list[dict]:
            if self.method == "model":
                states = self_improve_generate(
                    raw, items, max_new_tokens=recipe.eval_max_new_tokens,
                    max_calls=recipe.test_time_calls,
                )  # fmt: skip
            else:
                states = fewshot_generate(
                    chat, items, list(self.demos), max_new_tokens=recipe.eval_max_new_tokens,
                    rounds=(recipe.test_time_calls - 1) // 2 if self.method == "fewshot_si" else 0,
                    seed=recipe.seed,
                )  # fmt: skip
            out = []
            for it, st in zip(items, states, strict=True):
                if st.error is not None:
                    out.append(errored_record(it["id"], st.error, task=it["task"]))
                    continue
                out.append(
                    EvalRecord(
                        id=it["id"],
                        task=it["task"],
                        split=it["eval_split"],
                        question=it["question"],
                        gold=it["answer"],
                        choices=it.get("choices"),
                        answers=st.answers,
                        feedback=st.feedback,
                        finish_reason=st.finish_reason,
                        calls=st.calls,
                    ).to_json()
                )
            return out

        return run_window


def evaluate(
    recipe: Recipe,
    model_spec: str,
    out: str | Path,
    *,
    method: str = "model",
    label: str | None = None,
    ray: RayOptions | None = None,
) -> dict[str, Any]:
    """Evaluate on the seen / unseen test items into a resumable run folder; returns the
    metrics (also metrics.json and report.md there). Finished items are never generated again.

    ``method``: ``model`` (a trained raw-text model with test-time self-improvement),
    ``fewshot`` or ``fewshot_si`` (any ChatModel spec, prompted).
    """
    if method not in EVAL_METHODS:
        raise ValueError(f"unknown evaluation method {method!r}; {' | '.join(EVAL_METHODS)}")
    parse_spec(model_spec if not Path(model_spec).exists() else "default")
    items = eval_items(recipe.task, recipe.eval_limit, recipe.seed)
    demos: tuple[dict, ...] = ()
    if method != "model":
        train = tasks.load_items(recipe.task, "train")
        demos = tuple(fewshot_demos(train, recipe.fewshot_k, seed=recipe.seed))
    shown = redact_urls(label or f"{method}:{model_spec}")
    config = {
        "kind": ev.EVAL_KIND,
        "recipe": {
            "task": recipe.task,
            "model": model_spec,
            "eval_limit": recipe.eval_limit,
            "eval_max_new_tokens": recipe.eval_max_new_tokens,
            "test_time_calls": recipe.test_time_calls,
            "fewshot_k": recipe.fewshot_k,
            "seed": recipe.seed,
        },
        "method": method,
        "label": shown,
        "runtime": {"batch_window": recipe.batch_window},
    }
    run = start_run(out, config, items, data=items_fingerprint([*items, *demos]))
    run_windows(
        run,
        items,
        EvalWorker(recipe, model_spec, method, demos),
        window=recipe.batch_window,
        desc=f"evaluate {shown}",
        ray=ray,
    )
    return ev.score(RunDir.open(out))


# ------------------------------------------------------------------------------ report
def report(eval_dirs: list[Path], out: Path | None = None) -> str:
    """Return one markdown table of several evaluation runs, each re-graded from its records
    (also written to ``out``); a folder that is not a tripost evaluation run is a ValueError."""
    rows = []
    for folder in eval_dirs:
        metrics = ev.evaluate_run(RunDir.open(folder))
        for note in metrics["notes"]:
            print(f"chorus-tripost: note: {note}", file=sys.stderr)
        rows.append((metrics["label"], metrics))
    headers, body = ev.accuracy_table(rows)
    table = markdown_table(headers, body)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
    return table


# ------------------------------------------------------------------------------ helper check
def _planted_label(wrong: str, right: str) -> str:
    """Return where ``wrong`` first differs from ``right``: ``step (k)`` or ``final response``."""
    for a, b in zip(wrong.splitlines(), right.splitlines(), strict=False):
        if a != b:
            label = a.split(")", 1)[0].lstrip("(")
            return "final response" if label == "Final response" else f"step ({label})"
    raise ValueError("the planted rationale does not differ from the ground truth")


def check_helper(recipe: Recipe, out_dir: str | Path, *, n: int = 20, log: Log = print) -> dict:
    """Measure the recipe's LLM verifier and improver before a loop relies on them.

    On ``n`` training items (not the demonstrations) whose ground truth reads as right: the
    verifier judges the ground truth and a copy with one planted error (one batched call); the
    improver repairs each planted copy given the ideal feedback (one batched call). Returns
    (and writes to ``out_dir/metrics.json``) the fractions: right rationales accepted, planted
    ones rejected, rejected at the planted step, repairs with the gold answer, and repairs with
    no readable answer. A finished check is not redone.
    """
    from chorus_tripost.helpers import llm_helpers, load_helper_models, pick_demos
    from chorus_tripost.verifier import diff_feedback

    if n < 1:
        raise ValueError(f"--n must be >= 1 (training items to check), got {n}")
    if recipe.verifier_use_scripted:
        raise ValueError("check-helper measures LLM helpers: set verifier_use_scripted false")
    for spec in (recipe.verifier_model, recipe.improver_model):
        parse_spec(spec or "")
    config = {"kind": "tripost-check-helper", "recipe": recipe.identity(), "n": n}
    train = tasks.load_items(recipe.task, "train")  # missing data fails before the run folder
    with RunDir.create(out_dir, config) as run:
        if (Path(out_dir) / "metrics.json").is_file():
            log(f"{out_dir}: checked earlier; metrics.json kept")
            return run.read_metrics()
        demos = pick_demos(train, 2, seed=recipe.seed)
        ids = {d["id"] for d in demos}
        pool = [it for it in train if it["id"] not in ids and ev.is_correct(it, it["rationale"])]
        items = random.Random(recipe.seed + 1).sample(pool, min(n, len(pool)))
        rng = random.Random(recipe.seed)
        wrong = [loop.plant_error(it, rng) for it in items]
        vmodel, imodel = load_helper_models(recipe)
        verify, improve = llm_helpers(
            vmodel, imodel, demos, seed=recipe.seed, check_answers=False,
            max_new_tokens=recipe.helper_max_new_tokens,
        )  # fmt: skip
        log(f"verifier: {2 * len(items)} rationales ({redact_urls(recipe.verifier_model or '')})")
        verdicts = verify(items + items, [it["rationale"] for it in items] + wrong)
        ideal = [diff_feedback(w, it["rationale"]) for it, w in zip(items, wrong, strict=True)]
        log(f"improver: {len(items)} repairs ({redact_urls(recipe.improver_model or '')})")
        repairs = improve(items, wrong, ideal)
        rows = []
        for k, it in enumerate(items):
            on_right, on_wrong = verdicts[k], verdicts[len(items) + k]
            repair = repairs[k]
            error = (
                on_right.error
                or on_wrong.error
                or (None if isinstance(repair, str) else repair.reason)
            )
            if error:
                rows.append(errored_record(it["id"], error))
                continue
            assert isinstance(repair, str)
            where = _planted_label(wrong[k], it["rationale"])
            got = tasks.answer_of(it, repair)
            rows.append(
                {
                    "id": it["id"],
                    "right_accepted": on_right.correct,
                    "wrong_rejected": not on_wrong.correct,
                    "wrong_located": not on_wrong.correct and where in on_wrong.feedback,
                    "planted_at": where,
                    "repair_answer": got,
                    "repair_right": tasks.answers_match(it, got),
                    "feedback_on_right": on_right.feedback,
                    "feedback_on_wrong": on_wrong.feedback,
                    "repair": repair,
                }
            )
        run.append_many(rows)
        done = [r for r in rows if "error" not in r]
        if not done:
            raise RuntimeError(f"every helper reply failed (first: {rows[0]['error']})")
        m = len(done)
        metrics = {
            "n": m,
            "errored": len(rows) - m,
            **{
                key: sum(bool(r[key]) for r in done) / m
                for key in ("right_accepted", "wrong_rejected", "wrong_located", "repair_right")
            },
            "repair_unreadable": sum(r["repair_answer"] is None for r in done) / m,
            "verifier": recipe.verifier_model,
            "improver": recipe.improver_model,
        }
        run.write_metrics(metrics)
    log(redact_urls(json.dumps(metrics)))
    return metrics
