"""ToolBench answer trees -> alpha-UMi conversations -> backbone / planner / caller / summarizer.

A ToolBench answer file (``{"answer_generation": {"query", "function", "final_answer",
"valid_data", "train_messages"}}``) keeps in ``train_messages`` the growing prefixes of the
successful chain; the last one is the whole chain. It becomes a conversation with turns user,
assistant (the planner: thought + "Next: ..."), caller ("Action/Action Input"), observation and
conclusion. Already converted dialogs (``{"tools", "conversations"}``) are accepted as they are.

Defects of the original fixed here (see the paper notes): every record is kept (no debug cap
at 20); every record's prompt is built from its own history (the backbone's give-up branch
reused a stale prompt); tools are cut to 64-character names and 256-character descriptions.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from chorus_alpha_umi.dialog import (
    INSTRUCTIONS,
    cut_tool,
    format_call,
    parse_route,
    role_prompt,
    strip_route,
)

ROLE_FILES = ("backbone", "planner", "caller", "summarizer")
FINISH = "Finish"


class PreprocessError(ValueError):
    """An input that is neither a ToolBench answer tree nor a converted dialog."""


def _arguments(raw: Any, where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError as err:
        raise PreprocessError(f"{where}: function_call arguments are not JSON ({err.msg})") from err
    if not isinstance(value, dict):
        raise PreprocessError(f"{where}: function_call arguments are not a JSON object")
    return value


def tree_to_dialog(answer: dict[str, Any], dialog_id: str) -> dict[str, Any] | None:
    """Return the alpha-UMi dialog of one ToolBench answer tree, or None when it is marked
    invalid (``valid_data: false``) or has no messages."""
    gen = answer.get("answer_generation")
    if not isinstance(gen, dict):
        raise PreprocessError(f"{dialog_id}: no 'answer_generation' object")
    chains = gen.get("train_messages") or []
    if not gen.get("valid_data", True) or not chains:
        return None
    tools = [cut_tool(t) for t in gen.get("function", []) if t.get("name") != FINISH]
    turns: list[dict[str, str]] = []
    for k, message in enumerate(chains[-1]):
        where = f"{dialog_id} message {k}"
        role = message.get("role")
        content = (message.get("content") or "").strip()
        if role == "system":
            continue
        if role == "user":
            turns.append({"from": "user", "value": content})
        elif role == "function":
            turns.append({"from": "observation", "value": content})
        elif role == "assistant":
            call = message.get("function_call")
            if not call:
                # A thought with no action stays in the history, unscored (no marker).
                if content:
                    turns.append({"from": "assistant", "value": content})
                continue
            name = call.get("name", "")
            arguments = _arguments(call.get("arguments", "{}"), where)
            if name == FINISH:
                if arguments.get("return_type") == "give_answer":
                    turns.append({"from": "assistant", "value": f"{content} Next: conclusion."})
                    final = arguments.get("final_answer") or gen.get("final_answer", "")
                    turns.append({"from": "conclusion", "value": str(final)})
                else:
                    turns.append({"from": "assistant", "value": f"{content} Next: give up."})
                continue
            turns.append({"from": "assistant", "value": f"{content} Next: caller."})
            turns.append({"from": "caller", "value": format_call(name[:64], arguments)})
        else:
            raise PreprocessError(f"{where}: unknown role {role!r}")
    return {
        "id": dialog_id,
        "tools": tools,
        "instruction": gen.get("query", ""),
        "conversations": turns,
    }


def _record(
    dialog: dict[str, Any], role: str, index: int, history: list[dict], target: str
) -> dict[str, Any]:
    messages = [{**m, "weight": 0.0} for m in role_prompt(role, dialog["tools"], history)] + [
        {"role": "assistant", "content": target, "weight": 1.0}
    ]
    return {
        "id": f"{dialog['id']}-{role}-t{index}",
        "role": role,
        "tools": [cut_tool(t) for t in dialog["tools"]],
        "history": history,
        "input": INSTRUCTIONS[role],
        "target": target,
        "messages": messages,
    }


def role_records(dialog: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Return the training records of one dialog per role file (backbone = all three roles).

    Planner: history before its turn -> its turn. Caller / summarizer: history plus the
    planner's thought (marker removed, as at inference) -> the call / the conclusion.
    Loss goes on the target only (weight 1 on the assistant message, 0 elsewhere).
    """
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in ROLE_FILES}
    turns = dialog["conversations"]
    for i, turn in enumerate(turns):
        if turn["from"] != "assistant":
            continue
        route, marked = parse_route(turn["value"])
        if not marked:
            continue
        out["planner"].append(_record(dialog, "planner", i, turns[:i], turn["value"]))
        following = turns[i + 1] if i + 1 < len(turns) else None
        thought = {"from": "assistant", "value": strip_route(turn["value"])}
        if route == "caller" and following and following["from"] == "caller":
            out["caller"].append(
                _record(dialog, "caller", i + 1, [*turns[:i], thought], following["value"])
            )
        elif route == "conclusion" and following and following["from"] == "conclusion":
            out["summarizer"].append(
                _record(dialog, "summarizer", i + 1, [*turns[:i], thought], following["value"])
            )
    for role in ("planner", "caller", "summarizer"):
        out["backbone"].extend(out[role])
    out["backbone"].sort(key=lambda r: int(r["id"].rsplit("-t", 1)[1]))
    return out


