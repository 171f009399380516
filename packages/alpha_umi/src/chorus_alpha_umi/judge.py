"""Pass rate of real-time episodes: an LLM judge (any ChatModel spec) reads the user's query
and the agent's final answer and says whether the query was solved.

As in ToolBench's pass rate, an episode that gave up or ran out of turns has no answer and
fails without asking the judge. A verdict that names neither "Solved" nor "Unsolved" is
counted as unparseable and as not passed (never as a pass).
"""

from __future__ import annotations

import re
from typing import Any

from chorus_shared.engine import first_error
from chorus_shared.models import ChatModel, Message, SamplingParams

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


def judge_prompt(episode: dict[str, Any]) -> list[Message]:
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
            reason = first_error([reply])
            if reason is not None:
                # A failed judge call is no verdict: the item is errored and retried.
                episode["judge_error"] = f"judge: {reason}"
                continue
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


# --- win rate: one agent's final answers against a reference agent's, both orders ------------

PAIRWISE_PROMPT = (
    "Two assistants that could call tools answered the same user request.\n"
    "Request:\n{query}\n\n"
    "Answer A:\n{a}\n\n"
    "Answer B:\n{b}\n\n"
    "Which answer gives the user more of what was asked, correctly and helpfully? "
    "Reply with one letter: A or B."
)
MAX_ANSWER_CHARS = 1500
# A reply that starts with the letter ("A", "B.", "**B**") or names "Answer A" / "answer: B".
_LEADING = re.compile(r"^\W*([AB])\b")
_NAMED = re.compile(r"\banswer\s*:?\s*([AB])\b", re.IGNORECASE)

OUTCOMES = ("win", "loss", "tie", "unparseable")


def parse_preference(text: str) -> str:
    """Return "A", "B" or "unparseable" for a pairwise judge reply.

    The reply must start with the letter or name "Answer A"/"Answer B"; a reply that names
    both answers ("Answer A ... Answer B") is read by its first naming. Anything else is
    unparseable and is never read as a preference.
    """
    text = (text or "").strip()
    match = _LEADING.match(text) or _NAMED.search(text)
    return match.group(1).upper() if match else "unparseable"


def pairwise_prompt(query: str, answer_a: str, answer_b: str) -> list[Message]:
    """Return the pairwise judge's chat messages (answers shortened to MAX_ANSWER_CHARS)."""
    content = PAIRWISE_PROMPT.format(
        query=query, a=answer_a[:MAX_ANSWER_CHARS], b=answer_b[:MAX_ANSWER_CHARS]
    )
    return [{"role": "user", "content": content}]


def _answer(episode: dict[str, Any]) -> str | None:
    """Return the final answer of an episode that reached a conclusion, else None."""
    answer = episode.get("answer")
    return answer if episode.get("status") == "conclusion" and answer else None


def _query(episode: dict[str, Any]) -> str:
    turns = episode.get("conversations") or []
    return turns[0]["value"] if turns else ""


def compare_episodes(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    judge: ChatModel,
    params: SamplingParams,
) -> list[dict[str, Any]]:
    """Return one record per ``(episode, reference episode)`` pair of the same query with
    ``outcome`` (one of OUTCOMES, from the episode's side) and the judge's two replies.

    Both answers present: the judge is asked twice, episode as A then as B (one batched
    ``chat`` call for every order of every pair); the same side preferred in both orders is a
    win or a loss, a split is a tie, an unparseable reply in either order makes the pair
    ``unparseable`` (counted, never guessed). One side without an answer (it gave up or ran
    out of turns): the side with an answer wins without a judge call; neither: a tie.
    """
    records: list[dict[str, Any]] = []
    asked: list[int] = []
    prompts: list[list[Message]] = []
    for mine, ref in pairs:
        a, b = _answer(mine), _answer(ref)
        record: dict[str, Any] = {
            "id": mine["id"],
            "answer": a,
            "reference_answer": b,
            "preference_episode_first": None,
            "preference_reference_first": None,
            "replies": None,
        }
        if a is None or b is None:
            # No judge call: an answer beats none; two episodes without one tie.
            record["outcome"] = ("tie" if a is None else "win") if b is None else "loss"
        else:
            asked.append(len(records))
            query = _query(mine)
            prompts += [pairwise_prompt(query, a, b), pairwise_prompt(query, b, a)]
        records.append(record)
    if prompts:
        replies = judge.chat(prompts, params)
        for n, k in enumerate(asked):
            reason = first_error([replies[2 * n], replies[2 * n + 1]])
            if reason is not None:
                records[k]["judge_error"] = f"pairwise judge: {reason}"
                continue
            first, second = replies[2 * n].text, replies[2 * n + 1].text
            # Map each order's letter to a side: in the second order the episode is B.
            side_1 = {"A": "episode", "B": "reference"}.get(parse_preference(first))
            side_2 = {"B": "episode", "A": "reference"}.get(parse_preference(second))
            if side_1 is None or side_2 is None:
                outcome = "unparseable"
            elif side_1 == side_2:
                outcome = "win" if side_1 == "episode" else "loss"
            else:
                outcome = "tie"
            records[k].update(
                preference_episode_first=side_1,
                preference_reference_first=side_2,
                replies=[first, second],
                outcome=outcome,
            )
    return records


def win_rate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the win rate in percent of the episodes' side over all compared pairs
    (win = 1, tie = 0.5, loss and unparseable = 0; None when there are no pairs) and the
    count of each outcome."""
    counts = {o: sum(1 for r in records if r["outcome"] == o) for o in OUTCOMES}
    rate = 100.0 * (counts["win"] + 0.5 * counts["tie"]) / len(records) if records else None
    return {"win_rate": rate, "pairs": len(records), "outcomes": counts}
