"""Static step-level evaluation: gold history in, each role's next turn out, one batch per role.

At every gold planner step (an assistant turn with a "Next: ..." marker) the planner sees the
gold history; the caller (on gold-call steps) and the summarizer (on gold-conclusion steps)
see the gold history plus the planner's *predicted* thought, as the paper defines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chorus_alpha_umi.dialog import ROLES, parse_route, role_prompt, strip_route, tool_names
from chorus_alpha_umi.metrics import aggregate, score_step
from chorus_shared.data import load_dataset_records, register_dataset
from chorus_shared.models import ChatModel, SamplingParams
from chorus_shared.runs import RunDir, pending

DATASET = "toolbench_alpha_umi"
SPLITS = ("out_of_domain", "in_domain")
# The offline GLPFT split of one test file: every HOLDOUT_EVERY-th dialog (file order, from the
# first) is held out for evaluation, the others are the training slice. Deterministic, disjoint.
HOLDOUT_EVERY = 5


def _read_toolbench(root: Path, split: str) -> list[dict]:
    path = root if root.is_file() else root / DATASET / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of dialogs, got {type(data).__name__}")
    records = []
    for index, dialog in enumerate(data):
        missing = {"tools", "conversations"} - set(dialog)
        if missing:
            raise ValueError(f"{path}: dialog {index} lacks {sorted(missing)}")
        records.append({"id": f"toolbench-{split}-{index}", **dialog})
    return records


register_dataset(DATASET, _read_toolbench, splits=SPLITS)


def load_dialogs(split: str = "out_of_domain", data_dir: str | None = None) -> list[dict]:
    """Return the dialogs of the alpha-UMi ToolBench test file, each with a stable ``id``."""
    return load_dataset_records(DATASET, split, data_dir)


def select_part(dialogs: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    """Return the dialogs of ``part``: all, the GLPFT ``train`` slice or the ``heldout`` rest.

    ``heldout`` holds the dialogs at positions 0, 5, 10, ... of the file, ``train`` the
    others; the two never share a dialog.
    """
    if part == "all":
        return list(dialogs)
    if part == "heldout":
        return [d for k, d in enumerate(dialogs) if k % HOLDOUT_EVERY == 0]
    if part == "train":
        return [d for k, d in enumerate(dialogs) if k % HOLDOUT_EVERY != 0]
    raise ValueError(f"unknown part {part!r}; choose all, train or heldout")


def gold_steps(dialog: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the scored steps of one dialog (empty when it has none).

    A step is an assistant turn with a routing marker; its gold call or conclusion is the
    next turn. Unmarked assistant turns stay in the history but are not scored.
    """
    turns = dialog["conversations"]
    for index, turn in enumerate(turns):
        if turn.get("from") not in ROLES:
            raise ValueError(f"{dialog['id']}: turn {index} has unknown role {turn.get('from')!r}")
    steps = []
    for index, turn in enumerate(turns):
        if turn["from"] != "assistant":
            continue
        route, marked = parse_route(turn["value"])
        if not marked:
            continue
        following = turns[index + 1] if index + 1 < len(turns) else None
        step = {
            "id": f"{dialog['id']}-s{index}",
            "dialog": dialog["id"],
            "history": turns[:index],
            "tools": dialog["tools"],
            "tool_names": sorted(tool_names(dialog["tools"])),
            "gold_route": route,
            "gold_planner": turn["value"],
        }
        expected = {"caller": "caller", "conclusion": "conclusion"}.get(route)
        if expected is not None:
            if following is None or following["from"] != expected:
                # The gold reference is missing: the step cannot be scored for its role.
                step["gold_route"] = route
                step["defect"] = f"'Next: {route}.' not followed by a {expected} turn"
            else:
                step[f"gold_{'call' if route == 'caller' else 'conclusion'}"] = following["value"]
        steps.append(step)
    return steps


ModelFor = Callable[[str], ChatModel]


def predict_window(
    steps: Sequence[dict[str, Any]],
    model_for: ModelFor,
    params: dict[str, SamplingParams],
) -> list[dict[str, Any]]:
    """Return the steps with ``planner``/``caller``/``summarizer`` predictions added.

    One ``chat`` call per role over the whole window (the caller and summarizer calls only
    hold the steps whose gold route is theirs).
    """
    out = [dict(s) for s in steps]
    plans = model_for("planner").chat(
        [role_prompt("planner", s["tools"], s["history"]) for s in out], params["planner"]
    )
    for step, completion in zip(out, plans, strict=True):
        step["planner"] = completion.text
        step["planner_finish"] = completion.finish_reason
    for role, route in (("caller", "caller"), ("summarizer", "conclusion")):
        todo = [s for s in out if s["gold_route"] == route and "defect" not in s]
        if not todo:
            continue
        prompts = [
            role_prompt(
                role,
                s["tools"],
                [*s["history"], {"from": "assistant", "value": strip_route(s["planner"])}],
            )
            for s in todo
        ]
        for step, completion in zip(todo, model_for(role).chat(prompts, params[role]), strict=True):
            step[role] = completion.text
    for step in out:
        # The history is the input file's: keep records small and the run readable.
        del step["history"], step["tools"]
    return out


def run_static(
    run: RunDir,
    steps: list[dict[str, Any]],
    model_for: ModelFor,
    params: dict[str, SamplingParams],
    *,
    window: int = 64,
    on_window: Callable[[int], None] | None = None,
) -> int:
    """Predict every pending step into ``run`` window by window; return how many were done."""
    todo = pending(steps, run)
    for start in range(0, len(todo), window):
        records = predict_window(todo[start : start + window], model_for, params)
        run.append_many(records)
        if on_window is not None:
            on_window(len(records))
    return len(todo)


def score_run(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the aggregated metrics of a static run's records (defective gold steps counted)."""
    scorable = [r for r in records if "defect" not in r]
    metrics = aggregate([score_step(r) for r in scorable])
    metrics["defective_gold_steps"] = len(records) - len(scorable)
    return metrics
