"""ToolBench answer trees -> alpha-UMi conversations -> backbone / planner / caller / summarizer.

A ToolBench answer file (``{"answer_generation": {"query", "function", "final_answer",
"valid_data", "train_messages"}}``) keeps in ``train_messages`` the growing prefixes of the
successful chain; the last one is the whole chain. It becomes a conversation with turns user,
assistant (the planner: thought + "Next: ..."), caller ("Action/Action Input"), observation and
conclusion. Already converted dialogs (``{"tools", "conversations"}``) are accepted as they are.

Defects of the original fixed here (see the paper notes): every record is kept (no debug cap
at 20); every record's prompt is built from its own history (the backbone's give-up branch
reused a stale prompt). The prompts are our own wording; targets, tool cuts (the last 64
characters of a name, the first 256 of a description, flattened parameters), observations
(the ``response`` field) and which steps give records follow the original.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from chorus_alpha_umi.dialog import (
    BACKBONE_INSTRUCTION,
    INSTRUCTIONS,
    MAX_DESCRIPTION,
    MAX_NAME,
    backbone_prompt,
    backbone_turn,
    cut_tool,
    parse_route,
    raw_prompt,
    role_prompt,
    strip_route,
)
from chorus_shared.models import Message

ROLE_FILES = ("backbone", "planner", "caller", "summarizer")
FINISH = "Finish"


class PreprocessError(ValueError):
    """An input that is neither a ToolBench answer tree nor a converted dialog."""


def _flat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Return a ToolBench function as the original's test-file tool (prepro_raw_stage_1.py):
    ``Name`` = the last 64 characters of the name, ``function`` = the first 256 of the
    description, ``input`` = ``{arg: "type, description[-256:]"}`` (or just the type)."""
    parameters = tool.get("parameters") or {}
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    flat: dict[str, str] = {}
    for arg, spec in (properties or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        kind = str(spec.get("type", ""))
        flat[arg] = f"{kind}, {str(spec['description'])[-256:]}" if "description" in spec else kind
    return {
        "Name": str(tool.get("name", ""))[-MAX_NAME:],
        "function": str(tool.get("description") or "")[:MAX_DESCRIPTION],
        "input": flat,
    }


def _finish(arguments: Any, content: str | None) -> str | None:
    """Return the final answer of a Finish call, or None when it gives up (the original's
    reading, prepro_raw_stage_2.py, including its fallbacks for arguments that are not JSON)."""
    try:
        value = arguments if isinstance(arguments, dict) else json.loads(arguments)
        if value["return_type"] == "give_up_and_restart":
            return None
        return str(value["final_answer"]) if "final_answer" in value else "none"
    except (json.JSONDecodeError, TypeError, KeyError):
        text = str(arguments)
        if "give_up_and_restart" in text:
            return None
        key = '"final_answer": '
        if key in text:
            return text[text.index(key) + len(key) :].strip().strip("}").strip('"')
        return content if content is not None else "none"


def _observation(content: Any) -> str:
    """Return an observation as the original keeps it: the ``response`` field of the tool's
    JSON answer (the text after '"response":' when it is not JSON; else empty)."""
    text = "" if content is None else str(content)
    try:
        value = json.loads(text)
        response = value["response"]
    except (json.JSONDecodeError, TypeError, KeyError):
        key = '"response":'
        response = text[text.index(key) + len(key) :] if key in text else ""
    return response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)


