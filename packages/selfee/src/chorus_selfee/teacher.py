"""Feedback-and-revision data generation with any ChatModel teacher, batched across items.

The loop of the original's data_augmentation scripts, per instruction: the teacher answers
(512 tokens), critiques the answer (128 tokens: under 100 words, a 1-10 score, "Revision is
needed" / "Revision is not needed"; a score below 9 should normally be revised), and revises
following its own critique (512 tokens, a multi-turn conversation: critique, then "revise"),
all at the teacher temperature (1.0 in the original); it keeps revising unless the critique
says there is nothing to revise (:func:`chorus_selfee.chain.wants_revision`), up to 5 texts.
Revisions are cleaned as the original cleans them (a closing sentence about the revision and
an opening apology are dropped); a critique whose closing sentence hedges its verdict
("..., but revision is needed") ends with the plain verdict. After the second revision the
critique conversation starts afresh, as in the original. Prompts are in our own words.

Every instruction still in the loop shares one ``chat`` call per step. A failed reply makes
the item an errored record (kept with its reason, retried on resume, never trained on).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chorus_selfee.chain import NEEDED, NOT_NEEDED, verdict, wants_revision
from chorus_selfee.records import ChainStep, TeacherRecord
from chorus_shared.engine import errored_record
from chorus_shared.models import ChatModel, Completion, Message, SamplingParams

MAX_TEXTS = 5  # the original stops at 5 answers/revisions (``iteration >= 5``)
ANSWER_TOKENS, CRITIQUE_TOKENS, REVISION_TOKENS = 512, 128, 512

CRITIQUE_PROMPT = (
    "{context}Here is a proposed answer:\n{answer}\n\n"
    "Do you have any comments on or criticism of this answer? If so, write them in fewer "
    "than 100 words. You may rate the answer from 1 to 10 (1: no code or makes no sense; "
    '10: perfect). Then say whether it needs a revision, ending with "Revision is needed" '
    'or "Revision is not needed". As a rule, an answer rated below 9 should be revised.'
    "\n\n{hint}Critique:"
)
# Constrained mode: the critique is free text; the score and verdict are then chosen by the
# teacher itself among the allowed strings (see ``chorus_selfee.constrained``).
CONSTRAINED_CRITIQUE_PROMPT = (
    "{context}Here is a proposed answer:\n{answer}\n\n"
    "Do you have any comments on or criticism of this answer? If so, write them in fewer "
    "than 100 words.\n\n{hint}Critique:"
)
REVISE_FIRST = (
    "Revise the answer following your critique, in at most 500 words. Keep it simple and "
    "clear, with no remarks such as apologies for earlier mistakes, and write it as if it "
    "were your first attempt.\nRevision:"
)
REVISE_LATER = (
    "Revise the answer following your critique, in at most 500 words. Keep it simple and "
    "clear, with no remarks such as apologies for earlier mistakes.\nRevision:"
)
HINT = (
    "A reference answer exists. Use it only to point at mistakes, and never reveal it:\n"
    "{reference}\n\n"
)
SCORE_PREFIX = "\n\nScore: "
VERDICT_CHOICES: tuple[str, ...] = tuple(
    f"{n}/10\n{v}" for n in range(1, 11) for v in (NEEDED, NOT_NEEDED)
)
TEACHER_VERDICT_MODES = ("generate", "constrained")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Chooser(Protocol):
    """Constrained choice among fixed strings (``chorus_selfee.constrained``)."""

    def choose(
        self,
        conversations: Sequence[list],
        assistant_prefixes: Sequence[str],
        choices: Sequence[str],
    ) -> list[int]: ...


@dataclass
class _State:
    item: dict
    outputs: list[ChainStep] = field(default_factory=list)
    conversation: list[Message] = field(default_factory=list)  # the critique conversation
    done: bool = False
    truncated: bool = False
    missing_verdicts: int = 0
    error: str | None = None

    @property
    def context(self) -> str:
        text = self.item.get("input") or ""
        return f"{self.item['instruction']}\n{text}\n" if text else f"{self.item['instruction']}\n"


def drop_revision_remark(text: str) -> str:
    """Return ``text`` without closing sentences that talk about the revision (a sentence of
    the last line containing "revision "), nor trailing empty lines, as the original cleans
    every revision."""
    while True:
        lines = text.split("\n")
        sentences = [s for s in _SENTENCE_END.split(lines[-1]) if s.strip()]
        if not sentences:
            cleaned = "\n".join(lines[:-1])
        elif "revision " in sentences[-1]:
            cleaned = "\n".join([*lines[:-1], " ".join(sentences[:-1])])
        else:
            cleaned = text
        if cleaned == text:
            return text
        text = cleaned


def drop_apology(text: str) -> str:
    """Return ``text`` without an opening sentence (up to the first '.') that apologises."""
    head, dot, rest = text.partition(".")
    if dot and "i apologize" in head.lower():
        return rest.lstrip()
    return text


def plain_verdict(feedback: str) -> str:
    """Return ``feedback`` whose last '.'-sentence, when it hedges a verdict ("..., but
    revision is needed"), is replaced by the plain verdict (as the original does)."""
    parts = feedback.split(".")
    last = parts[-1].lower()
    if "but" in last and ("revision is needed" in last or "revision is not needed" in last):
        plain = NEEDED if "revision is needed" in last else NOT_NEEDED
        parts[-1] = f" {plain}" if len(parts) > 1 else plain
        return ".".join(parts)
    return feedback


def generate_feedback_data(
    teacher: ChatModel,
    items: Sequence[dict],
    params: SamplingParams,
    *,
    max_iterations: int = MAX_TEXTS,
    use_reference: bool = False,
    chooser: Chooser | None = None,
    tokens: tuple[int, int, int] = (ANSWER_TOKENS, CRITIQUE_TOKENS, REVISION_TOKENS),
) -> list[dict[str, Any]]:
    """Return one record per item (``{id, instruction, input[, reference]}``), in order: a
    :class:`TeacherRecord` as JSON, or an errored record when a teacher reply failed.

    ``max_iterations`` caps the texts (answer + revisions) at 1..5; ``tokens`` are the answer,
    critique and revision budgets (the original's 512/128/512); ``params`` gives the
    temperature and seed. Constrained mode (``chooser``): the teacher writes a critique only,
    then picks ``Score: N/10`` and one of the two verdicts.
    """
    if not 1 <= max_iterations <= MAX_TEXTS:
        raise ValueError(f"max_iterations must be in 1..5 (the paper's cap), got {max_iterations}")
    states = [_State(item=dict(it)) for it in items]
    for s in states:
        if not str(s.item.get("instruction", "")).strip():
            raise ValueError(f"item {s.item.get('id')!r} has an empty instruction")
    answer_p, critique_p, revision_p = (replace(params, max_new_tokens=t) for t in tokens)
    answers = teacher.chat([[{"role": "user", "content": s.context}] for s in states], answer_p)
    for s, c in zip(states, answers, strict=True):
        if _failed(s, c):
            continue
        s.outputs.append(ChainStep(c.text, None))
        s.conversation = [_critique_turn(s, c.text, use_reference, chooser is not None)]

    while live := [s for s in states if not s.done]:
        convs = [list(s.conversation) for s in live]
        feedback = teacher.chat(convs, critique_p)
        if chooser is not None:
            feedback = _constrained_feedback(chooser, convs, feedback)
        revise = []
        for s, c in zip(live, feedback, strict=True):
            if _failed(s, c):
                continue
            text = plain_verdict(c.text)
            s.outputs[-1] = ChainStep(s.outputs[-1].output, text)
            s.conversation.append({"role": "assistant", "content": text})
            if verdict(text) is None:
                s.missing_verdicts += 1  # no verdict: the original revises (counted)
            if not wants_revision(text):
                s.done = True
            elif len(s.outputs) >= max_iterations:
                s.done = s.truncated = True
            else:
                revise.append(s)
        if not revise:
            continue
        for s in revise:
            first = len(s.outputs) <= 2  # the original drops "first attempt" after 2 revisions
            s.conversation.append(
                {"role": "user", "content": REVISE_FIRST if first else REVISE_LATER}
            )
        revisions = teacher.chat([list(s.conversation) for s in revise], revision_p)
        for s, c in zip(revise, revisions, strict=True):
            if _failed(s, c):
                continue
            if "N/A" in c.text:  # the original gives up on a revision that declines
                s.done = True
                continue
            text = drop_apology(drop_revision_remark(c.text))
            s.outputs.append(ChainStep(text, None))
            turn = _critique_turn(s, text, use_reference, chooser is not None)
            if len(s.outputs) > 2:
                s.conversation = [turn]  # later critiques start afresh, as the original's
            else:
                s.conversation += [{"role": "assistant", "content": text}, turn]
    return [_record(s) for s in states]


def _failed(s: _State, c: Completion) -> bool:
    """Mark ``s`` errored when ``c`` failed; return whether it did."""
    if c.error or c.finish_reason == "error":
        s.error = c.error or "the teacher's reply failed"
        s.done = True
        return True
    return False


def _critique_turn(s: _State, answer: str, use_reference: bool, constrained: bool) -> Message:
    ref = s.item.get("reference")
    prompt = CONSTRAINED_CRITIQUE_PROMPT if constrained else CRITIQUE_PROMPT
    return {
        "role": "user",
        "content": prompt.format(
            context=s.context,
            answer=answer,
            hint=HINT.format(reference=ref) if use_reference and ref else "",
        ),
    }


def _constrained_feedback(
    chooser: Chooser, convs: list[list[Message]], critiques: list[Completion]
) -> list[Completion]:
    """Return the critiques completed with the teacher's own constrained score + verdict."""
    # Cut a critique at any score/verdict it wrote itself: the constrained choice decides.
    texts = [_cut_free_verdict(c.text) for c in critiques]
    picks = chooser.choose(convs, [t + SCORE_PREFIX for t in texts], VERDICT_CHOICES)
    return [
        c if c.finish_reason == "error" else replace(c, text=t + SCORE_PREFIX + VERDICT_CHOICES[k])
        for c, t, k in zip(critiques, texts, picks, strict=True)
    ]


def _cut_free_verdict(text: str) -> str:
    m = re.search(r"score\s*[:=]|revision is (?:not )?needed|no revision", text, re.IGNORECASE)
    return (text[: m.start()] if m else text).strip()


def _record(s: _State) -> dict[str, Any]:
    if s.error is not None:
        return errored_record(s.item["id"], s.error, instruction=s.item["instruction"])
    outputs = s.outputs
    # A text nobody critiqued (a failed or declined step) cannot enter the chain.
    if outputs[-1].feedback is None and len(outputs) > 1:
        outputs = outputs[:-1]
    return TeacherRecord(
        id=str(s.item["id"]),
        instruction=s.item["instruction"],
        input=s.item.get("input") or "",
        outputs=outputs,
        iteration=len(outputs),
        iteration_truncated=s.truncated,
        missing_verdicts=s.missing_verdicts,
    ).to_json()
