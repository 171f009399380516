"""TriPosT training runs and evaluation runs, as resumable steps of a run folder.

Training run folder (``chorus-tripost train --run-dir R``)::

    R/config.json              the recipe (``num_iterations`` is runtime: a run can be extended)
    R/baseline/                SFT on ground-truth rationales (a chorus_shared.training run)
    R/iter-1/collect/          records.jsonl (training records) + metrics.json (collection stats)
    R/iter-1/train/            weighted SFT from the previous model (a training run)
    R/iter-1/stopped.json      only when too few samples were collected (min_data_length)
    R/metrics.json             per-iteration statistics and the final model's folder

A step is finished when its ``metrics.json`` exists; a resumed run skips finished steps (a
training step interrupted mid-way resumes from its last checkpoint, a collection interrupted
mid-way is collected again: the window is the unit of collection).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypedDict

from chorus_shared.models import SamplingParams, load_chat_model, parse_spec
from chorus_shared.runs import RunDir
from chorus_tripost import evaluate as ev
from chorus_tripost import loop, tasks
from chorus_tripost.generation import load_raw_model
from chorus_tripost.helpers import make_helpers
from chorus_tripost.recipes import Recipe

__all__ = ["collect_window", "run_evaluation", "run_training", "train_recipe", "window_items"]

logger = logging.getLogger(__name__)
Log = Callable[[str], None]


# DeepSpeed configs shipped with this package (the core ships zero2 / zero3 / zero3_offload).
PACKAGE_DEEPSPEED = {"zero2_offload": "ds_zero2_offload.json"}


def deepspeed_config(value: str | None) -> str | None:
    """Return the DeepSpeed config for the recipe: this package's ``zero2_offload`` (ZeRO-2 with
    the optimizer on CPU, the original's setting) as a file path, anything else unchanged."""
    if value in PACKAGE_DEEPSPEED:
        from importlib import resources

        return str(resources.files("chorus_tripost") / "configs" / PACKAGE_DEEPSPEED[value])
    return value


def train_recipe(recipe: Recipe, model: str, epochs: float) -> Any:
    """Return the ``chorus_shared.training.TrainRecipe`` of one SFT step of the run."""
    import torch

    from chorus_shared.training import load_train_recipe

    bf16 = {"auto": "auto", "true": True, "false": False}[recipe.bf16]
    # transformers refuses bf16 without a GPU unless told the run is on CPU on purpose (CPUs
    # with AMX / AVX-512 BF16 train several times faster in bf16 than in fp32).
    extra = {"use_cpu": True} if bf16 is True and not torch.cuda.is_available() else {}
    return load_train_recipe(
        {
            "model": model,
            "max_length": recipe.max_length,
            "num_train_epochs": epochs,
            "max_steps": recipe.max_steps,
            "learning_rate": recipe.learning_rate,
            "per_device_train_batch_size": recipe.per_device_train_batch_size,
            "gradient_accumulation_steps": recipe.gradient_accumulation_steps,
            "lr_scheduler_type": recipe.lr_scheduler_type,
            "warmup_ratio": recipe.warmup_ratio,
            "seed": recipe.seed,
            "bf16": bf16,
            "gradient_checkpointing": recipe.gradient_checkpointing,
            "deepspeed": deepspeed_config(recipe.deepspeed),
            "report_to": recipe.report_to,
            "logging_steps": 1,
            "save_steps": recipe.save_steps,
            "save_total_limit": 1,
            "extra_args": extra,
        }
    )


def window_items(items: list[dict], size: int, iteration: int) -> list[dict]:
    """Return the training items of iteration ``iteration`` (1-based): consecutive windows of
    the (shuffled) training set, wrapping around at its end."""
    start = (iteration - 1) * size
    return [items[(start + k) % len(items)] for k in range(min(size, len(items)))]


class _Weights(TypedDict):
    """The record-building options of a recipe (keywords of loop.build_records and friends)."""

    self_improve_section_weight: float
    mask_before_att_start_text: bool


