"""The alpha-UMi conversation format: tools, turns, routing markers, calls, role prompts.

A dialog is ``{"id", "tools", "instruction", "conversations": [{"from", "value"}]}`` where
``from`` is one of user, assistant (the planner), caller, observation, conclusion. The same
text format is what the models read and write at inference time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from chorus_shared.models import Message

ROLES = ("user", "assistant", "caller", "observation", "conclusion")
ROUTES = ("caller", "conclusion", "give up")
MAX_NAME = 64
MAX_DESCRIPTION = 256
# The original's exact routing markers, in its priority order: a planner turn that names
# "give up" gives up even when it also names another role (infer_pipeline.py checks them in
# this order, with plain substring tests).
MARKERS = {
    "give up": "Next: give up.",
    "conclusion": "Next: conclusion.",
    "caller": "Next: caller.",
}


def _marker(text: str) -> tuple[str, int] | None:
    """Returns ``(route, end of its marker)`` of the routing marker that wins, or None."""
    for route, marker in MARKERS.items():
        at = text.find(marker)
        if at >= 0:
            return route, at + len(marker)
    return None


def parse_route(text: str) -> tuple[str, bool]:
    """Return ``(route, had_marker)`` for a planner turn, routed as the original does.

    Priority give up > conclusion > caller, on the exact markers ("Next: give up." ...);
    no marker routes to the caller (the original's default), and ``had_marker`` is False so
    the metrics can count unmarked turns.
    """
    found = _marker(text)
    return ("caller", False) if found is None else (found[0], True)


def has_marker(text: str) -> bool:
    """Return whether ``text`` holds one of the three exact routing markers (a scored step)."""
    return _marker(text) is not None


def cut_plan(text: str) -> str:
    """Return the planner's turn as the original passes it on: cut right after the marker
    that routed it; an unmarked turn gets "Next: caller." appended (it was routed there)."""
    found = _marker(text)
    return text + MARKERS["caller"] if found is None else text[: found[1]]


def strip_route(text: str) -> str:
    """Return the planner's thought without its routing marker (and anything after it)."""
    found = _marker(text)
    if found is None:
        return text.strip()
    return text[: found[1] - len(MARKERS[found[0]])].strip()


@dataclass(frozen=True)
class Call:
    """A parsed caller turn, read as the original reads it.

    ``api`` is None when no "Action:" is written; ``raw_arguments`` is the text after the
    last "Action Input:" ("{}" when there is none, as the original); ``arguments`` its JSON
    object, or None when it is not one (``error`` says why).
    """

    api: str | None
    arguments: dict[str, Any] | None
    error: str | None = None
    raw_arguments: str = "{}"


def split_call(text: str) -> tuple[str | None, str]:
    """Return ``(api, raw arguments)`` of a caller turn exactly as the original's evaluation
    does: the *last* "Action Input:" and the *last* "Action:" count (a turn that writes two
    calls is read by its last one); no "Action Input:" reads as "{}", no "Action:" as None.
    """
    raw = "{}"
    if "Action Input:" in text:
        raw = text[text.rindex("Action Input:") + len("Action Input:") :].strip()
    if "Action:" not in text:
        return None, raw
    api = text[text.rindex("Action:") + len("Action:") :].strip()
    if "Action Input:" in api:
        api = api[: api.index("Action Input:")].strip()
    return api, raw


def parse_call(text: str) -> Call:
    """Return the :class:`Call` written in a caller turn ("Action: ...\nAction Input: {...}").

    Tool calls are data: the arguments are parsed as JSON, never evaluated.
    """
    api, raw = split_call(text)
    if not api:
        return Call(None, None, "no 'Action:' line", raw)
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError as err:
        return Call(api, None, f"Action Input is not JSON: {err.msg}", raw)
    if not isinstance(arguments, dict):
        kind = type(arguments).__name__
        return Call(api, None, f"Action Input is a JSON {kind}, not an object", raw)
    return Call(api, arguments, None, raw)


def format_call(api: str, arguments: dict[str, Any]) -> str:
    """Return the caller-turn text for a call (the format the caller is trained to write)."""
    return f"Action: {api}\nAction Input: {json.dumps(arguments, ensure_ascii=False)}"


def cut_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"name", "description", "parameters"}`` with name and description cut to the
    paper's 64 (the last) / 256 (the first) characters. Accepts the test file's
    ``Name/function/input`` keys too."""
    name = str(tool.get("name", tool.get("Name", "")))
    description = str(tool.get("description", tool.get("function", "")))
    parameters = tool.get("parameters", tool.get("input", {})) or {}
    return {
        # ToolBench keeps the *last* 64 characters of a name (the API's own part is at the end).
        "name": name[-MAX_NAME:],
        "description": description[:MAX_DESCRIPTION],
        "parameters": parameters,
    }


def tool_names(tools: list[dict[str, Any]]) -> set[str]:
    """Return the (cut) names of a dialog's tools."""
    return {cut_tool(t)["name"] for t in tools}


def render_tools(tools: list[dict[str, Any]]) -> str:
    """Return the tool documentation block shown to every role (one JSON line per tool)."""
    return "\n".join(json.dumps(cut_tool(t), ensure_ascii=False) for t in tools)


