"""Test-time self-improvement: how a trained model (or a prompted LLM) answers a test item.

A TriPosT-trained model writes an attempt, then ``Feedback: ...`` on it and, when it finds an
error, ``Updated Answer: ...``. As the original's evaluation wrapper, after each generation
call the next action is decided from what the model wrote:

* the last section is feedback saying all is correct -> done;
* the call added nothing new (its last line is the previous call's) -> done;
* the model stopped (end of text) after a negative feedback -> re-prompt with the last answer,
  that feedback and ``Updated Answer:``; after a finished answer -> re-prompt with that answer
  and ``Feedback:``;
* otherwise (cut at the token budget, or stopped mid-answer) -> continue the same text, at
  most 3 calls in a row;

up to 10 calls per item. "Without self-improvement" grades the first attempt, "with" the last
answer (the original's final answer after self-improvement).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from chorus_shared.engine import first_error
from chorus_shared.models.base import ChatModel, Message, SamplingParams
from chorus_tripost import loop, tasks
from chorus_tripost.verifier import ALL_CORRECT

__all__ = [
    "MAX_CALLS",
    "Attempts",
    "fewshot_demos",
    "fewshot_generate",
    "parse_trajectory",
    "self_improve_generate",
]

MAX_CALLS = 10  # the original's num_attempts
MAX_CONTINUE = 3  # the original's num_continue_generation
_MARKER = re.compile(r"(\n?Feedback:|\n?Updated Answer:(?: Let's think step by step\.)?)")


@dataclass
class Attempts:
    """One item's answers (first attempt, then updates), the feedback sections, the finish
    reason of the last call, the number of calls, and the error of a failed call."""

    answers: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    finish_reason: str = "stop"
    calls: int = 0
    error: str | None = None


def parse_trajectory(text: str) -> tuple[list[str], list[str]]:
    """Split a generation into ``(answers, feedback)``: the first answer, then each
    ``Feedback:`` section and ``Updated Answer:`` section in order (arithmetic's
    order-of-operations sentence after a header is not part of an answer)."""
    text = text.replace(tasks.ARITHMETIC_INFO, "")
    chunks = _MARKER.split(text)
    answers = [chunks[0].strip()]
    feedback: list[str] = []
    for marker, chunk in zip(chunks[1::2], chunks[2::2], strict=True):
        (feedback if "Feedback" in marker else answers).append(chunk.strip())
    return answers, feedback


def _cut_new_question(text: str) -> str:
    # A model that goes on after its trajectory starts a new question: not part of the answer.
    return re.split(r"\n\s*Q:", text, maxsplit=1)[0]


@dataclass
class _State:
    item: dict
    prompt: list[str]
    base_answers: list[str] = field(default_factory=list)
    base_feedback: list[str] = field(default_factory=list)
    last_line: str = ""
    continues: int = 0
    result: Attempts = field(default_factory=Attempts)


def self_improve_generate(
    model: loop.RawModel,
    items: list[dict],
    *,
    max_new_tokens: int,
    max_calls: int = MAX_CALLS,
    seed: int | None = None,
) -> list[Attempts]:
    """Return one :class:`Attempts` per item; every round is one batched ``complete`` call
    over the items still open. ``max_calls`` = 1 is the model's plain answer (no re-prompt)."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)
    states = [_State(it, loop.attempt_prompt(it)) for it in items]
    open_ = list(states)
    while open_:
        outs = model.complete([st.prompt for st in open_], params)
        still = []
        for st, out in zip(open_, outs, strict=True):
            res = st.result
            res.calls += 1
            res.finish_reason = out.finish_reason
            error = first_error([out])
            if error is not None:
                res.error = error
                continue
            text = _cut_new_question(out.text)
            answers, feedback = parse_trajectory("".join(st.prompt[2:]) + text)
            res.answers = st.base_answers + answers
            res.feedback = st.base_feedback + feedback
            if _next(st, text, out.finish_reason, max_calls):
                still.append(st)
        open_ = still
    return [st.result for st in states]


