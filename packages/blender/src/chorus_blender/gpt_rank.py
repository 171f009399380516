"""GPT-Rank: the paper's LLM-judged rank metric (lower is better), with any ChatModel as judge.

For one item, the entries to rank are the answers that the methods can return: the item's
candidates and, when there is one, the fused answer. A chat model judges every unordered pair
of distinct entries in BOTH orders (``Response A`` / ``Response B`` swapped) to cancel position
bias; all pairs of all items of a window go to the judge in one batched ``chat`` call.

Counting (our rules, stated because the paper gives the idea, not the arithmetic):

- each judged order gives one point: to the preferred entry, or half a point to each on
  ``tie``; an unparseable verdict (or a backend error) gives no point to anyone and is counted
  in ``unparseable`` — never guessed;
- entries with the same text are one answer: they are not judged against each other and share
  the same wins (so two methods picking the same text get the same rank);
- an empty entry (a failed generation) is not sent to the judge and loses both orders of every
  pair it is in;
- rank = 1 + the number of entries with more points, ties sharing the average of the
  positions they span (fractional ranking), so a uniformly random pick has expected rank
  ``(n + 1) / 2`` among ``n`` entries.

A method's GPT-Rank on an item is the rank of the entry it returned; the table reports the
mean ± s.e. over items.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from chorus_shared.models import ChatModel, Message, SamplingParams

JUDGE_SYSTEM = "You are a careful, impartial judge of answers to instructions."

JUDGE_TEMPLATE = """Compare two responses to the same instruction.

Instruction:
{instruction}

Response A:
{a}

Response B:
{b}

Which response follows the instruction better: more correct, more helpful, clearer? Reply with \
one word only: A, B, or tie."""

# A verdict is read from the reply's first line only, in one of three shapes: the line is just
# the verdict ("A", "**B**", "(A).", "Verdict: tie"); it opens with a named response ("Response
# A ...", "The answer B ..."); or it opens with "A is ..." / "B wins ...". Upper-case letters
# only: a lower-case "a" opens a sentence. Anything else ("A/B", "Both", "A good answer ...")
# is unparseable and counted, never guessed.
_PREFIX = r"^\W*(?:(?i:the\s+)?(?i:response|answer|output|verdict)\s*:?\s+)?"
_ALONE = re.compile(_PREFIX + r"\(?(A|B|(?i:tie))\)?\W*$")
_NAMED = re.compile(r"^\W*(?i:the\s+)?(?i:response|answer|output)\s+(A|B)\b(?!\s*[-/&]\s*\w)")
_SUBJECT = re.compile(r"^\W*(A|B)\s+(?i:is|wins)\b")


def parse_verdict(text: str) -> str | None:
    """Return ``"A"``, ``"B"`` or ``"tie"`` from a judge's reply, or None when unparseable."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    for pattern in (_ALONE, _NAMED, _SUBJECT):
        match = pattern.match(first)
        if match is not None:
            word = match.group(1)
            return "tie" if word.lower() == "tie" else word
    return None