def _sampled(recipe: Recipe, model: loop.RawModel | None) -> loop.RawModel:
    """Return the model a method samples from (tripost, lmsi); without one, a ValueError."""
    if model is None:
        raise ValueError(f"method {recipe.method!r} samples the model: give a model to collect")
    return model


def collect_window(
    recipe: Recipe,
    model: loop.RawModel | None,
    window: list[dict],
    *,
    train_items: list[dict] | None = None,
    helpers: tuple[loop.Verifier, loop.Improver] | None = None,
) -> tuple[list[dict], dict]:
    """Return (training records, statistics) of one window for ``recipe.method``.

    tripost: the model's own attempts repaired by the verifier / improver; ft_demo: planted
    errors (not the model's) repaired the same way; lmsi: self-consistent samples of the model.
    ``helpers``: (verifier, improver); by default the recipe's (LLM demonstrations drawn from
    ``train_items``, else from the window).
    """
    weights: _Weights = {
        "self_improve_section_weight": recipe.self_improve_section_weight,
        "mask_before_att_start_text": recipe.mask_before_att_start_text,
    }
    gold = window if recipe.add_gold else []
    if recipe.method == "lmsi":
        params = SamplingParams(
            max_new_tokens=recipe.max_new_tokens,
            temperature=recipe.lmsi_temperature,
            stop=(loop.FEEDBACK,),
            seed=recipe.seed,
        )
        prompts = [loop.attempt_prompt(it) for it in window for _ in range(recipe.lmsi_samples)]
        outs = [
            loop.first_answer(c.text) for c in _sampled(recipe, model).complete(prompts, params)
        ]
        k = recipe.lmsi_samples
        samples = [outs[i * k : (i + 1) * k] for i in range(len(window))]
        # One task per window: a multiple-choice answer is any option letter.
        probe = {"task": recipe.task, "choices": "ABCDEFG"}
        chosen, stats = loop.lmsi_select(window, samples, lambda r: tasks.answer_of(probe, r))
        chosen = chosen[: recipe.max_data_length] if recipe.max_data_length else chosen
        records = loop.plain_records(
            chosen, mask_before_att_start_text=recipe.mask_before_att_start_text
        )
        records += loop.build_records([], [], gold, **weights)
        return records, {**stats, "samples": len(chosen), "records": len(records)}
    verify, improve = helpers or make_helpers(recipe, train_items or window)
    if recipe.method == "ft_demo":
        rng = random.Random(recipe.seed)
        attempts = [loop.plant_error(it, rng) for it in window]
        kept, cstats = loop.repair(
            window, attempts, verify=verify, improve=improve,
            max_improvements=recipe.max_improvements,
        )  # fmt: skip
    else:
        params = SamplingParams(
            max_new_tokens=recipe.max_new_tokens, temperature=0.0, stop=(loop.FEEDBACK,)
        )
        kept, cstats = loop.collect(
            _sampled(recipe, model), window, verify=verify, improve=improve,
            max_improvements=recipe.max_improvements, params=params,
        )  # fmt: skip
    stats = cstats.to_dict()
    del stats["rounds_used"]
    if hasattr(verify, "overruled"):  # LLM "correct" verdicts on a wrong answer
        stats["llm_accepted_wrong_answer"] = verify.overruled
    if recipe.convert_to_turns:
        improving, plain = loop.split_turns(kept)
        improving, plain = loop.rebalance(
            improving, plain, improve_data_ratio=recipe.improve_data_ratio, seed=recipe.seed
        )
        if recipe.max_data_length:
            improving = improving[: recipe.max_data_length]
            plain = plain[: max(0, recipe.max_data_length - len(improving))]
        records = loop.build_records(improving, plain, gold, **weights)
        n_samples = len(improving) + len(plain)
        stats.update(improvement_samples=len(improving), plain_samples=len(plain))
    else:
        kept = kept[: recipe.max_data_length] if recipe.max_data_length else kept
        records = loop.trajectory_records(kept, **weights)
        records += loop.build_records([], [], gold, **weights)
        n_samples = len(kept)
    # improvement : non-improvement samples actually kept (the paper's improve_data_ratio)
    plain_n = stats.get("plain_samples", 0)
    stats["ratio"] = stats.get("improvement_samples", 0) / plain_n if plain_n else None
    stats.update(samples=n_samples, records=len(records))
    return records, stats


