"""The SelFee chain format: ``answer`` then ``### Feedback k:`` / ``### Revision k:`` pairs.

A chain is rendered as the training target and parsed back from a model's generation. The
final feedback says "Revision is not needed"; the answer a user gets is the last complete
revision (or the first answer when no revision exists).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PROMPT_TEMPLATE = (
    "Below is an instruction, optionally with an input. Write an answer, then give yourself "
    "feedback and revise the answer until no revision is needed.\n\n"
    "### Instruction:\n{instruction}\n\n{input_block}### Answer:\n"
)
NEEDED = "Revision is needed"
NOT_NEEDED = "Revision is not needed"

_HEADER = re.compile(r"\n*### (Feedback|Revision) (\d+):\n?")
_NOT_NEEDED = re.compile(r"revision is not needed|no revision (?:is )?needed", re.IGNORECASE)
_NEEDED = re.compile(r"revision is needed", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)


def build_prompt(instruction: str, input_text: str = "") -> str:
    """Return the Alpaca-style SelFee prompt ending with ``### Answer:`` and a newline."""
    if not instruction or not instruction.strip():
        raise ValueError("instruction is empty: every item needs a non-empty instruction")
    block = f"### Input:\n{input_text}\n\n" if input_text and input_text.strip() else ""
    return PROMPT_TEMPLATE.format(instruction=instruction.strip(), input_block=block)


def verdict(feedback: str) -> bool | None:
    """Return True when ``feedback`` asks for a revision, False when it says none is needed,
    None when it gives no verdict (a teacher or model that never decides)."""
    if _NOT_NEEDED.search(feedback):
        return False
    if _NEEDED.search(feedback):
        return True
    return None


def feedback_score(feedback: str) -> float | None:
    """Return the 1-10 score written in a feedback ("Score: 7/10"), or None when absent."""
    m = _SCORE.search(feedback)
    if not m:
        return None
    value = float(m.group(1))
    return value if 0 <= value <= 10 else None


@dataclass
class Chain:
    """An answer followed by feedback/revision steps; ``feedbacks[k]`` judges the k-th text
    (the answer for k = 0, revision k otherwise)."""

    answer: str
    feedbacks: list[str] = field(default_factory=list)
    revisions: list[str] = field(default_factory=list)

    @property
    def final_answer(self) -> str:
        """Return the last complete revision, or the answer when there is none."""
        return self.revisions[-1] if self.revisions else self.answer

    @property
    def stopped(self) -> bool:
        """Return True when the chain ends with a feedback saying no revision is needed."""
        return (
            len(self.feedbacks) == len(self.revisions) + 1 and verdict(self.feedbacks[-1]) is False
        )

    def render(self) -> str:
        """Return the chain as text (the ``full`` training target without EOS)."""
        parts = [self.answer.strip()]
        for k, fb in enumerate(self.feedbacks, 1):
            parts.append(f"### Feedback {k}:\n{fb.strip()}")
            if k <= len(self.revisions):
                parts.append(f"### Revision {k}:\n{self.revisions[k - 1].strip()}")
        return "\n\n".join(parts)


def parse_chain(text: str) -> Chain:
    """Return the Chain written in ``text``.

    Headers out of order end the parse: what follows a bad header is dropped, and a revision
    cut off by the token budget (no following feedback) still counts only if it is non-empty.
    """
    pieces = _HEADER.split(text)
    chain = Chain(answer=pieces[0].strip())
    expect_kind, expect_n = "Feedback", 1
    for i in range(1, len(pieces) - 2, 3):
        kind, n, body = pieces[i], int(pieces[i + 1]), pieces[i + 2].strip()
        if (kind, n) != (expect_kind, expect_n):
            break
        if kind == "Feedback":
            chain.feedbacks.append(body)
            expect_kind = "Revision"
        else:
            if not body:
                break
            chain.revisions.append(body)
            expect_kind, expect_n = "Feedback", n + 1
    return chain


def chain_from_record(record: dict) -> Chain:
    """Return the Chain of a generated data record (``outputs: [{output, feedback}, ...]``)."""
    outputs = record.get("outputs") or []
    if not outputs:
        raise ValueError(f"record {record.get('id')!r} has no outputs")
    return Chain(
        answer=outputs[0]["output"],
        feedbacks=[o["feedback"] for o in outputs if o.get("feedback") is not None],
        revisions=[o["output"] for o in outputs[1:]],
    )
