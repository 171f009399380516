"""The biography fact check: an LLM judge says whether a biography agrees with each true fact.

Accuracy = yes / (yes + no) over the ground-truth bullets (the paper's metric; the paper pools
every verdict of all people, agents and facts). "uncertain" verdicts are excluded, and so is a
judge reply that says none of yes/no/uncertain (*unparseable*): it is counted and reported,
never turned into a "no" or a "yes".
"""

from __future__ import annotations

import re

from chorus_shared.models import ChatModel, Message, SamplingParams

JUDGE_PROMPT = (
    "Here is a biography of {person}:\n\n{biography}\n\n"
    "Here is one fact about {person}: {fact}\n\n"
    "Does the biography agree with this fact? Check names, dates and places carefully. "
    "Reply with exactly one word: yes, no, or uncertain."
)

VERDICTS = ("yes", "no", "uncertain")
# Whole words only: "no" must not match inside "not", "know" or "nothing".
_VERDICT = re.compile(r"\b(yes|no|uncertain)\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """Return "yes", "no" or "uncertain" (the first one said), or None when the reply has none."""
    match = _VERDICT.search(text)
    return match.group(1).lower() if match else None


def judge_conversations(person: str, biography: str, facts: list[str]) -> list[list[Message]]:
    """Return one judge conversation per fact."""
    return [
        [
            {
                "role": "user",
                "content": JUDGE_PROMPT.format(person=person, biography=biography, fact=fact),
            }
        ]
        for fact in facts
    ]


def judge_biographies(
    judge: ChatModel,
    people: list[str],
    biographies: list[list[str | None]],
    facts: list[list[str]],
    params: SamplingParams,
) -> list[list[list[str | None]]]:
    """Return verdicts[item][agent][fact] for every agent's biography, in one batched call.

    A missing biography (None) gets "no" for every fact without asking the judge.
    """
    conversations: list[list[Message]] = []
    slots: list[tuple[int, int, int]] = []
    verdicts: list[list[list[str | None]]] = [
        [["no"] * len(facts[i]) for _ in bios] for i, bios in enumerate(biographies)
    ]
    for i, bios in enumerate(biographies):
        for a, bio in enumerate(bios):
            if bio is None:
                continue
            for f, conv in enumerate(judge_conversations(people[i], bio, facts[i])):
                conversations.append(conv)
                slots.append((i, a, f))
    if conversations:
        for (i, a, f), completion in zip(slots, judge.chat(conversations, params), strict=True):
            verdicts[i][a][f] = parse_verdict(completion.text) if not completion.error else None
    return verdicts


def biography_score(verdicts: list[list[str | None]]) -> tuple[float | None, dict[str, int]]:
    """Return (accuracy, counts) of one person, pooled over agents and facts.

    Accuracy is yes / (yes + no); uncertain and unparseable verdicts are excluded and counted.
    When no verdict is yes or no the accuracy is None: the person has no score (it is not 0).
    """
    counts = {"yes": 0, "no": 0, "uncertain": 0, "unparseable": 0}
    for agent in verdicts:
        for v in agent:
            counts[v if v in VERDICTS else "unparseable"] += 1
    decided = counts["yes"] + counts["no"]
    return (counts["yes"] / decided if decided else None), counts


def pooled_accuracy(counts: list[dict[str, int]]) -> float | None:
    """Return the paper's headline: sum(yes) / sum(yes + no) over every person's counts."""
    yes = sum(c["yes"] for c in counts)
    decided = yes + sum(c["no"] for c in counts)
    return yes / decided if decided else None
