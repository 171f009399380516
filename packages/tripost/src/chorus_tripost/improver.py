"""Improvers: rewrite an attempt from its correct prefix, given the verifier's feedback."""

from __future__ import annotations

from collections.abc import Sequence

from chorus_shared.models.base import ChatModel, Message, SamplingParams
from chorus_tripost import tasks
from chorus_tripost.verifier import Failure, Verdict, _show, parse_rationale

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
        *,
        temperature: float = 0.7,
        seed: int | None = 0,
    ):
        self.model = model
        self.demos = list(demos)
        # A small helper continues past its answer with its own "Feedback:" (seen with the
        # embedded model): stop there, and cut it where a backend ignores stop strings.
        # The original samples its improver (Codex) at T = 0.7.
        self.params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            stop=("\nFeedback:",),
            seed=seed,
        )

    def _conversation(
        self, item: dict, attempt: str, feedback: str, prefix: str = ""
    ) -> list[Message]:
        msgs: list[Message] = [{"role": "system", "content": IMPROVER_PROMPT}]
        for d_item, d_attempt, d_feedback, d_improved in self.demos:
            msgs.append(
                {"role": "user", "content": f"{_show(d_item, d_attempt)}\nFeedback: {d_feedback}"}
            )
            msgs.append({"role": "assistant", "content": d_improved})
        msgs.append({"role": "user", "content": f"{_show(item, attempt)}\nFeedback: {feedback}"})
        if prefix:
            # Start the reply with the kept steps, so the LLM writes from the first error on.
            msgs[-1]["content"] += f"\nKeep these steps unchanged and continue:\n{prefix}"
        return msgs

    def __call__(
        self, items: list[dict], attempts: list[str], verdicts: list[Verdict]
    ) -> list[str | Failure]:
        """Return one improved rationale per attempt: the kept correct prefix of the attempt
        (the steps before the first error) followed by the LLM's continuation, as the
        original's improver; a failed reply is a :class:`Failure`."""
        prefixes = [_correct_prefix(a, v) for a, v in zip(attempts, verdicts, strict=True)]
        conversations = [
            self._conversation(it, a, v.feedback, p)
            for it, a, v, p in zip(items, attempts, verdicts, prefixes, strict=True)
        ]
        out: list[str | Failure] = []
        for c, prefix in zip(self.model.chat(conversations, self.params), prefixes, strict=True):
            if c.error or c.finish_reason == "error":
                out.append(Failure(f"improver: {c.error or 'the backend reported an error'}"))
            else:
                text = _drop_repeated_prefix(c.text.split("\nFeedback:", 1)[0].strip(), prefix)
                out.append((prefix + "\n" + text).strip() if prefix else text)
        return out


def _correct_prefix(attempt: str, verdict: Verdict) -> str:
    """Return the attempt's steps before the first wrong one (all but the final response when
    only the final response is wrong), as the original's ``_get_prev_partial_answer``."""
    lines = [line for line in attempt.strip().splitlines() if line.strip()]
    if verdict.error_index is None:
        return ""
    return "\n".join(lines[: min(verdict.error_index, max(len(lines) - 1, 0))])


def _drop_repeated_prefix(text: str, prefix: str) -> str:
    # An LLM asked to continue often restates the kept steps: keep them once.
    if prefix and text.startswith(prefix):
        return text[len(prefix) :].strip()
    return text