def phase_runner(use_ray: bool) -> Callable[..., Any]:
    """Return ``call(fn, *args, **kwargs)``: a direct call, or (``use_ray``) one Ray task per
    phase holding a GPU when the cluster has one, as the original ran collect / train / test.

    Ray joins the cluster at ``$RAY_ADDRESS`` when set, else starts a local one. The task's
    result comes back to the caller; the run folder must be on storage the workers share.
    """
    if not use_ray:
        return lambda fn, *args, **kwargs: fn(*args, **kwargs)
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return ray.get(ray.remote(num_gpus=gpus, max_retries=0)(fn).remote(*args, **kwargs))

    return call


def _done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


_WANDB_MODES: tuple[Literal["online", "offline", "disabled", "shared"], ...] = (
    "online",
    "offline",
    "disabled",
    "shared",
)


def _wandb_log(recipe: Recipe, run_dir: Path, step: int, stats: dict) -> None:
    """Log one iteration's collection statistics to wandb (offline unless WANDB_MODE says)."""
    if recipe.report_to != "wandb":
        return
    import wandb

    mode = os.environ.get("WANDB_MODE", "offline")
    if mode not in _WANDB_MODES:
        raise ValueError(f"WANDB_MODE={mode!r}: use one of {', '.join(_WANDB_MODES)}")
    run_id = "tripost-" + hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "chorus-tripost"),
        dir=str(run_dir),
        id=run_id,
        resume="allow",
        mode=mode,
        config=asdict(recipe),
    )
    numbers = {f"collect/{k}": v for k, v in stats.items() if isinstance(v, int | float)}
    run.log({**numbers, "iteration": step})
    run.finish()


