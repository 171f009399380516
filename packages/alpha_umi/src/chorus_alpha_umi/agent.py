"""The alpha-UMi agent loop over many episodes at once: each role step is one batched call.

planner -> route on the first "Next: ..." marker (none: caller) -> caller writes a call ->
the tool environment answers -> observation -> planner ... -> summarizer on "conclusion".
An episode stops on give up, on a conclusion, or after ``max_turns`` planner turns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from chorus_alpha_umi.dialog import parse_call, parse_route, role_prompt, strip_route
from chorus_alpha_umi.tools import ToolEnvironment
from chorus_shared.engine import first_error
from chorus_shared.models import ChatModel, Completion, SamplingParams

# The original's real-time agent cuts every observation to this many characters.
OBSERVATION_CHARS = 1024


def _failed(episode: dict[str, Any], completion: Completion, role: str) -> bool:
    """Mark ``episode`` errored when ``completion`` failed (an errored item, never scored)."""
    reason = first_error([completion])
    if reason is None:
        return False
    episode["status"] = "error"
    episode["error"] = f"{role}: {reason}"
    return True


def _is_error(observation: str) -> bool:
    """Return whether an observation is the environment's ``{"error": ...}`` answer."""
    try:
        value = json.loads(observation)
    except json.JSONDecodeError:
        return False  # a non-JSON observation is data for the planner, not an error
    return isinstance(value, dict) and set(value) == {"error"}


def new_episode(episode_id: str, tools: list[dict[str, Any]], query: str) -> dict[str, Any]:
    """Return a fresh episode state for ``query`` with ``tools``."""
    return {
        "id": episode_id,
        "tools": tools,
        "conversations": [{"from": "user", "value": query}],
        "status": "running",
        "answer": None,
        "planner_turns": 0,
        "unmarked_plans": 0,
        "bad_calls": 0,
        "tool_errors": 0,
    }


def run_episodes(
    episodes: list[dict[str, Any]],
    model_for: Callable[[str], ChatModel],
    env: ToolEnvironment,
    params: dict[str, SamplingParams],
    *,
    max_turns: int = 12,
    observation_chars: int = OBSERVATION_CHARS,
) -> list[dict[str, Any]]:
    """Run every episode to its end; return them with ``status`` (conclusion | give up |
    max_turns | error, with ``error`` the reason of a failed reply) and ``answer`` set.

    Each loop iteration makes at most one ``chat`` call per role and one ``call_many`` on the
    environment, over all episodes still running; observations are cut to
    ``observation_chars``."""
    while True:
        running = [e for e in episodes if e["status"] == "running"]
        if not running:
            return episodes
        plans = model_for("planner").chat(
            [role_prompt("planner", e["tools"], e["conversations"]) for e in running],
            params["planner"],
        )
        to_call, to_conclude = [], []
        for episode, completion in zip(running, plans, strict=True):
            if _failed(episode, completion, "planner"):
                continue
            episode["planner_turns"] += 1
            route, marked = parse_route(completion.text)
            episode["unmarked_plans"] += not marked
            episode["conversations"].append({"from": "assistant", "value": completion.text})
            if route == "give up":
                episode["status"] = "give up"
            elif route == "conclusion":
                to_conclude.append(episode)
            else:
                to_call.append(episode)

        def with_thought(e: dict[str, Any]) -> list[dict[str, str]]:
            *past, last = e["conversations"]
            return [*past, {"from": "assistant", "value": strip_route(last["value"])}]

        if to_call:
            calls = model_for("caller").chat(
                [role_prompt("caller", e["tools"], with_thought(e)) for e in to_call],
                params["caller"],
            )
            kept = [
                (e, c) for e, c in zip(to_call, calls, strict=True) if not _failed(e, c, "caller")
            ]
            parsed = [parse_call(c.text) for _, c in kept]
            observations = env.call_many(
                [(e["tools"], p.api, p.arguments) for (e, _), p in zip(kept, parsed, strict=True)]
            )
            for (episode, completion), call, observation in zip(
                kept, parsed, observations, strict=True
            ):
                observation = observation[:observation_chars]
                episode["bad_calls"] += call.error is not None
                episode["tool_errors"] += _is_error(observation)
                episode["conversations"].append({"from": "caller", "value": completion.text})
                episode["conversations"].append({"from": "observation", "value": observation})
                if episode["planner_turns"] >= max_turns:
                    episode["status"] = "max_turns"
        if to_conclude:
            answers = model_for("summarizer").chat(
                [role_prompt("summarizer", e["tools"], with_thought(e)) for e in to_conclude],
                params["summarizer"],
            )
            for episode, completion in zip(to_conclude, answers, strict=True):
                if _failed(episode, completion, "summarizer"):
                    continue
                episode["conversations"].append({"from": "conclusion", "value": completion.text})
                episode["answer"] = completion.text
                episode["status"] = "conclusion"
