"""The alpha-UMi conversation format: tools, turns, routing markers, calls, role prompts.

A dialog is ``{"id", "tools", "instruction", "conversations": [{"from", "value"}]}`` where
``from`` is one of user, assistant (the planner), caller, observation, conclusion. The same
text format is what the models read and write at inference time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from chorus_shared.models import Message

ROLES = ("user", "assistant", "caller", "observation", "conclusion")
ROUTES = ("caller", "conclusion", "give up")
MAX_NAME = 64
MAX_DESCRIPTION = 256

_MARKER = re.compile(r"Next:\s*(caller|conclusion|give up)\s*\.?", re.IGNORECASE)
_ACTION = re.compile(r"Action:\s*(.*?)\s*(?:\n|$)")
_INPUT = re.compile(r"Action Input:\s*(.*)\Z", re.DOTALL)


def parse_route(text: str) -> tuple[str, bool]:
    """Return ``(route, had_marker)`` for a planner turn: the first "Next: ..." marker wins.

    The paper's default when no marker is present is the caller, so ``had_marker`` is
    reported to let the metrics count unmarked turns.
    """
    match = _MARKER.search(text)
    if match is None:
        return "caller", False
    return match.group(1).lower(), True


def strip_route(text: str) -> str:
    """Return the planner's thought without its routing marker (and anything after it)."""
    match = _MARKER.search(text)
    return (text[: match.start()] if match else text).strip()


@dataclass(frozen=True)
class Call:
    """A parsed caller turn. ``api`` is None when no "Action:" line was found; ``arguments``
    is None when the "Action Input" is missing or not a JSON object (``error`` says which)."""

    api: str | None
    arguments: dict[str, Any] | None
    error: str | None = None


def parse_call(text: str) -> Call:
    """Return the :class:`Call` written in a caller turn ("Action: ...\\nAction Input: {...}").

    Tool calls are data: the arguments are parsed as JSON, never evaluated.
    """
    action = _ACTION.search(text)
    if action is None or not action.group(1):
        return Call(None, None, "no 'Action:' line")
    api = action.group(1).strip()
    tail = text[action.end() :]
    raw = _INPUT.search(tail)
    if raw is None:
        return Call(api, None, "no 'Action Input:' line")
    body = raw.group(1).strip()
    if body == "":
        return Call(api, {}, None)
    try:
        arguments = json.loads(body)
    except json.JSONDecodeError as err:
        return Call(api, None, f"Action Input is not JSON: {err.msg}")
    if not isinstance(arguments, dict):
        return Call(api, None, f"Action Input is a JSON {type(arguments).__name__}, not an object")
    return Call(api, arguments, None)


def format_call(api: str, arguments: dict[str, Any]) -> str:
    """Return the caller-turn text for a call (the format the caller is trained to write)."""
    return f"Action: {api}\nAction Input: {json.dumps(arguments, ensure_ascii=False)}"


def cut_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """Return ``{"name", "description", "parameters"}`` with name and description cut to the
    paper's 64 / 256 characters. Accepts the test file's ``Name/function/input`` keys too."""
    name = str(tool.get("name", tool.get("Name", "")))
    description = str(tool.get("description", tool.get("function", "")))
    parameters = tool.get("parameters", tool.get("input", {})) or {}
    return {
        "name": name[:MAX_NAME],
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