def tree_to_dialog(answer: dict[str, Any], dialog_id: str) -> dict[str, Any] | None:
    """Return the alpha-UMi dialog of one ToolBench answer tree as the original builds it
    (prepro_raw_stage_1/2.py), or None when it has no messages (or ``valid_data: false``).

    The last chain of ``train_messages`` is read from its third message on (system and query
    are replaced by the query); a thought is ``content + "\n"`` then " Next: ...".
    """
    gen = answer.get("answer_generation")
    if not isinstance(gen, dict):
        raise PreprocessError(f"{dialog_id}: no 'answer_generation' object")
    chains = gen.get("train_messages") or []
    if not gen.get("valid_data", True) or not chains:
        return None
    functions = gen.get("function") or []
    if not isinstance(functions, list) or not all(isinstance(t, dict) for t in functions):
        raise PreprocessError(f"{dialog_id}: 'function' should be a list of objects")
    tools = [_flat_tool(t) for t in functions if t.get("name") != FINISH]
    turns: list[dict[str, str]] = [{"from": "user", "value": str(gen.get("query", ""))}]
    for k, message in enumerate(chains[-1][2:], start=2):
        where = f"{dialog_id} message {k}"
        if not isinstance(message, dict):
            raise PreprocessError(f"{where}: expected an object")
        role, content = message.get("role"), message.get("content")
        if role == "assistant":
            span = "" if content is None else f"{content}\n"
            call = message.get("function_call")
            if not call:
                continue  # the original writes nothing for a thought without a call
            if not isinstance(call, dict) or "name" not in call:
                raise PreprocessError(f"{where}: function_call without a 'name'")
            arguments = call.get("arguments", "")
            if call["name"] == FINISH:
                final = _finish(arguments, content)
                if final is None:
                    turns.append({"from": "assistant", "value": span + " Next: give up."})
                else:
                    turns.append({"from": "assistant", "value": span + " Next: conclusion."})
                    turns.append({"from": "conclusion", "value": final})
                continue
            raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
            turns.append({"from": "assistant", "value": span + " Next: caller."})
            turns.append(
                {"from": "caller", "value": f"Action: {call['name']}\nAction Input: {raw}"}
            )
        elif role == "user":
            turns.append({"from": "user", "value": str(content)})
        elif role == "function":
            turns.append({"from": "observation", "value": _observation(content)})
        elif role != "system":
            raise PreprocessError(f"{where}: unknown role {role!r}")
    return {
        "id": dialog_id,
        "tools": tools,
        "instruction": gen.get("query", ""),
        "conversations": turns,
    }


# The original leaves out the planner and caller records of calls to this name (ToolBench's
# marker for a call to an API that does not exist).
HALLUCINATED = "invalid_hallucination_function_name"


def _record(
    dialog: dict[str, Any],
    role: str,
    index: int,
    history: list[dict],
    target: str,
    messages: list[Message] | None = None,
) -> dict[str, Any]:
    prompt = messages if messages is not None else role_prompt(role, dialog["tools"], history)
    return {
        "id": f"{dialog['id']}-{role}-t{index}",
        "role": role,
        "tools": [cut_tool(t) for t in dialog["tools"]],
        "history": history,
        "input": INSTRUCTIONS.get(role, BACKBONE_INSTRUCTION),
        "target": target,
        # Chat models train on the role prompt; base models without a chat template on the
        # original's raw text ("system: " + prompt, then the target and the end of sequence).
        "messages": [{**m, "weight": 0.0} for m in prompt]
        + [{"role": "assistant", "content": target, "weight": 1.0}],
        "segments": [
            {"text": raw_prompt(prompt, role), "weight": 0.0},
            {"text": target, "weight": 1.0},
        ],
        "add_eos": True,
    }


def role_records(dialog: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Return the training records of one dialog per file, as the original's prepro scripts.

    Planner: history before its turn -> its turn. Caller / summarizer: history plus the
    planner's thought (marker removed, as at inference) -> the call / the conclusion (a
    conclusion "none" is left out). Calls to ``invalid_hallucination_function_name`` give no
    planner or caller record. Backbone (the single-LLM baseline, prepro_backbone.py): one
    record per step, thought + call, thought + "conclusion: " + answer, or thought +
    "conclusion: give up.". Loss goes on the target only.
    """
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in ROLE_FILES}
    turns = dialog["conversations"]
    for i, turn in enumerate(turns):
        if turn["from"] != "assistant":
            continue
        following = turns[i + 1] if i + 1 < len(turns) else None
        folded = backbone_turn(turn, following)
        if folded is not None:
            prompt = backbone_prompt(dialog["tools"], turns[:i])
            out["backbone"].append(_record(dialog, "backbone", i, turns[:i], folded, prompt))
        after = following["from"] if following else None
        hallucinated = after == "caller" and HALLUCINATED in str(following and following["value"])
        if (parse_route(turn["value"])[0] == "give up" or after in ("caller", "conclusion")) and (
            not hallucinated
        ):
            out["planner"].append(_record(dialog, "planner", i, turns[:i], turn["value"]))
        thought = {"from": "assistant", "value": strip_route(turn["value"])}
        if after == "caller" and not hallucinated and following:
            out["caller"].append(
                _record(dialog, "caller", i + 1, [*turns[:i], thought], following["value"])
            )
        elif after == "conclusion" and following and following["value"] != "none":
            out["summarizer"].append(
                _record(dialog, "summarizer", i + 1, [*turns[:i], thought], following["value"])
            )
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