def _next(st: _State, text: str, finish_reason: str, max_calls: int) -> bool:
    """Set up the state's next prompt; return False when the item is done."""
    res = st.result
    lines = [line for line in ("".join(st.prompt[2:]) + text).strip().splitlines() if line]
    last_line = lines[-1].strip() if lines else ""
    ends_in_feedback = len(res.feedback) == len(res.answers)
    if ends_in_feedback and ALL_CORRECT.lower() in res.feedback[-1].lower():
        return False
    if not text.strip() or last_line == st.last_line or res.calls >= max_calls:
        return False
    st.last_line = last_line
    question = st.prompt[0]
    task = st.item["task"]
    if finish_reason == "stop" and ends_in_feedback:
        st.base_answers, st.base_feedback = res.answers[:-1], res.feedback[:-1]
        st.prompt = [
            question,
            tasks.answer_header(task),
            res.answers[-1],
            f"{loop.FEEDBACK} {res.feedback[-1]}",
            tasks.answer_header(task, updated=True),
        ]
        # The update is the next answer; the turn parses as (answer, feedback, update).
        st.continues = 0
        return True
    if finish_reason == "stop" and "(Final response)" in res.answers[-1]:
        st.base_answers, st.base_feedback = res.answers[:-1], res.feedback[: len(res.answers) - 1]
        st.prompt = [question, tasks.answer_header(task), res.answers[-1], loop.FEEDBACK]
        st.continues = 0
        return True
    st.continues += 1
    if st.continues >= MAX_CONTINUE:
        return False
    st.prompt = [*st.prompt, text]
    return True


# ----------------------------------------------------------------------------- few-shot
def fewshot_demos(train_items: list[dict], k: int, *, seed: int = 0) -> list[dict]:
    """Return ``k`` training items (with ground-truth rationales) to show as demonstrations."""
    if k > len(train_items):
        raise ValueError(f"asked for {k} demonstrations, only {len(train_items)} training items")
    return random.Random(seed).sample(train_items, k)


FEWSHOT_SYSTEM = (
    "Solve the problem step by step in the exact numbered format of the examples, and end "
    'with the line "(Final response) So the answer is ...".'
)


def _fewshot_conversation(item: dict, demos: list[dict]) -> list[Message]:
    msgs: list[Message] = [{"role": "system", "content": FEWSHOT_SYSTEM}]
    for d in demos:
        msgs.append({"role": "user", "content": "".join(loop.attempt_prompt(d)).strip()})
        msgs.append({"role": "assistant", "content": d["rationale"]})
    msgs.append({"role": "user", "content": "".join(loop.attempt_prompt(item)).strip()})
    return msgs


def _drop_header(text: str) -> str:
    text = text.strip().replace(tasks.ARITHMETIC_INFO, "")
    marker = "Let's think step by step."
    return text.split(marker, 1)[1].strip() if marker in text[:80] else text


def fewshot_generate(
    model: ChatModel,
    items: list[dict],
    demos: list[dict],
    *,
    max_new_tokens: int,
    rounds: int = 0,
    seed: int = 0,
) -> list[Attempts]:
    """Return one :class:`Attempts` per item from few-shot prompting of any ChatModel; with
    ``rounds`` > 0 the same model verifies and improves its answer (its demonstrations:
    planted errors on the demo items with their feedback and repairs)."""
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)
    outs = model.chat([_fewshot_conversation(it, demos) for it in items], params)
    states = []
    for o in outs:
        first = parse_trajectory(_drop_header(o.text))[0][0]
        states.append(Attempts([first], [], o.finish_reason, calls=1, error=first_error([o])))
    if rounds <= 0:
        return states
    from chorus_tripost.helpers import llm_helpers

    # The model is its own verifier and improver (no gold answer check at test time).
    verifier, improver = llm_helpers(
        model, model, demos, seed=seed, check_answers=False, max_new_tokens=max_new_tokens
    )
    open_ = [i for i, st in enumerate(states) if st.error is None]
    for _ in range(rounds):
        if not open_:
            break
        vs = verifier([items[i] for i in open_], [states[i].answers[-1] for i in open_])
        wrong = []
        for i, v in zip(open_, vs, strict=True):
            states[i].calls += 1
            if v.error:
                states[i].error = v.error
                continue
            states[i].feedback.append(v.feedback)
            if not v.correct:
                wrong.append((i, v))
        if not wrong:
            break
        texts = improver(
            [items[i] for i, _ in wrong],
            [states[i].answers[-1] for i, _ in wrong],
            [v for _, v in wrong],
        )
        open_ = []
        for (i, _), text in zip(wrong, texts, strict=True):
            states[i].calls += 1
            if isinstance(text, str):
                states[i].answers.append(_drop_header(text))
                open_.append(i)
            else:
                states[i].error = text.reason
    return states