def run_training(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    num_iterations: int,
    log: Log = print,
    use_ray: bool = False,
) -> dict:
    """Run (or resume) baseline SFT and ``num_iterations`` loop iterations in ``run_dir``;
    with ``use_ray`` every collection and training phase is a Ray task.

    Returns the run's metrics: per-iteration statistics, ``final_model`` (a folder loadable as
    ``hf:<folder>``) and ``stopped`` (a message when min_data_length ended the loop early).
    """
    from chorus_shared.training import train

    if num_iterations < 0:
        raise ValueError(f"--num-iterations must be >= 0, got {num_iterations}")
    parse_spec(recipe.model)  # a typo fails before a run folder exists
    run_dir = Path(run_dir)
    call = phase_runner(use_ray)
    remote_log = print if use_ray else log  # a worker prints; the driver's callback stays here
    config = {
        "kind": "tripost-train",
        "recipe": asdict(recipe),
        "runtime": {"num_iterations": num_iterations},
    }
    with RunDir.create(run_dir, config) as run:
        items = tasks.load_items(recipe.task, "train")
        random.Random(recipe.seed).shuffle(items)
        base_items = items[: recipe.train_items] if recipe.train_items else items
        baseline = run_dir / "baseline"
        if _done(baseline):
            log(f"baseline SFT: finished earlier ({baseline}); skipping")
        else:
            log(f"baseline SFT on {len(base_items)} ground-truth rationales -> {baseline}")
            gold = loop.build_records(
                [], [], base_items,
                mask_before_att_start_text=recipe.mask_before_att_start_text,
            )  # fmt: skip
            call(train, train_recipe(recipe, recipe.model, recipe.baseline_epochs), gold, baseline)
        current, history, stopped, trained = baseline, [], None, 0
        for k in range(1, num_iterations + 1 if recipe.method != "sft" else 1):
            it_dir = run_dir / f"iter-{k}"
            if (it_dir / "stopped.json").is_file():
                stopped = json.loads((it_dir / "stopped.json").read_text())["message"]
                log(stopped)
                break
            if _done(it_dir / "train"):
                log(f"iteration {k}: finished earlier; skipping")
                history.append(json.loads((it_dir / "collect" / "metrics.json").read_text()))
                current, trained = it_dir / "train", trained + 1
                continue
            records, stats = call(
                _collect_step, recipe, current, items, k, it_dir / "collect", remote_log
            )
            history.append(stats)
            _wandb_log(recipe, run_dir, k, stats)
            if stats["samples"] < recipe.min_data_length:
                stopped = (
                    f"iteration {k}: only {stats['samples']} samples collected, fewer than "
                    f"min_data_length={recipe.min_data_length}; the loop stops here and the "
                    f"model of {current} is the final one"
                )
                (it_dir / "stopped.json").write_text(json.dumps({"message": stopped}))
                log(stopped)
                break
            log(f"iteration {k}: weighted SFT on {len(records)} records from {current}")
            model = f"hf:{current / 'model'}"
            call(
                train,
                train_recipe(recipe, model, recipe.iteration_epochs),
                records,
                it_dir / "train",
            )
            current, trained = it_dir / "train", trained + 1
        metrics = {
            "method": recipe.method,
            "iterations_done": trained,
            "iterations": history,
            "final_model": str(current / "model"),
            "stopped": stopped,
        }
        run.write_metrics(metrics)
    log(f"final model: {current / 'model'} (load as hf:{current / 'model'})")
    return metrics


def _collect_step(
    recipe: Recipe, current: Path, items: list[dict], k: int, folder: Path, log: Log
) -> tuple[list[dict], dict]:
    config = {"kind": "tripost-collect", "iteration": k, "model": str(current / "model")}
    with RunDir.create(folder, config) as run:
        if _done(folder):
            log(f"iteration {k}: collection finished earlier; reusing its records")
            return run.records(), run.read_metrics()
        window = window_items(items, recipe.collect_train_data_window, k)
        model = None
        if recipe.method != "ft_demo":
            model = load_raw_model(f"hf:{current / 'model'}")
        log(f"iteration {k}: collecting on {len(window)} training items ({recipe.method})")
        records, stats = collect_window(recipe, model, window, train_items=items)
        del model
        gc.collect()
        done = run.finished_ids()
        run.append_many([r for r in records if r["id"] not in done])
        run.write_metrics(stats)
        log(f"iteration {k}: " + json.dumps(stats))
        return records, stats


# ------------------------------------------------------------------------------ evaluation
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


