"""Collecting training trajectories through the shared run engine (one run per sampling round).

Each sampling round is one engine run (``chorus_shared.engine``): its items are the window's
training items, its records :class:`~chorus_tripost.records.TrajectoryRecord` lines. The
engine takes the lock, stores the item ids and the input fingerprint, resumes by id, stores an
item whose reply failed as an errored record (retried on resume) and stops the run when a
whole window errored; ``--ray`` fans the windows out over Ray actors.

Where the attempts come from (``recipe.method``):

* ``tripost``: the current model, sampled (T = 1.0, the original's ``gen_kwargs``), repaired
  by the verifier and improver;
* ``ft_demo``: the FT-from-demonstrations baseline: the LLM's own attempts
  (``demo_source: llm``, the paper's) or our planted one-number errors (``planted``,
  offline), repaired the same way;
* ``lmsi``: the LMSI baseline: samples of the model at T = 1.2, kept when their answer is the
  gold one (no repair).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chorus_shared.engine import RayOptions, errored_record, first_error, run_items
from chorus_shared.models import SamplingParams
from chorus_shared.runs import RunDir
from chorus_tripost import loop, tasks
from chorus_tripost.recipes import Recipe
from chorus_tripost.records import TrajectoryRecord
from chorus_tripost.testtime import parse_trajectory

__all__ = ["CollectWorker", "collect_round", "items_fingerprint"]

Record = dict[str, Any]

# The original seeds sampling round i with 40 + i (``set_seed(40 + i)``).
ROUND_SEED = 40
LMSI_TEMPERATURE = 1.2  # get_lmsi_data.py


def items_fingerprint(items: Sequence[dict]) -> dict[str, str]:
    """Return ``{"items": "sha256:<hex>:<n>"}`` of the input items, for config.json: a resume
    on changed data (another file, another window) is refused by the run folder."""
    blob = json.dumps(list(items), sort_keys=True, ensure_ascii=False).encode()
    return {"items": f"sha256:{hashlib.sha256(blob).hexdigest()}:{len(items)}"}


@dataclass(frozen=True)
class CollectWorker:
    """Builds the models of a collection round once; picklable, so Ray actors build replicas.

    ``model``: the raw-text model spec attempting the items (None for ``ft_demo``).
    ``demo_items``: training items the LLM helpers take their demonstrations from.
    """

    recipe: Recipe
    model: str | None
    sample_round: int
    demo_items: tuple[dict, ...] = ()

    def __call__(self) -> Callable[[list[Record]], list[Record]]:
        """Return the function that turns a window of training items into records."""
        from chorus_tripost.generation import load_raw_model
        from chorus_tripost.helpers import make_helpers

        recipe = self.recipe
        raw = load_raw_model(self.model) if self.model else None
        helpers = None
        if recipe.method != "lmsi":
            helpers = make_helpers(recipe, list(self.demo_items))
        seed = ROUND_SEED + self.sample_round

        def run_window(items: list[Record]) -> list[Record]:
            if recipe.method == "lmsi":
                return _lmsi_window(recipe, raw, items, seed, self.sample_round)
            assert helpers is not None
            gens, errors = _attempts(recipe, raw, items, seed, helpers)
            ok = [i for i, e in enumerate(errors) if e is None]
            verify, improve = helpers
            trajs = loop.repair(
                [items[i] for i in ok],
                [gens[i] for i in ok],
                verify=verify,
                improve=improve,
                max_improvements=recipe.max_improvements,
            )
            out: list[Record] = []
            by_index = dict(zip(ok, trajs, strict=True))
            for i, item in enumerate(items):
                if errors[i] is not None:
                    out.append(errored_record(item["id"], errors[i] or "", task=item["task"]))
                    continue
                t = by_index[i]
                if t.error:
                    out.append(errored_record(item["id"], t.error, task=item["task"]))
                    continue
                out.append(
                    TrajectoryRecord(
                        id=item["id"],
                        task=item["task"],
                        item=item,
                        answers=t.answers,
                        feedback=t.feedback,
                        accepted=t.accepted,
                        sample_round=self.sample_round,
                        bad_progress=t.bad_progress,
                    ).to_json()
                )
            return out

        return run_window


def _attempts(
    recipe: Recipe,
    raw: loop.RawModel | None,
    items: list[Record],
    seed: int,
    helpers: tuple[loop.Verifier, loop.Improver],
) -> tuple[list[tuple[list[str], list[str]]], list[str | None]]:
    """Return each item's generation as (answers, feedback) and its error (None when fine)."""
    if recipe.method == "ft_demo" and recipe.demo_source == "planted":
        rng = random.Random(recipe.seed + seed)
        return [([loop.plant_error(it, rng)], []) for it in items], [None] * len(items)
    if recipe.method == "ft_demo":
        from chorus_shared.models import load_chat_model
        from chorus_tripost.testtime import fewshot_demos, fewshot_generate

        chat = load_chat_model(recipe.improver_model or "default")
        demos = fewshot_demos(
            [d for d in _demo_pool(recipe)], min(recipe.fewshot_k, 3), seed=recipe.seed
        )
        states = fewshot_generate(
            chat, items, demos, max_new_tokens=recipe.max_new_tokens, seed=seed
        )
        return [([s.answers[0]], []) for s in states], [s.error for s in states]
    if raw is None:
        raise ValueError(f"method {recipe.method!r} samples the model: give a model to collect")
    params = SamplingParams(
        max_new_tokens=recipe.max_new_tokens, temperature=recipe.collect_temperature, seed=seed
    )
    outs = raw.complete([loop.attempt_prompt(it) for it in items], params)
    gens = []
    for out in outs:
        answers, feedback = parse_trajectory(out.text)
        gens.append((answers, feedback))
    return gens, [first_error([o]) for o in outs]


