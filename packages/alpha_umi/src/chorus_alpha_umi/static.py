"""Static step-level evaluation, routed as the original (infer_pipeline.py).

Steps are the gold planner turns that hold an exact "Next: ..." marker. At every step the
planner sees the gold history. Its reply is routed as the original routes it (give up >
conclusion > caller; no marker = caller): the caller is asked only when the planner routed to
the caller, the summarizer only on "Next: conclusion.", each with the gold history plus the
planner's *predicted* thought. A step the planner routed elsewhere has no call (or no answer)
and scores as a miss. With ``gold_routed_diagnostic`` the caller (summarizer) is also asked at
the gold call (conclusion) steps the planner misrouted: stored apart, scored only in a
separately labelled diagnostic.

The single-LLM baseline (``mode: backbone``) asks one model per step for the original's
backbone reply (thought + call, or "conclusion: ..."), scored as evaluate-backbone.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from chorus_alpha_umi.dialog import (
    ROLES,
    backbone_prompt,
    backbone_turn,
    cut_plan,
    has_marker,
    parse_route,
    role_prompt,
    strip_route,
    tool_names,
)
from chorus_alpha_umi.records import StepRecord
from chorus_shared.data import _decode, _read_data_bytes, load_dataset_records, register_dataset
from chorus_shared.engine import errored_record, first_error
from chorus_shared.models import ChatModel, Completion, SamplingParams

DATASET = "toolbench_alpha_umi"
SPLITS = ("out_of_domain", "in_domain")
MODES = ("multi", "backbone")
# The offline GLPFT split of one test file: every HOLDOUT_EVERY-th dialog (file order, from the
# first) is held out for evaluation, the others are the training slice. Deterministic, disjoint.
HOLDOUT_EVERY = 5


def check_dialog(dialog: Any, where: str) -> None:
    """Raise ValueError naming ``where`` and the key when ``dialog`` is not an alpha-UMi
    dialog (``tools`` list, ``conversations`` list of ``{from, value}`` strings)."""
    if not isinstance(dialog, dict):
        raise ValueError(f"{where}: expected a JSON object, found {type(dialog).__name__}")
    for key in ("tools", "conversations"):
        if key not in dialog:
            raise ValueError(f"{where}: no {key!r} key")
        if not isinstance(dialog[key], list):
            raise ValueError(f"{where}: {key!r} should be a list")
    for k, turn in enumerate(dialog["conversations"]):
        if not isinstance(turn, dict):
            raise ValueError(f"{where}: conversations[{k}] should be an object")
        for key in ("from", "value"):
            if not isinstance(turn.get(key), str):
                raise ValueError(f"{where}: conversations[{k}] has no string {key!r}")
        if turn["from"] not in ROLES:
            raise ValueError(
                f"{where}: conversations[{k}] has the unknown role {turn['from']!r}; "
                f"expected one of {', '.join(ROLES)}"
            )
    for k, tool in enumerate(dialog["tools"]):
        if not isinstance(tool, dict):
            raise ValueError(f"{where}: tools[{k}] should be an object")


def read_json_file(path: Path, data: bytes | None = None) -> Any:
    """Return the parsed JSON of ``path``; a file that is not JSON is one ValueError naming it."""
    text = _decode(path.read_bytes() if data is None else data, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or replace the file") from None


def _read_toolbench(root: Path, split: str) -> list[dict]:
    path = root if root.is_file() else root / DATASET / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    data = read_json_file(path, _read_data_bytes(path, root))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of dialogs, got {type(data).__name__}")
    records = []
    for index, dialog in enumerate(data):
        check_dialog(dialog, f"{path}: dialog {index}")
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


def _reference(turn: dict[str, str], following: dict[str, str] | None) -> str | None:
    """The original's reference string of a step (build_infer_samples): the planner turn and
    the call or conclusion after it, "</s>"-joined; a give-up step is the turn alone. None
    when the turn needs a following turn and has none (the original crashes there)."""
    value = turn["value"]
    if "Next: caller" in value or "Next: conclusion." in value:
        if following is None:
            return None
        return f"assistant: {value}</s>{following['from']}: {following['value']}</s>"
    return value


def gold_steps(dialog: dict[str, Any], mode: str = "multi") -> tuple[list[dict], int]:
    """Return the scored steps of one dialog and how many marked turns had to be left out
    (a "Next: caller."/"Next: conclusion." turn with no call or answer after it).

    A step is an assistant turn holding an exact routing marker; its reference is the
    original's string for ``mode`` (multi: infer_pipeline.py, backbone: prepro_backbone.py).
    Unmarked assistant turns stay in the history but are not scored.
    """
    turns = dialog["conversations"]
    names = sorted(tool_names(dialog["tools"]))
    steps, defects = [], 0
    for index, turn in enumerate(turns):
        if turn["from"] != "assistant" or not has_marker(turn["value"]):
            continue
        following = turns[index + 1] if index + 1 < len(turns) else None
        if mode == "backbone":
            reference = backbone_turn(turn, following)
        else:
            reference = _reference(turn, following)
        if reference is None:
            defects += 1
            continue
        steps.append(
            {
                "id": f"{dialog['id']}-s{index}",
                "dialog": str(dialog["id"]),
                "history": turns[:index],
                "tools": dialog["tools"],
                "tool_names": names,
                "gold_route": parse_route(turn["value"])[0],
                "reference": reference,
            }
        )
    return steps, defects


ModelFor = Callable[[str], ChatModel]


def _reason(completion: Completion, role: str) -> str | None:
    error = first_error([completion])
    return None if error is None else f"{role}: {error}"


def predict_window(
    steps: Sequence[dict[str, Any]],
    model_for: ModelFor,
    params: dict[str, SamplingParams],
    *,
    mode: str = "multi",
    gold_routed_diagnostic: bool = False,
) -> list[dict[str, Any]]:
    """Return one record per step (a :class:`StepRecord` as JSON, or an errored record when
    a reply of the step failed).

    One ``chat`` call per role over the window: the planner on every step, the caller on the
    steps routed to it, the summarizer on the steps routed to "conclusion" (plus, with the
    diagnostic, the gold steps the planner misrouted).
    """
    if mode == "backbone":
        replies = model_for("planner").chat(
            [backbone_prompt(s["tools"], s["history"]) for s in steps], params["planner"]
        )
        return [
            _record(step, mode, {"planner": reply})
            for step, reply in zip(steps, replies, strict=True)
        ]
    plans = model_for("planner").chat(
        [role_prompt("planner", s["tools"], s["history"]) for s in steps], params["planner"]
    )
    got: list[dict[str, Completion]] = [{"planner": p} for p in plans]
    for role, route in (("caller", "caller"), ("summarizer", "conclusion")):
        asked: list[tuple[int, str]] = []
        for k, step in enumerate(steps):
            if first_error([plans[k]]) is not None:
                continue
            if parse_route(plans[k].text)[0] == route:
                asked.append((k, role))
            elif gold_routed_diagnostic and step["gold_route"] == route:
                asked.append((k, f"diagnostic_{role}"))
        if not asked:
            continue
        prompts = [
            role_prompt(
                role,
                steps[k]["tools"],
                [
                    *steps[k]["history"],
                    {"from": "assistant", "value": strip_route(cut_plan(plans[k].text))},
                ],
            )
            for k, _ in asked
        ]
        for (k, field), reply in zip(
            asked, model_for(role).chat(prompts, params[role]), strict=True
        ):
            got[k][field] = reply
    return [_record(step, mode, replies) for step, replies in zip(steps, got, strict=True)]


def _record(step: dict[str, Any], mode: str, replies: dict[str, Completion]) -> dict[str, Any]:
    for field, completion in replies.items():
        reason = _reason(completion, field)
        if reason is not None:
            return errored_record(step["id"], reason, dialog=step["dialog"], mode=mode)
    return StepRecord(
        id=step["id"],
        dialog=step["dialog"],
        mode=mode,
        reference=step["reference"],
        tool_names=step["tool_names"],
        replies={field: c.text for field, c in replies.items()},
        finish_reasons={field: c.finish_reason for field, c in replies.items()},
    ).to_json()