_LABELS = {
    "user": "User",
    "assistant": "Assistant",
    "caller": "Caller",
    "observation": "Observation",
    "conclusion": "Conclusion",
}


def render_history(turns: list[dict[str, str]]) -> str:
    """Return the history serialised role by role ("Role: text" blocks)."""
    for turn in turns:
        if turn.get("from") not in _LABELS:
            raise ValueError(f"unknown turn role {turn.get('from')!r}; expected one of {ROLES}")
    return "\n\n".join(f"{_LABELS[t['from']]}: {t['value']}" for t in turns)


PLANNER_SYSTEM = (
    "You are the planner of a team of three that answers a user's request with tools.\n"
    "Read the dialog so far and write one short thought about what to do next, then end with "
    "exactly one of: 'Next: caller.' (a tool must be called), 'Next: conclusion.' (enough "
    "information to answer), 'Next: give up.' (the task cannot be done).\n"
    "Available tools:\n{tools}"
)
CALLER_SYSTEM = (
    "You are the caller of a team of three that answers a user's request with tools.\n"
    "Following the planner's last thought, write one tool call as\n"
    "Action: <tool name>\nAction Input: <JSON object of arguments>\n"
    "Use only these tools and their parameters:\n{tools}"
)
SUMMARIZER_SYSTEM = (
    "You are the summarizer of a team of three that answers a user's request with tools.\n"
    "Using the dialog and the tool observations, write the final answer to the user.\n"
    "Tools that were available:\n{tools}"
)
SYSTEMS = {"planner": PLANNER_SYSTEM, "caller": CALLER_SYSTEM, "summarizer": SUMMARIZER_SYSTEM}
INSTRUCTIONS = {
    "planner": "Write the planner's next thought and route.",
    "caller": "Write the caller's tool call.",
    "summarizer": "Write the conclusion for the user.",
}


def role_prompt(
    role: str, tools: list[dict[str, Any]], history: list[dict[str, str]]
) -> list[Message]:
    """Return the chat messages (system + user) that ask ``role`` for its next turn.

    The caller and summarizer see the planner's latest thought as the last history turn.
    """
    if role not in SYSTEMS:
        raise ValueError(f"unknown role {role!r}; expected planner, caller or summarizer")
    return [
        {"role": "system", "content": SYSTEMS[role].format(tools=render_tools(tools))},
        {
            "role": "user",
            "content": f"{render_history(history)}\n\n{INSTRUCTIONS[role]}",
        },
    ]


# -- the single-LLM baseline: the original's backbone format (prepro_backbone.py) -------------

BACKBONE_SYSTEM = (
    "You are a tool-using assistant that answers a user's request step by step.\n"
    "At each step write one short thought, then either a tool call as\n"
    "Action: <tool name>\nAction Input: <JSON object of arguments>\n"
    "or, when the request is answered, 'conclusion: <the final answer>', or "
    "'conclusion: give up.' when it cannot be done.\n"
    "Available tools:\n{tools}"
)
BACKBONE_INSTRUCTION = "Write the assistant's next step."


def backbone_turn(turn: dict[str, str], following: dict[str, str] | None) -> str | None:
    """Return the backbone target of a planner turn (prepro_backbone.py), or None when the
    turn is not one: thought + "\\n" + the call, thought + "\\nconclusion: " + the answer, or
    thought + "\\nconclusion: give up."."""
    value = turn["value"]
    if MARKERS["give up"] in value:
        return value.replace(MARKERS["give up"], "").strip() + "\nconclusion: give up."
    if following is not None and following.get("from") == "caller":
        return value.replace(MARKERS["caller"], "").strip() + "\n" + following["value"]
    if following is not None and following.get("from") == "conclusion":
        thought = value.replace(MARKERS["conclusion"], "").strip()
        return thought + "\nconclusion: " + following["value"]
    return None


def backbone_history(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    """Return the history as the backbone sees it: each planner turn folded with the call or
    conclusion after it into one assistant turn (prepro_backbone.py), observations kept."""
    out: list[dict[str, str]] = []
    for k, turn in enumerate(turns):
        if turn["from"] in ("caller", "conclusion"):
            continue  # folded into the assistant turn before it
        if turn["from"] == "assistant":
            following = turns[k + 1] if k + 1 < len(turns) else None
            folded = backbone_turn(turn, following)
            out.append({"from": "assistant", "value": turn["value"] if folded is None else folded})
        else:
            out.append(turn)
    return out


def backbone_prompt(tools: list[dict[str, Any]], history: list[dict[str, str]]) -> list[Message]:
    """Return the chat messages that ask the single backbone model for its next step."""
    return [
        {"role": "system", "content": BACKBONE_SYSTEM.format(tools=render_tools(tools))},
        {
            "role": "user",
            "content": f"{render_history(backbone_history(history))}\n\n{BACKBONE_INSTRUCTION}",
        },
    ]


# The original's labels of the text each role continues after (train.py prefixes "system: ").
RAW_LABELS = {"planner": "assistant", "caller": "caller", "summarizer": "conclusion"}


def raw_prompt(messages: list[Message], role: str) -> str:
    """Return a chat prompt as the original's raw text, for a base model without a chat
    template: "system: " + the system text + the request + " <role label>: "."""
    body = "\n".join(str(m["content"]) for m in messages)
    return f"system: {body} {RAW_LABELS.get(role, 'assistant')}: "
