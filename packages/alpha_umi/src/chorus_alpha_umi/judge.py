"""Pass rate of real-time episodes: an LLM judge (any ChatModel spec) reads the user's query
and the agent's final answer and says whether the query was solved.

As in ToolBench's pass rate, an episode that gave up or ran out of turns has no answer and
fails without asking the judge. A verdict that names neither "Solved" nor "Unsolved" is
counted as unparseable and as not passed (never as a pass).
"""

from __future__ import annotations

import re
from typing import Any

from chorus_shared.models import ChatModel, SamplingParams

JUDGE_PROMPT = (
    "You check whether an assistant that could call tools solved a user's request.\n"
    "Request:\n{query}\n\n"
    "Tool observations the assistant saw (last ones, shortened):\n{observations}\n\n"
    "Final answer:\n{answer}\n\n"
    "Does the final answer give the user what was asked, consistent with the observations? "
    "Reply with one word: Solved or Unsolved."
)
_VERDICT = re.compile(r"\b(unsolved|solved)\b", re.IGNORECASE)
MAX_OBSERVATION_CHARS = 600
MAX_OBSERVATIONS = 3

VERDICTS = ("solved", "unsolved", "no answer", "unparseable")


def parse_verdict(text: str) -> str:
    """Return "solved", "unsolved" (the first of the two words named) or "unparseable"."""
    match = _VERDICT.search(text or "")
    return match.group(1).lower() if match else "unparseable"


def judge_prompt(episode: dict[str, Any]) -> list[dict[str, str]]:
    """Return the judge's chat messages for one finished episode with an answer."""
    turns = episode["conversations"]
    query = turns[0]["value"] if turns else ""
    observations = [t["value"][:MAX_OBSERVATION_CHARS] for t in turns if t["from"] == "observation"]
    shown = "\n".join(observations[-MAX_OBSERVATIONS:]) or "(none)"
    content = JUDGE_PROMPT.format(query=query, observations=shown, answer=episode["answer"])
    return [{"role": "user", "content": content}]


def judge_episodes(
    episodes: list[dict[str, Any]], judge: ChatModel, params: SamplingParams
) -> list[dict[str, Any]]:
    """Set ``verdict`` (one of VERDICTS), ``passed`` and ``judge_reply`` on every episode.

    One batched ``chat`` call for all episodes that reached a conclusion; returns them.
    """
    answered = [e for e in episodes if e["status"] == "conclusion" and e.get("answer")]
    for episode in episodes:
        episode.update(verdict="no answer", passed=False, judge_reply=None)
    if answered:
        replies = judge.chat([judge_prompt(e) for e in answered], params)
        for episode, reply in zip(answered, replies, strict=True):
            verdict = parse_verdict(reply.text)
            episode.update(verdict=verdict, passed=verdict == "solved", judge_reply=reply.text)
    return episodes


def pass_rate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the pass rate in percent over judged records (None when there are none) and
    the count of each verdict."""
    judged = [r for r in records if "verdict" in r]
    counts = {v: sum(1 for r in judged if r["verdict"] == v) for v in VERDICTS}
    rate = 100.0 * sum(1 for r in judged if r["passed"]) / len(judged) if judged else None
    return {"pass_rate": rate, "judged": len(judged), "verdicts": counts}
