"""Feedback-and-revision data generation with any ChatModel teacher, batched across items.

Per instruction: answer -> critique (under 100 words, a 1-10 score, a verdict) -> revision
when the verdict asks for one -> critique again ... up to ``max_iterations`` critiques. Every
instruction still in the loop shares one ``chat`` call per step. Records follow the original
format: ``{instruction, input, output, outputs: [{output, feedback}, ...], iteration,
iteration_truncated}`` plus an ``id`` and the counts we report (missing verdicts, errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chorus_selfee.chain import feedback_score, verdict
from chorus_shared.models import ChatModel, SamplingParams

ANSWER_PROMPT = "{instruction}{input_block}"
FEEDBACK_PROMPT = (
    "Here is a request and a candidate response.\n\n"
    "Request:\n{instruction}{input_block}\n\nResponse:\n{answer}\n\n{hint}"
    "Critique the response in under 100 words: say what is wrong or missing. Then write "
    "'Score: N/10' with N from 1 to 10. End with exactly one line, either 'Revision is needed' "
    "or 'Revision is not needed'."
)
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
) -> list[dict]:
    """Return one record per item (``{id, instruction, input[, reference]}``), in order.

    A feedback without a verdict ends that item's loop (counted as ``missing_verdicts``); a
    backend error on the answer leaves ``output`` empty and is counted in ``errors``.
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
        feedback = teacher.chat(
            [[{"role": "user", "content": _feedback_prompt(s, use_reference)}] for s in live],
            params,
        )
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


def _feedback_prompt(s: _State, use_reference: bool) -> str:
    ref = s.item.get("reference")
    return FEEDBACK_PROMPT.format(
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
