"""Improvers: rewrite an attempt from its correct prefix, given the verifier's feedback."""

from __future__ import annotations

from collections.abc import Sequence

from chorus_shared.models.base import ChatModel, Message, SamplingParams
from chorus_tripost import tasks
from chorus_tripost.verifier import Verdict, _show, parse_rationale

__all__ = ["LLMImprover", "ground_truth", "improve"]


def ground_truth(item: dict) -> tuple[list[tuple[str, str]], str]:
    """Return the ground-truth ``(label, text)`` steps and final response of an item (the
    scripted tasks only; a multiple-choice task is a ValueError: its improver is an LLM)."""
    if item["task"] not in tasks.SCRIPTED_TASKS:
        raise ValueError(
            f"task {item['task']!r} has no scripted improver (the paper uses an LLM): set "
            "verifier_use_scripted: false and give verifier_model / improver_model specs"
        )
    if item["task"] == "multistep_arithmetic":
        texts, answer = tasks.arithmetic_rationale(item["question"])
        return [(str(i), s) for i, s in enumerate(texts, 1)], f"So the answer is {answer}."
    steps, ordered = tasks.word_sort_rationale(tasks.word_sort_words(item["question"]))
    return steps, "So the answer is: " + " ".join(ordered) + "."


def improve(item: dict, attempt: str, verdict: Verdict) -> str:
    """Return the scripted improvement: the attempt's steps before the first error, then the
    correct steps from there on (the first wrong step is redone, later ones rewritten)."""
    if verdict.correct:
        return attempt
    steps, _ = parse_rationale(attempt)
    truth, final = ground_truth(item)
    keep = verdict.error_index if verdict.error_index is not None else 0
    keep = min(keep, len(steps), len(truth))
    # The kept prefix was judged correct, so it matches the truth step for step.
    lines = [f"({s.label}) {s.text}" for s in steps[:keep]]
    lines += [f"({label}) {text}" for label, text in truth[keep:]]
    return "\n".join([*lines, f"(Final response) {final}"])


IMPROVER_PROMPT = (
    "You repair step-by-step solutions. Given a solution and feedback on its first wrong "
    "step, keep the correct steps, fix the wrong one and finish the solution. Write only the "
    'numbered steps and the line "(Final response) So the answer is ...".'
)


class LLMImprover:
    """Improvements from any ChatModel, few-shot, batched."""

    def __init__(
        self,
        model: ChatModel,
        demos: Sequence[tuple[dict, str, str, str]] = (),
        max_new_tokens: int = 512,
    ):
        self.model = model
        self.demos = list(demos)
        # A small helper continues past its answer with its own "Feedback:" (seen with the
        # embedded model): stop there, and cut it where a backend ignores stop strings.
        self.params = SamplingParams(
            max_new_tokens=max_new_tokens, temperature=0.0, stop=("\nFeedback:",)
        )

    def _conversation(self, item: dict, attempt: str, feedback: str) -> list[Message]:
        msgs: list[Message] = [{"role": "system", "content": IMPROVER_PROMPT}]
        for d_item, d_attempt, d_feedback, d_improved in self.demos:
            msgs.append(
                {"role": "user", "content": f"{_show(d_item, d_attempt)}\nFeedback: {d_feedback}"}
            )
            msgs.append({"role": "assistant", "content": d_improved})
        msgs.append({"role": "user", "content": f"{_show(item, attempt)}\nFeedback: {feedback}"})
        return msgs

    def __call__(
        self, items: list[dict], attempts: list[str], verdicts: list[Verdict]
    ) -> list[str]:
        """Return one improved rationale per attempt (empty text on a backend error)."""
        conversations = [
            self._conversation(it, a, v.feedback)
            for it, a, v in zip(items, attempts, verdicts, strict=True)
        ]
        return [
            "" if c.finish_reason == "error" else c.text.split("\nFeedback:", 1)[0].strip()
            for c in self.model.chat(conversations, self.params)
        ]
