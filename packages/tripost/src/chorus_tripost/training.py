"""TriPosT training runs: baseline SFT, then loop iterations (or a baseline method), resumable.

Training run folder (``chorus-tripost train --out R``)::

    R/config.json                 the recipe (``num_iterations`` is runtime: a run can be extended)
    R/baseline/                   SFT on ground-truth rationales (a chorus_shared.training run)
    R/iter-1/collect-r0/ ...      one engine run per sampling round (TrajectoryRecord lines)
    R/iter-1/train/               weighted SFT from the previous model (a training run)
    R/iter-1/stopped.json         only when too few samples were collected (min_data_length)
    R/lmsi/collect-r0/ ... R/lmsi/train/   the LMSI baseline instead of iterations
    R/metrics.json                per-iteration statistics and the final model's folder

A step is finished when its ``metrics.json`` exists; a resumed run skips finished steps (a
training step interrupted mid-way resumes from its last checkpoint, a collection round resumes
by item id). wandb belongs to the training core (``chorus_shared.training``), which gets only
local model folders; collection statistics go to ``metrics.json``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chorus_shared.engine import RayOptions, read_run
from chorus_shared.models import parse_spec
from chorus_shared.redact import redact_urls
from chorus_shared.runs import RunDir
from chorus_tripost import loop, tasks
from chorus_tripost.collection import collect_round, items_fingerprint
from chorus_tripost.recipes import Recipe
from chorus_tripost.records import RecordFormatError, TrajectoryRecord

__all__ = [
    "collect_rounds",
    "lmsi_records",
    "mixture",
    "round_stats",
    "run_training",
    "sum_stats",
    "train_recipe",
    "window_items",
]

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
            "weight_decay": recipe.weight_decay,
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
    """Return the training items of iteration ``iteration`` (1-based) as the original picks
    them: start = ((k - 1) * size mod n) rounded down to a multiple of size; the window ends
    ``size`` later, or at the end of the file when that would run past it."""
    n = len(items)
    start = ((iteration - 1) * size) % n
    start = (start // size) * size
    end = None if start + size > n else start + size
    return items[start:end]


def _done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def _read_round(folder: Path) -> list[TrajectoryRecord]:
    """Return the typed records of a finished collection round; an incomplete round (errored
    items) is a RuntimeError saying how to retry it."""
    run = RunDir.open(folder)
    read = read_run(run)
    note = read.coverage_note()
    if note or read.records.errored:
        raise RuntimeError(
            f"{folder}: {read.coverage()} collected ({len(read.records.errored)} errored); "
            "run the same command again to retry them before training on this round"
        )
    out = []
    for line in read.finished:
        try:
            out.append(TrajectoryRecord.from_json(line))
        except RecordFormatError as err:
            raise RuntimeError(f"{folder}: record {line.get('id')!r} is malformed: {err}") from err
    return out


def mixture(
    rounds: list[list[TrajectoryRecord]],
    window: list[dict],
    *,
    improve_data_ratio: float,
    convert_to_turns: bool = True,
    seed: int = 0,
) -> tuple[list[loop.Sample], dict[str, int]]:
    """Return the training samples of one iteration and their counts, as the original mixes
    them: per sampling round the accepted trajectories' turns, de-duplicated against every
    earlier sample, non-improvement samples rebalanced (:func:`loop.rebalance`); then gold
    samples, ``min(#non-improvement kept, #gold)`` of them, drawn at random."""
    seen: set[str] = set()
    samples: list[loop.Sample] = []
    stats = {"improvement": 0, "non_improvement": 0, "duplicates": 0}
    for k, records in enumerate(rounds):
        improving: list[loop.Sample] = []
        plain: list[loop.Sample] = []
        for r in records:
            if not r.accepted:
                continue
            traj = loop.Trajectory(r.item, list(r.answers), list(r.feedback), True, r.bad_progress)
            imp, pl = loop.trajectory_samples(traj, convert_to_turns=convert_to_turns)
            for s, pool in [(s, improving) for s in imp] + [(s, plain) for s in pl]:
                if s.text in seen:
                    stats["duplicates"] += 1
                    continue
                seen.add(s.text)
                pool.append(s)
        improving, plain = loop.rebalance(
            improving, plain, improve_data_ratio=improve_data_ratio, seed=seed + k
        )
        stats["improvement"] += len(improving)
        stats["non_improvement"] += len(plain)
        samples += improving + plain
    gold = loop.gold_samples(window, seen)
    n_gold = min(stats["non_improvement"], len(gold))
    samples += random.Random(seed).sample(gold, n_gold)
    stats["gold"] = n_gold
    random.Random(seed).shuffle(samples)
    return samples, stats


def round_stats(records: list[TrajectoryRecord]) -> dict[str, int]:
    """Return a round's counts: attempts, right at once, corrected, dropped, bad progress."""
    return {
        "attempts": len(records),
        "correct_first": sum(r.accepted and len(r.answers) == 1 for r in records),
        "corrected": sum(r.accepted and len(r.answers) > 1 for r in records),
        "dropped": sum(not r.accepted for r in records),
        "bad_progress": sum(r.bad_progress for r in records),
    }


def sum_stats(parts: list[dict[str, int]]) -> dict[str, int]:
    """Return the key-wise sums of several rounds' counts."""
    out: dict[str, int] = {}
    for part in parts:
        for k, v in part.items():
            out[k] = out.get(k, 0) + v
    return out


def _check_specs(recipe: Recipe) -> None:
    # A typo fails before a run folder exists.
    parse_spec(recipe.model)
    for spec in (recipe.verifier_model, recipe.improver_model):
        if spec:
            parse_spec(spec)


def run_training(
    recipe: Recipe,
    run_dir: str | Path,
    *,
    num_iterations: int,
    log: Log = print,
    ray: RayOptions | None = None,
) -> dict:
    """Run (or resume) baseline SFT and ``num_iterations`` loop iterations in ``run_dir``
    (``method: lmsi``: the LMSI baseline instead); with ``ray`` the collection windows fan out
    over Ray actors (training scales with ``accelerate launch`` / ``torchrun``).

    Returns the run's metrics: per-iteration statistics, ``final_model`` (a folder loadable as
    ``hf:<folder>``) and ``stopped`` (a message when min_data_length ended the loop early).
    """
    from chorus_shared.training import train

    if num_iterations < 0:
        raise ValueError(f"--num-iterations must be >= 0, got {num_iterations}")
    _check_specs(recipe)
    run_dir = Path(run_dir)
    items = tasks.load_items(recipe.task, "train")  # missing data fails before the run folder
    config = {
        "kind": "tripost-train",
        "recipe": recipe.identity(),
        "data": items_fingerprint(items),
        "runtime": {**recipe.runtime(), "num_iterations": num_iterations},
    }
    # A base model that cannot load fails inside; the new, empty run folder is then removed.
    with RunDir.create(run_dir, config) as run:
        base_items = items[: recipe.train_items] if recipe.train_items else items
        baseline = run_dir / "baseline"
        if _done(baseline):
            log(f"baseline SFT: finished earlier ({baseline}); skipping")
        else:
            log(f"baseline SFT on {len(base_items)} ground-truth rationales -> {baseline}")
            mask = recipe.mask_before_att_start_text
            gold = [loop.gold_sft_record(it, mask_before_att_start_text=mask) for it in base_items]
            train(train_recipe(recipe, recipe.model, recipe.baseline_epochs), gold, baseline)
        if recipe.method == "lmsi":
            metrics = _run_lmsi(recipe, run_dir, items, baseline, log=log, ray=ray)
        else:
            metrics = _run_iterations(recipe, run_dir, items, baseline, num_iterations, log, ray)
        run.write_metrics(metrics)
    log(f"final model: {metrics['final_model']} (load as hf:{metrics['final_model']})")
    return metrics


def collect_rounds(
    recipe: Recipe,
    folder: Path,
    window: list[dict],
    model: str | None,
    items: list[dict],
    rounds: int,
    log: Log,
    ray: RayOptions | None,
    *,
    stop_at: int | None = None,
) -> list[list[TrajectoryRecord]]:
    """Run the sampling rounds of one step (each an engine run); stop early once the
    collected non-duplicate samples reach ``stop_at`` (the original's max_data_length).
    Returns the typed records of each round run."""
    collected: list[list[TrajectoryRecord]] = []
    for i in range(rounds):
        out = folder / f"collect-r{i}"
        log(f"{folder.name}: sampling round {i} on {len(window)} items ({recipe.method})")
        collect_round(recipe, out, window, model=model, sample_round=i, demo_items=items, ray=ray)
        collected.append(_read_round(out))
        if stop_at is not None:
            samples, _ = mixture(
                collected, [], improve_data_ratio=recipe.improve_data_ratio, seed=recipe.seed
            )
            if len(samples) >= stop_at:
                break
    return collected


def _run_iterations(
    recipe: Recipe,
    run_dir: Path,
    items: list[dict],
    baseline: Path,
    num_iterations: int,
    log: Log,
    ray: RayOptions | None,
) -> dict:
    from chorus_shared.training import train

    current, history, stopped, trained = baseline, [], None, 0
    for k in range(1, num_iterations + 1 if recipe.method != "sft" else 1):
        it_dir = run_dir / f"iter-{k}"
        if (it_dir / "stopped.json").is_file():
            stopped = json.loads((it_dir / "stopped.json").read_text())["message"]
            log(stopped)
            break
        if _done(it_dir / "train"):
            log(f"iteration {k}: finished earlier; skipping")
            history.append(json.loads((it_dir / "stats.json").read_text()))
            current, trained = it_dir / "train", trained + 1
            continue
        window = window_items(items, recipe.collect_train_data_window, k)
        model = None if recipe.method == "ft_demo" else f"hf:{current / 'model'}"
        rounds = collect_rounds(
            recipe, it_dir, window, model, items, recipe.max_data_itr, log, ray,
            stop_at=recipe.max_data_length,
        )  # fmt: skip
        samples, mix = mixture(
            rounds,
            window,
            improve_data_ratio=recipe.improve_data_ratio,
            convert_to_turns=recipe.convert_to_turns,
            seed=recipe.seed,
        )
        plain = mix["non_improvement"]
        stats = {
            **sum_stats([round_stats(r) for r in rounds]),
            "rounds": len(rounds),
            "improvement_samples": mix["improvement"],
            "non_improvement_samples": plain,
            "gold_samples": mix["gold"],
            "duplicates": mix["duplicates"],
            "ratio": mix["improvement"] / plain if plain else None,
            "samples": len(samples),
        }
        it_dir.mkdir(parents=True, exist_ok=True)
        (it_dir / "stats.json").write_text(json.dumps(stats, indent=2))
        history.append(stats)
        log(f"iteration {k}: " + json.dumps(stats))
        if len(samples) < recipe.min_data_length:
            stopped = (
                f"iteration {k}: only {len(samples)} samples collected, fewer than "
                f"min_data_length={recipe.min_data_length}; the loop stops here and the "
                f"model of {current} is the final one"
            )
            (it_dir / "stopped.json").write_text(json.dumps({"message": stopped}))
            log(stopped)
            break
        records = [
            loop.build_record(
                s,
                self_improve_section_weight=recipe.self_improve_section_weight,
                mask_before_att_start_text=recipe.mask_before_att_start_text,
            )
            for s in samples
        ]
        log(f"iteration {k}: weighted SFT on {len(records)} records from {current}")
        model_spec = f"hf:{current / 'model'}"
        train(train_recipe(recipe, model_spec, recipe.iteration_epochs), records, it_dir / "train")
        current, trained = it_dir / "train", trained + 1
    return {
        "method": recipe.method,
        "iterations_done": trained,
        "iterations": history,
        "final_model": str(current / "model"),
        "stopped": stopped,
        "model": redact_urls(recipe.model),
    }


def lmsi_records(rounds: list[list[TrajectoryRecord]]) -> list[dict[str, Any]]:
    """Return LMSI's training records: every distinct sample whose answer is the gold one,
    and for each an answer-only copy (``Answer: <final response>``), as the original."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for records in rounds:
        for r in records:
            if not r.accepted:
                continue
            question, header = loop.attempt_prompt(r.item)
            final = r.answers[0].strip().splitlines()[-1].split("(Final response)")[-1].strip()
            full = [(question, 1.0), (header, 1.0), (r.answers[0], 1.0)]
            answer_only = [(question, 1.0), (f"\nAnswer: {final}", 1.0)]
            for rid, parts in ((f"{r.id}-r{r.sample_round}", full), (f"{r.id}-ao", answer_only)):
                text = "".join(t for t, _ in parts)
                if text in seen:
                    continue
                seen.add(text)
                out.append(
                    {
                        "id": f"{rid}-{len(out)}",
                        "segments": [{"text": t, "weight": w} for t, w in parts],
                        "add_eos": True,
                        "text": text,
                        "text_att_start_text": "\nAnswer:",
                    }
                )
    return out


def _run_lmsi(
    recipe: Recipe,
    run_dir: Path,
    items: list[dict],
    baseline: Path,
    *,
    log: Log,
    ray: RayOptions | None,
) -> dict:
    from chorus_shared.training import train

    folder = run_dir / "lmsi"
    if not _done(folder / "train"):
        rounds = collect_rounds(
            recipe, folder, items, f"hf:{baseline / 'model'}", items, recipe.lmsi_rounds, log, ray
        )
        records = lmsi_records(rounds)
        if len(records) < max(recipe.min_data_length, 1):
            raise RuntimeError(
                f"LMSI: only {len(records)} samples with the gold answer in "
                f"{recipe.lmsi_rounds} rounds; nothing to train on"
            )
        log(f"LMSI: SFT on {len(records)} self-generated records ({recipe.lmsi_epochs} epochs)")
        # As the original: LMSI continues from the baseline SFT checkpoint.
        start = f"hf:{baseline / 'model'}"
        train(train_recipe(recipe, start, recipe.lmsi_epochs), records, folder / "train")
    return {
        "method": "lmsi",
        "iterations_done": 1,
        "iterations": [],
        "final_model": str(folder / "train" / "model"),
        "stopped": None,
        "model": redact_urls(recipe.model),
    }
