"""Feedback-and-revision data generation with any ChatModel teacher, batched across items.

Per instruction: answer -> critique (under 100 words, a 1-10 score, a verdict) -> revision
when the verdict asks for one -> critique again ... up to ``max_iterations`` critiques. Every
instruction still in the loop shares one ``chat`` call per step. Records follow the original
format: ``{instruction, input, output, outputs: [{output, feedback}, ...], iteration,
iteration_truncated}`` plus an ``id`` and the counts we report (missing verdicts, errors).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from chorus_selfee.chain import NEEDED, NOT_NEEDED, feedback_score, verdict
from chorus_shared.models import ChatModel, Message, SamplingParams

ANSWER_PROMPT = "{instruction}{input_block}"
FEEDBACK_PROMPT = (
    "Here is a request and a candidate response.\n\n"
    "Request:\n{instruction}{input_block}\n\nResponse:\n{answer}\n\n{hint}"
    "Critique the response in under 100 words: say what is wrong or missing. Then write "
    "'Score: N/10' with N from 1 to 10. End with exactly one line, either 'Revision is needed' "
    "or 'Revision is not needed'."
)
# Constrained mode: the critique is free text; the score and verdict are then chosen by the
# teacher itself among the allowed strings (see ``chorus_selfee.constrained``).
CRITIQUE_PROMPT = (
    "Here is a request and a candidate response.\n\n"
    "Request:\n{instruction}{input_block}\n\nResponse:\n{answer}\n\n{hint}"
    "Critique the response in under 100 words: say what is wrong or missing."
)
SCORE_PREFIX = "\n\nScore: "
VERDICT_CHOICES: tuple[str, ...] = tuple(
    f"{n}/10\n{v}" for n in range(1, 11) for v in (NEEDED, NOT_NEEDED)
)
TEACHER_VERDICT_MODES = ("generate", "constrained")


class Chooser(Protocol):
    """Constrained choice among fixed strings (``chorus_selfee.constrained``)."""

    def choose(
        self,
        conversations: Sequence[list],
        assistant_prefixes: Sequence[str],
        choices: Sequence[str],
    ) -> list[int]: ...


HINT = (
    "A reference solution exists (do not reveal it, use it only to point at errors):\n"
    "{reference}\n\n"
)
REVISION_PROMPT = (
    "Request:\n{instruction}{input_block}\n\nPrevious response:\n{answer}\n\n"
    "Feedback on it:\n{feedback}\n\n"
    "Write an improved response that fixes what the feedback points out. Reply with the "
    "response only, no preamble."
)


@dataclass
class _State:
    item: dict
    outputs: list[dict]
    done: bool = False
    truncated: bool = False
    missing_verdicts: int = 0
    errors: int = 0


def _input_block(item: dict) -> str:
    text = item.get("input") or ""
    return f"\n\nInput:\n{text}" if text.strip() else ""


def generate_feedback_data(
    teacher: ChatModel,
    items: Sequence[dict],
    params: SamplingParams,
    *,
    max_iterations: int = 5,
    use_reference: bool = False,
    chooser: Chooser | None = None,
) -> list[dict]:
    """Return one record per item (``{id, instruction, input[, reference]}``), in order.

    Free-text mode (``chooser`` None, the paper's): the critique must state the score and the
    verdict; one without a verdict ends that item's loop (counted as ``missing_verdicts``).
    Constrained mode: the teacher writes a critique only, then ``chooser`` makes it continue
    with ``Score: N/10`` and one of the two verdicts (every feedback has one). A backend
    error on the answer leaves ``output`` empty and is counted in ``errors``.
    """
    if not 1 <= max_iterations <= 5:
        raise ValueError(f"max_iterations must be in 1..5 (the paper's cap), got {max_iterations}")
    states = [_State(item=dict(it), outputs=[]) for it in items]
    for s in states:
        if not str(s.item.get("instruction", "")).strip():
            raise ValueError(f"item {s.item.get('id')!r} has an empty instruction")
    answers = teacher.chat(
        [
            [
                {
                    "role": "user",
                    "content": ANSWER_PROMPT.format(
                        instruction=s.item["instruction"], input_block=_input_block(s.item)
                    ),
                }
            ]
            for s in states
        ],
        params,
    )
    for s, c in zip(states, answers, strict=True):
        if c.finish_reason == "error" or not c.text.strip():
            s.errors += 1
            s.done = True
        s.outputs.append({"output": c.text, "feedback": None})

    for _ in range(max_iterations):
        live = [s for s in states if not s.done]
        if not live:
            break
        convs: list[list[Message]] = [
            [{"role": "user", "content": _feedback_prompt(s, use_reference, chooser is not None)}]
            for s in live
        ]
        feedback = teacher.chat(convs, params)
        if chooser is not None:
            feedback = _constrained_feedback(chooser, convs, feedback)
        revise = []
        for s, c in zip(live, feedback, strict=True):
            s.outputs[-1]["feedback"] = c.text
            s.outputs[-1]["score"] = feedback_score(c.text)
            v = verdict(c.text) if c.finish_reason != "error" else None
            if c.finish_reason == "error":
                s.errors += 1
            if v is None:
                s.missing_verdicts += 1
                s.done = True
            elif v is False:
                s.done = True
            else:
                revise.append(s)
        if not revise:
            continue
        revisions = teacher.chat(
            [
                [
                    {
                        "role": "user",
                        "content": REVISION_PROMPT.format(
                            instruction=s.item["instruction"],
                            input_block=_input_block(s.item),
                            answer=s.outputs[-1]["output"],
                            feedback=s.outputs[-1]["feedback"],
                        ),
                    }
                ]
                for s in revise
            ],
            params,
        )
        for s, c in zip(revise, revisions, strict=True):
            if c.finish_reason == "error" or not c.text.strip():
                s.errors += 1
                s.done = True
                continue
            s.outputs.append({"output": c.text, "feedback": None})
    for s in states:
        # Still revising after the last critique, or a revision nobody critiqued: truncated.
        last = s.outputs[-1]
        s.truncated = not s.done or (last["feedback"] is None and len(s.outputs) > 1)
    return [_record(s) for s in states]


def _constrained_feedback(chooser: Chooser, convs: list, critiques: list) -> list:
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


def _feedback_prompt(s: _State, use_reference: bool, constrained: bool = False) -> str:
    ref = s.item.get("reference")
    return (CRITIQUE_PROMPT if constrained else FEEDBACK_PROMPT).format(
        instruction=s.item["instruction"],
        input_block=_input_block(s.item),
        answer=s.outputs[-1]["output"],
        hint=HINT.format(reference=ref) if use_reference and ref else "",
    )


def _record(s: _State) -> dict:
    outputs = s.outputs
    if outputs[-1]["feedback"] is None and len(outputs) > 1:
        outputs = outputs[:-1]  # an uncritiqued last revision cannot enter the chain
    return {
        "id": s.item["id"],
        "instruction": s.item["instruction"],
        "input": s.item.get("input") or "",
        "output": outputs[-1]["output"],
        "outputs": outputs,
        "iteration": sum(1 for o in outputs if o["feedback"] is not None),
        "iteration_truncated": s.truncated,
        "missing_verdicts": s.missing_verdicts,
        "errors": s.errors,
    }