def run_evaluation(
    recipe: Recipe,
    model_spec: str,
    out_dir: str | Path,
    *,
    method: str = "model",
    label: str | None = None,
    chunk: int = 16,
    log: Log = print,
) -> dict:
    """Evaluate on the seen / unseen test splits into a resumable run folder.

    ``method``: ``model`` (a trained raw-text model: first attempt and test-time
    self-improvement), ``fewshot`` or ``fewshot_si`` (any ChatModel spec, prompted).
    Returns the summary (also metrics.json); finished items are never generated again.
    """
    if method not in ("model", "fewshot", "fewshot_si"):
        raise ValueError(f"unknown evaluation method {method!r}; model | fewshot | fewshot_si")
    parse_spec(model_spec if not Path(model_spec).exists() else "default")
    items = eval_items(recipe.task, recipe.eval_limit, recipe.seed)
    shown = label or f"{method}:{model_spec}"
    config = {
        "kind": "tripost-evaluate",
        "task": recipe.task,
        "model": model_spec,
        "method": method,
        "label": shown,
        "eval_limit": recipe.eval_limit,
        "eval_max_new_tokens": recipe.eval_max_new_tokens,
        "test_time_rounds": recipe.test_time_rounds,
        "fewshot_k": recipe.fewshot_k,
        "seed": recipe.seed,
    }
    with RunDir.create(out_dir, config) as run:
        done = run.finished_ids()
        todo = [it for it in items if it["id"] not in done]
        if todo:
            if method == "model":
                raw = load_raw_model(model_spec)
            else:
                chat = load_chat_model(model_spec)
                train = tasks.load_items(recipe.task, "train")
                demos = ev.fewshot_demos(train, recipe.fewshot_k, seed=recipe.seed)
            log(f"evaluating {len(todo)} of {len(items)} items ({method}, {model_spec})")
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                if method == "model":
                    states = ev.self_improve_generate(
                        raw, part, max_new_tokens=recipe.eval_max_new_tokens,
                        rounds=recipe.test_time_rounds,
                    )  # fmt: skip
                else:
                    states = ev.fewshot_generate(
                        chat, part, demos, max_new_tokens=recipe.eval_max_new_tokens,
                        rounds=recipe.test_time_rounds if method == "fewshot_si" else 0,
                        seed=recipe.seed,
                    )  # fmt: skip
                run.append_many(
                    [
                        ev.grade(it, st, it["eval_split"])
                        for it, st in zip(part, states, strict=True)
                    ]
                )
                log(f"  {min(start + chunk, len(todo))}/{len(todo)} items")
        summary = ev.summarize(run.records())
        summary["label"] = shown
        run.write_metrics(summary)
        headers, rows = ev.accuracy_table([(shown, summary)])
        from chorus_shared.report import markdown_table

        run.write_report(f"# {shown} on {recipe.task}\n\n{markdown_table(headers, rows)}\n")
    return summary


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

    if recipe.verifier_use_scripted:
        raise ValueError("check-helper measures LLM helpers: set verifier_use_scripted false")
    config = {"kind": "tripost-check-helper", "recipe": asdict(recipe), "n": n}
    with RunDir.create(out_dir, config) as run:
        if _done(Path(out_dir)):
            log(f"{out_dir}: checked earlier; metrics.json kept")
            return run.read_metrics()
        train = tasks.load_items(recipe.task, "train")
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
        log(f"verifier: {2 * len(items)} rationales ({recipe.verifier_model})")
        verdicts = verify(items + items, [it["rationale"] for it in items] + wrong)
        ideal = [diff_feedback(w, it["rationale"]) for it, w in zip(items, wrong, strict=True)]
        log(f"improver: {len(items)} repairs ({recipe.improver_model})")
        repairs = improve(items, wrong, ideal)
        rows = []
        for k, it in enumerate(items):
            on_right, on_wrong = verdicts[k], verdicts[len(items) + k]
            where = _planted_label(wrong[k], it["rationale"])
            got = tasks.answer_of(it, repairs[k])
            rows.append(
                {
                    "id": it["id"],
                    "right_accepted": on_right.correct,
                    "wrong_rejected": not on_wrong.correct,
                    "wrong_located": not on_wrong.correct and where in on_wrong.feedback,
                    "planted_at": where,
                    "repair_answer": got,
                    "repair_right": got is not None and got == it["answer"],
                    "feedback_on_right": on_right.feedback,
                    "feedback_on_wrong": on_wrong.feedback,
                    "repair": repairs[k],
                }
            )
        run.append_many(rows)
        m = len(rows)
        metrics = {
            "n": m,
            **{
                key: sum(bool(r[key]) for r in rows) / m
                for key in ("right_accepted", "wrong_rejected", "wrong_located", "repair_right")
            },
            "repair_unreadable": sum(r["repair_answer"] is None for r in rows) / m,
            "verifier": recipe.verifier_model,
            "improver": recipe.improver_model,
        }
        run.write_metrics(metrics)
    log(json.dumps(metrics))
    return metrics