def _cut(text: str, max_words: int) -> str:
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def judge_prompt(instruction: str, a: str, b: str, *, max_words: int = 256) -> list[Message]:
    """Return the judge conversation for one ordered pair (A shown first)."""
    content = JUDGE_TEMPLATE.format(
        instruction=instruction.strip(), a=_cut(a, max_words), b=_cut(b, max_words)
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": content}]


def fractional_ranks(points: Sequence[float]) -> list[float]:
    """Return 1-based ranks by descending points, ties sharing their average position."""
    ranks = []
    for p in points:
        above = sum(1 for q in points if q > p)
        level = sum(1 for q in points if q == p)
        ranks.append(above + (level + 1) / 2)
    return ranks


def best_shared_ranks(points: Sequence[float]) -> list[float]:
    """Return 1-based ranks by descending points, tied entries sharing the best rank of their
    group: the original's rule (``get_ranks_from_scores``: points 3, 5, 5, 1 -> 3, 1, 1, 4)."""
    return [float(1 + sum(1 for q in points if q > p)) for p in points]


TIE_RULES = {"best": best_shared_ranks, "average": fractional_ranks}

# MixInstruct's ChatGPT labels and what each adds to M[A][B] and M[B][A] (the original's
# get_ranks_from_chatgpt_cmps); a tie moves both by the same amount, so only wins count.
CMP_LABELS = {
    "A is better": (1.0, -1.0),
    "B is better": (-1.0, 1.0),
    "Same good": (0.5, 0.5),
    "Same bad": (-0.5, -0.5),
}


def ranks_from_cmp_results(models: Sequence[str], cmp_results: Mapping[str, str]) -> list[float]:
    """Return the GPT-Rank of each candidate (by its ``model``) from MixInstruct's released
    ChatGPT labels (``{"modelA,modelB": "A is better" | ...}``), as the original: the
    comparison matrix M, scores ``(M - M.T).sum(-1)``, tied candidates sharing the best rank.

    Raises ValueError naming an unknown model or label.
    """
    n = len(models)
    matrix = [[0.0] * n for _ in range(n)]
    for key, label in cmp_results.items():
        first, _, second = key.partition(",")
        if first not in models or second not in models:
            raise ValueError(f"cmp_results key {key!r} names a model not among the candidates")
        if label not in CMP_LABELS:
            raise ValueError(f"unknown cmp_results label {label!r}; expected {sorted(CMP_LABELS)}")
        i, j = models.index(first), models.index(second)
        ab, ba = CMP_LABELS[label]
        matrix[i][j] += ab
        matrix[j][i] += ba
    scores = [sum(matrix[i][j] - matrix[j][i] for j in range(n)) for i in range(n)]
    return best_shared_ranks(scores)


@dataclass
class ItemRanks:
    """GPT-Rank of one item's entries, and what the judge returned."""

    ranks: list[float]
    points: list[float]
    judged: int = 0
    unparseable: int = 0
    verdicts: list[dict] = field(default_factory=list)

    def verdict_counts(self) -> dict[str, int]:
        """Return how often the judge answered A (the first shown), B, tie, or unparseably.

        A judge that mostly answers A (or B) whatever the order is position-biased: its
        two orders cancel and the ranks carry little information.
        """
        counts = {"A": 0, "B": 0, "tie": 0, "unparseable": 0}
        for v in self.verdicts:
            counts[v["verdict"] or "unparseable"] += 1
        return counts


def gpt_rank(
    judge: ChatModel,
    instructions: Sequence[str],
    entries: Sequence[Sequence[str]],
    *,
    params: SamplingParams | None = None,
    max_words: int = 256,
    tie_rule: str = "best",
) -> list[ItemRanks]:
    """Return each item's entries' GPT-Rank (1 = best), judged in one batched ``chat`` call.

    ``entries[k]`` are the answers of item ``k`` to rank against each other (at least one).
    ``tie_rule``: ``best`` (the original's: tied entries share the best rank of their group)
    or ``average`` (they share the mean of their positions).
    """
    if tie_rule not in TIE_RULES:
        raise ValueError(f"tie_rule must be one of {sorted(TIE_RULES)}, got {tie_rule!r}")
    if len(instructions) != len(entries):
        raise ValueError("give one list of entries per instruction")
    conversations: list[list[Message]] = []
    jobs: list[tuple[int, int, int]] = []  # (item, shown as A, shown as B) per conversation
    per_item: list[tuple[list[int], list[str]]] = []  # (text group of each entry, group texts)
    for k, (instruction, texts) in enumerate(zip(instructions, entries, strict=True)):
        if not texts:
            raise ValueError(f"item {k} has no entries to rank")
        groups: list[str] = []
        index = []
        for t in texts:
            if t not in groups:
                groups.append(t)
            index.append(groups.index(t))
        per_item.append((index, groups))
        for i in range(len(groups)):
            for j in range(len(groups)):
                if i != j and groups[i].strip() and groups[j].strip():
                    jobs.append((k, i, j))
                    conversations.append(
                        judge_prompt(instruction, groups[i], groups[j], max_words=max_words)
                    )
    replies = judge.chat(conversations, params or SamplingParams(max_new_tokens=8)) if jobs else []
    points = [[0.0] * len(groups) for _, groups in per_item]
    results = [ItemRanks(ranks=[], points=[]) for _ in per_item]
    for (k, i, j), reply in zip(jobs, replies, strict=True):
        verdict = parse_verdict(reply.text) if reply.error is None else None
        results[k].judged += 1
        results[k].verdicts.append({"a": i, "b": j, "verdict": verdict, "reply": reply.text[:80]})
        if verdict is None:
            results[k].unparseable += 1
        elif verdict == "A":
            points[k][i] += 1.0
        elif verdict == "B":
            points[k][j] += 1.0
        else:
            points[k][i] += 0.5
            points[k][j] += 0.5
    for k, (index, groups) in enumerate(per_item):
        # An empty answer loses both orders against every non-empty one (it is never judged).
        for text in groups:
            if not text.strip():
                for h, other in enumerate(groups):
                    if other.strip():
                        points[k][h] += 2.0
        entry_points = [points[k][g] for g in index]
        results[k].points = entry_points
        results[k].ranks = TIE_RULES[tie_rule](entry_points)
    return results
