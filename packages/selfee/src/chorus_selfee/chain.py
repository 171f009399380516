"""The SelFee chain format: ``answer`` then ``### Feedback k:`` / ``### Revision k:`` pairs.

A chain is rendered as the training target (:meth:`Chain.render`) and read back from a
model's generation. What a user gets from a generation is :func:`final_answer`, which follows
the original's ``parse()`` (inference/inference.py) exactly: the last revision that is
*followed by a feedback*; a revision cut off by the token budget is not an answer, so the one
before it (or the first answer) is returned instead.

The prompt is the original's Alpaca header (train/feedback_utils.py and the ``selfee``
conversation template): released SelFee weights were trained on exactly this text, so it is
the one string we do not reword.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The original's training/inference header, byte for byte (the models were trained on it).
PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Answer:\n"
)
PROMPT_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Answer:\n"
)
PROMPT_TEMPLATE = PROMPT_NO_INPUT  # kept for callers that render the no-input header
NEEDED = "Revision is needed"
NOT_NEEDED = "Revision is not needed"
# The six spellings the original's revision-enforce reacts to (inference.py and the demo's
# serve/inference.py), in its order; nothing else triggers a forced revision.
NOT_NEEDED_PHRASES: tuple[str, ...] = (
    "Revision is not needed",
    "revision is not needed",
    "No revision is needed",
    "no revision is needed",
    "No revisions needed",
    "no revisions needed",
)
# The data-generation loop keeps revising unless the critique contains one of these (lower
# case), as in the original's data_augmentation scripts.
STOP_REVISING_MARKERS: tuple[str, ...] = ("no critique", "no revision", "no need", "not needed")

FEEDBACK_MARK = "\n\n### Feedback"
REVISION_MARK = "### Revision "

_HEADER = re.compile(r"\n*### (Feedback|Revision) (\d+):\n?")
_NOT_NEEDED = re.compile(r"revision is not needed|no revisions? (?:is )?needed", re.IGNORECASE)
_NEEDED = re.compile(r"revision is needed", re.IGNORECASE)
_SCORE = re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)\s*(?:/\s*10)?", re.IGNORECASE)
_REVISION_NUMBER = re.compile(r"^\d+:")


def build_prompt(instruction: str, input_text: str = "") -> str:
    """Return the original's SelFee prompt (Alpaca header, ``### Answer:`` and a newline).

    An instruction with an input gets the original's with-input header. Raises ``ValueError``
    for an empty instruction.
    """
    if not instruction or not instruction.strip():
        raise ValueError("instruction is empty: every item needs a non-empty instruction")
    if input_text:
        return PROMPT_WITH_INPUT.format(instruction=instruction, input=input_text)
    return PROMPT_NO_INPUT.format(instruction=instruction)


def verdict(feedback: str) -> bool | None:
    """Return True when ``feedback`` asks for a revision, False when it says none is needed,
    None when it gives no verdict (used for counts; the loop itself follows
    :func:`wants_revision`)."""
    if _NOT_NEEDED.search(feedback):
        return False
    if _NEEDED.search(feedback):
        return True
    return None


def wants_revision(feedback: str) -> bool:
    """Return whether the data-generation loop revises after ``feedback``: always, unless the
    critique says there is nothing to revise (the original's four markers, any case)."""
    text = feedback.lower()
    return not any(marker in text for marker in STOP_REVISING_MARKERS)


def feedback_score(feedback: str) -> float | None:
    """Return the 1-10 score written in a feedback ("Score: 7/10"), or None when absent."""
    m = _SCORE.search(feedback)
    if not m:
        return None
    value = float(m.group(1))
    return value if 0 <= value <= 10 else None


@dataclass(frozen=True)
class FinalAnswer:
    """What a generation answers: ``text`` and the number of the revision it is (0 = the
    first answer), i.e. the complete revisions the chain holds."""

    text: str
    revisions: int


def final_answer(generation: str) -> FinalAnswer:
    """Return the answer of a SelFee generation (the text after ``### Answer:\\n``).

    As the original's ``parse()``: with no ``### Revision`` header, the text before the first
    feedback; otherwise the last revision when a feedback follows it, else (the last revision
    was cut by the budget) the revision before it, or the first answer when it was the only
    one. ``revisions`` counts the same way: a cut revision does not count.
    """
    pieces = generation.split(REVISION_MARK)
    last = len(pieces) - 1
    if last > 0 and FEEDBACK_MARK not in pieces[-1]:
        last -= 1  # the last revision never got its feedback: cut, not an answer
    if last == 0:
        return FinalAnswer(pieces[0].split(FEEDBACK_MARK)[0], 0)
    body = _REVISION_NUMBER.sub("", pieces[last].split(FEEDBACK_MARK)[0], count=1)
    return FinalAnswer(body.removeprefix("\n"), last)


@dataclass
class Chain:
    """An answer followed by feedback/revision steps; ``feedbacks[k]`` judges the k-th text
    (the answer for k = 0, revision k otherwise)."""

    answer: str
    feedbacks: list[str] = field(default_factory=list)
    revisions: list[str] = field(default_factory=list)

    @property
    def final_answer(self) -> str:
        """Return the last revision that has a feedback after it (the answer when none)."""
        complete = min(len(self.revisions), max(len(self.feedbacks) - 1, 0))
        return self.revisions[complete - 1] if complete else self.answer

    @property
    def stopped(self) -> bool:
        """Return True when the chain ends with a feedback saying no revision is needed."""
        return (
            len(self.feedbacks) == len(self.revisions) + 1 and verdict(self.feedbacks[-1]) is False
        )

    def render(self) -> str:
        """Return the chain as text: the original's ``full`` training target without EOS
        (answer, then ``\\n\\n### Feedback k:\\n`` and ``\\n\\n### Revision k:\\n`` sections)."""
        text = self.answer
        for k, fb in enumerate(self.feedbacks, 1):
            if k > 1:
                text += f"\n\n### Revision {k - 1}:\n{self.revisions[k - 2]}"
            text += f"\n\n### Feedback {k}:\n{fb}"
        if len(self.revisions) >= len(self.feedbacks) and self.revisions:
            # A last revision nobody critiqued (the teacher stopped at its cap).
            text += f"\n\n### Revision {len(self.revisions)}:\n{self.revisions[-1]}"
        return text


def parse_chain(text: str) -> Chain:
    """Return the Chain written in ``text`` (for display and counts; the answer a user gets is
    :func:`final_answer`).

    Headers out of order end the parse: what follows a bad header is dropped.
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
    """Return the Chain of a data record (``outputs: [{output, feedback}, ...]``, the
    original's format); raises ``ValueError`` for a record without outputs."""
    outputs = record.get("outputs") or []
    if not outputs:
        raise ValueError(f"record {record.get('id')!r} has no outputs")
    return Chain(
        answer=outputs[0]["output"],
        feedbacks=[o["feedback"] for o in outputs if o.get("feedback") is not None],
        revisions=[o["output"] for o in outputs[1:]],
    )