def _load_inputs(paths: list[str]) -> list[tuple[str, Any]]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not files:
        raise FileNotFoundError(f"no .json files under {paths}")
    return [(f.stem, json.loads(f.read_text(encoding="utf-8"))) for f in files]


def dialogs_from_inputs(paths: list[str]) -> tuple[list[dict[str, Any]], Counter]:
    """Return the dialogs of every input file and counts of what was read and dropped."""
    stats: Counter = Counter()
    dialogs = []
    for stem, data in _load_inputs(paths):
        items = data if isinstance(data, list) else [data]
        for k, item in enumerate(items):
            dialog_id = stem if not isinstance(data, list) else f"{stem}-{k}"
            if not isinstance(item, dict):
                raise PreprocessError(f"{dialog_id}: expected a JSON object")
            if "answer_generation" in item:
                dialog = tree_to_dialog(item, dialog_id)
                stats["trees"] += 1
            elif "conversations" in item and "tools" in item:
                dialog = {"id": item.get("id", dialog_id), **item}
                stats["conversations"] += 1
            else:
                raise PreprocessError(
                    f"{dialog_id}: neither a ToolBench answer tree ('answer_generation') "
                    "nor a dialog ('tools' + 'conversations')"
                )
            if dialog is None:
                stats["dropped_invalid"] += 1
                continue
            dialogs.append(dialog)
    return dialogs, stats


def preprocess(paths: list[str], out_dir: str | Path) -> dict[str, Any]:
    """Write ``<role>.jsonl`` for every role file and ``stats.json`` under ``out_dir``.

    Returns the stats (dialogs read, dropped, records per role).
    """
    dialogs, stats = dialogs_from_inputs(paths)
    return write_role_files(dialogs, out_dir, stats)


def write_role_files(
    dialogs: list[dict[str, Any]],
    out_dir: str | Path,
    stats: Counter | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Write the per-role JSONL files of ``dialogs`` and ``stats.json`` (``extra`` keys
    added, e.g. which part of which split); return the stats."""
    stats = stats if stats is not None else Counter(conversations=len(dialogs))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_role: dict[str, list[dict[str, Any]]] = {name: [] for name in ROLE_FILES}
    for dialog in dialogs:
        for name, records in role_records(dialog).items():
            per_role[name].extend(records)
    for name, records in per_role.items():
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    summary = {
        **dict(stats),
        "dialogs": len(dialogs),
        "records": {name: len(r) for name, r in per_role.items()},
        **extra,
    }
    (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