def _demo_pool(recipe: Recipe) -> list[dict]:
    return tasks.load_items(recipe.task, "train")


def _lmsi_window(
    recipe: Recipe, raw: loop.RawModel | None, items: list[Record], seed: int, round_: int
) -> list[Record]:
    """LMSI's sampling: one sample per item at T = 1.2; kept when its answer is the gold one."""
    if raw is None:
        raise ValueError("method 'lmsi' samples the model: give a model to collect")
    params = SamplingParams(
        max_new_tokens=recipe.max_new_tokens, temperature=LMSI_TEMPERATURE, seed=seed
    )
    out: list[Record] = []
    for item, c in zip(
        items, raw.complete([loop.attempt_prompt(it) for it in items], params), strict=True
    ):
        error = first_error([c])
        if error is not None:
            out.append(errored_record(item["id"], error, task=item["task"]))
            continue
        answer = parse_trajectory(c.text)[0][0]
        got = tasks.answer_of(item, answer)
        out.append(
            TrajectoryRecord(
                id=item["id"],
                task=item["task"],
                item=item,
                answers=[answer],
                feedback=[],
                accepted=tasks.answers_match(item, got),
                sample_round=round_,
            ).to_json()
        )
    return out


def collect_round(
    recipe: Recipe,
    out: str | Path,
    window: list[dict],
    *,
    model: str | None,
    sample_round: int,
    demo_items: Sequence[dict] = (),
    ray: RayOptions | None = None,
) -> RunDir:
    """Run (or resume) one sampling round of ``window`` into the run folder ``out``; returns
    the closed :class:`RunDir`. A window that errored whole raises after storing it."""
    config = {
        "kind": "tripost-collect",
        "recipe": recipe.identity(),
        "task": {"name": recipe.task, "version": 2},
        "model": model,
        "sample_round": sample_round,
        "runtime": recipe.runtime(),
    }
    return run_items(
        out,
        config,
        window,
        CollectWorker(recipe, model, sample_round, tuple(demo_items)),
        window=recipe.batch_window,
        desc=f"collect {recipe.method} round {sample_round}",
        data=items_fingerprint(window),
        ray=ray,
    )
