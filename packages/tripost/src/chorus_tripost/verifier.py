"""Verifiers: read a numbered rationale, check each step in order, report the FIRST error.

Feedback format (ours, after the paper's description): the correct steps, then which part of
the first wrong step is wrong and why::

    Step (1) to step (2) are correct. In step (3) the part "(21 * -9) = -180" is incorrect.
    This is because (21 * -9) = -189.

and, when everything is right, ``Step (1) to step (4) are correct. The final response is also
correct.`` A rationale that cannot be read gets a verdict that says so; it is never right.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from chorus_shared.grading import safe_eval_arithmetic
from chorus_shared.models.base import ChatModel, Message, SamplingParams
from chorus_tripost import tasks
from chorus_tripost.arithmetic import LETTERS

__all__ = [
    "AnswerCheckedVerifier",
    "Failure",
    "LLMVerifier",
    "Step",
    "Verdict",
    "diff_feedback",
    "parse_rationale",
    "verify",
    "verify_arithmetic",
    "verify_word_sort",
]

ALL_CORRECT = "The final response is also correct."
_STEP = re.compile(r"^\((\d+(?:\.\d+)*)\)\s*(.*)$")
_FINAL = re.compile(r"^\(Final response\)\s*(.*)$")


@dataclass(frozen=True)
class Step:
    """One numbered step: its label (``"3"``, ``"6.2"``) and its text."""

    label: str
    text: str


@dataclass(frozen=True)
class Failure:
    """A helper reply that failed (backend error): the item becomes an errored record."""

    reason: str


@dataclass
class Verdict:
    """The verifier's judgement of one rationale.

    ``error_index`` is the 0-based index of the first wrong step (``len(steps)`` for the final
    response; None when all is correct), ``part`` the wrong part, ``feedback`` the full text.
    """

    correct: bool
    feedback: str
    error_index: int | None = None
    part: str | None = None
    reason: str | None = None
    parsed: bool = True
    error: str | None = None  # the LLM verifier's reply failed: the item is errored

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def parse_rationale(text: str) -> tuple[list[Step], str | None]:
    """Return the numbered steps and the final-response text (None when missing)."""
    text = text.strip()
    if text.startswith("Answer:"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
    steps: list[Step] = []
    final = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if m := _FINAL.match(line):
            final = m.group(1).strip()
            break  # anything after the final response is not part of the answer
        if m := _STEP.match(line):
            steps.append(Step(m.group(1), m.group(2).strip()))
        elif steps:
            return steps, None  # an unnumbered line in the middle: unreadable from here on
    return steps, final


def _prefix(steps: list[Step], index: int) -> str:
    if index == 0:
        return ""
    if index == 1:
        return f"Step ({steps[0].label}) is correct. "
    return f"Step ({steps[0].label}) to step ({steps[index - 1].label}) are correct. "


def _error(steps: list[Step], index: int, part: str, reason: str) -> Verdict:
    where = "the final response" if index >= len(steps) else f"step ({steps[index].label})"
    lead = "In"
    feedback = f'{_prefix(steps, index)}{lead} {where} the part "{part}" is incorrect. {reason}'
    return Verdict(False, feedback, error_index=index, part=part, reason=reason)


def _ground_truth_group(pattern: str, text: str) -> str:
    """Return group 1 of ``pattern`` in ``text``, a ground-truth step the tasks module wrote
    (so it always matches; a mismatch is a bug there, reported as such)."""
    m = re.search(pattern, text)
    if m is None:
        raise ValueError(f"ground-truth step {text!r} does not match {pattern!r}")
    return m.group(1)


def _unreadable(steps: list[Step], index: int, why: str) -> Verdict:
    where = "the final response" if index >= len(steps) else f"step ({steps[index].label})"
    if index > len(steps):
        where = f"step ({index + 1})"
    feedback = (
        f"{_prefix(steps, min(index, len(steps)))}{where.capitalize()} could not be read: {why}"
    )
    return Verdict(False, feedback, error_index=index, reason=why, parsed=False)


def _all_correct(steps: list[Step]) -> Verdict:
    return Verdict(True, f"{_prefix(steps, len(steps))}{ALL_CORRECT}".strip())


# ----------------------------------------------------------------------------- arithmetic
def _value(expr: str) -> int | float:
    return safe_eval_arithmetic(expr)


def _check_chain(steps: list[Step], i: int, chain: list[str]) -> Verdict | None:
    """Check ``e0 = e1 = ... = v``: every neighbouring pair must have equal values."""
    for left, right in itertools.pairwise(chain):
        try:
            lv, rv = _value(left), _value(right)
        except ValueError as err:
            return _unreadable(steps, i, f"{err}.")
        if lv != rv:
            return _error(
                steps,
                i,
                f"{left} = {right}",
                f"This is because {left} = {_fmt(lv)}, not {_fmt(rv)}.",
            )
    return None


def _fmt(v: int | float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def verify_arithmetic(question: str, rationale: str) -> Verdict:
    """Return the verdict on an arithmetic rationale for ``question``."""
    template, groups = tasks.decompose(question)
    names = LETTERS[: len(groups)]
    expected_steps, answer = tasks.arithmetic_rationale(question)
    steps, final = parse_rationale(rationale)
    if not steps:
        return _unreadable(steps, 0, "no numbered steps were found.")
    # Step 1: the decomposition into named groups.
    m = re.match(r'This equation can be written as "(.*?)", where (.*)\.$', steps[0].text)
    if not m:
        return _unreadable(steps, 0, 'expected: This equation can be written as "...", where ...')
    if m.group(1).replace(" ", "") != template.replace(" ", ""):
        return _error(
            steps, 0, f'"{m.group(1)}"', f'This is because the equation has the shape "{template}".'
        )
    stated = dict(re.findall(r"([A-Z]) = (\([^()]*\))", m.group(2)))
    for n, g in zip(names, groups, strict=True):
        if n not in stated:
            return _error(steps, 0, m.group(2), f"This is because {n} = {g} is missing.")
        if stated[n].replace(" ", "") != g.replace(" ", ""):
            return _error(steps, 0, f"{n} = {stated[n]}", f"This is because {n} should be {g}.")
    # Steps 2..: one calculation per group, then the final equation.
    for k, n in enumerate(names, start=1):
        if k >= len(steps):
            return _unreadable(steps, k, f"the calculation of {n} is missing.")
        m = re.match(r"Let's calculate ([A-Z]) = (.*)\.$", steps[k].text)
        if not m:
            return _unreadable(steps, k, f"expected: Let's calculate {n} = ...")
        if m.group(1) != n:
            return _error(
                steps, k, f"Let's calculate {m.group(1)}", f"This is because {n} comes next."
            )
        chain = [c.strip() for c in m.group(2).split(" = ")]
        if chain[0].replace(" ", "") != groups[k - 1].replace(" ", ""):
            return _error(steps, k, f"{n} = {chain[0]}", f"This is because {n} = {groups[k - 1]}.")
        if bad := _check_chain(steps, k, chain):
            return bad
    last = len(names) + 1
    if template != "A":
        if last >= len(steps):
            return _unreadable(steps, last, "the final equation is missing.")
        m = re.match(r"Then, the final equation is (.*)\.$", steps[last].text)
        if not m:
            return _unreadable(steps, last, "expected: Then, the final equation is ...")
        chain = [c.strip() for c in m.group(1).split(" = ")]
        if len(chain) < 2 or chain[0].replace(" ", "") != template.replace(" ", ""):
            return _error(steps, last, chain[0], f'This is because the equation is "{template}".')
        values = {
            n: int(_ground_truth_group(r"= (-?\d+)\.$", s))
            for n, s in zip(names, expected_steps[1:], strict=False)
        }
        substituted = re.sub(r"[A-Z]", lambda mm: str(values[mm.group(0)]), template)
        if chain[1].replace(" ", "") != substituted.replace(" ", ""):
            return _error(
                steps,
                last,
                f"{template} = {chain[1]}",
                f"This is because substituting the values gives {substituted}.",
            )
        if bad := _check_chain(steps, last, chain[1:]):
            return bad
        last += 1
    if len(steps) > last:
        return _unreadable(steps, last, "there are more steps than the equation needs.")
    if final is None:
        return _unreadable(steps, len(steps), "the final response is missing.")
    m = re.search(r"answer is\s*(-?\d+)", final)
    if not m:
        return _unreadable(steps, len(steps), "the final response names no number.")
    if int(m.group(1)) != answer:
        return _error(steps, len(steps), final, f"This is because the computation gives {answer}.")
    return _all_correct(steps)


# ----------------------------------------------------------------------------- word sorting
_KINDS = ("The first letter:", "We now have:", "Now sort this subpart", "Hence, we have")
_PAIR = re.compile(r'"([^"]*)"="([^"]*)" \((-?\d+)\)')


def _letters_error(steps: list[Step], i: int, got: str, want: str, which: str) -> Verdict:
    got_pairs = _PAIR.findall(got)
    want_pairs = _PAIR.findall(want)
    for g, w in zip(got_pairs, want_pairs, strict=False):
        if g == w:
            continue
        part = f'"{g[0]}"="{g[1]}" ({g[2]})'
        if g[0] != w[0]:
            return _error(steps, i, part, f'This is because the next word is "{w[0]}".')
        if g[1] != w[1]:
            return _error(
                steps, i, part, f'This is because the {which} letter of "{w[0]}" is "{w[1]}".'
            )
        return _error(
            steps, i, part, f'This is because "{w[1]}" is letter number {w[2]} of the alphabet.'
        )
    if len(got_pairs) < len(want_pairs):
        w = want_pairs[len(got_pairs)]
        return _error(steps, i, got, f'This is because the word "{w[0]}" is missing.')
    return _error(steps, i, got, f"This is because it should read: {want}")


def verify_word_sort(question: str, rationale: str) -> Verdict:
    """Return the verdict on a word-sorting rationale for ``question``."""
    words = tasks.word_sort_words(question)
    expected, ordered = tasks.word_sort_rationale(words)
    steps, final = parse_rationale(rationale)
    if not steps:
        return _unreadable(steps, 0, "no numbered steps were found.")
    # Labels are not compared: the original data numbers some nested steps inconsistently.
    for i, (_, want) in enumerate(expected):
        if i >= len(steps):
            return _unreadable(steps, i, "the rationale stops before the words are sorted.")
        got = steps[i].text
        if got == want:
            continue
        if not got.startswith(_KINDS):
            return _unreadable(
                steps, i, "expected a step starting with one of: " + ", ".join(_KINDS)
            )
        kind = next(k for k in _KINDS if want.startswith(k))
        if not got.startswith(kind):
            return _error(steps, i, got, f"This is because the next step is: {want}")
        if want.startswith("The first letter:"):
            return _letters_error(steps, i, got, want, "first")
        if want.startswith("Now sort this subpart") and got.startswith("Now sort this subpart"):
            which = _ground_truth_group(r"their (\w+) letters", want)
            if got.split("letters:")[0] != want.split("letters:")[0]:
                part = got.split(" by looking")[0]
                return _error(
                    steps,
                    i,
                    part,
                    "This is because the next tied group is "
                    + want.split(" by looking")[0].removeprefix("Now sort this subpart ")
                    + ".",
                )
            return _letters_error(steps, i, got, want, which)
        if want.startswith("We now have:"):
            return _error(
                steps,
                i,
                got,
                f"This is because the letters imply: {want.removeprefix('We now have: ')}",
            )
        if want.startswith("Hence"):
            return _error(
                steps,
                i,
                got,
                f"This is because the order is {want.removeprefix('Hence, we have ')}",
            )
        return _error(steps, i, got, f"This is because the next step is: {want}")
    if len(steps) > len(expected):
        return _unreadable(steps, len(expected), "there are more steps than the sort needs.")
    if final is None:
        return _unreadable(steps, len(steps), "the final response is missing.")
    m = re.search(r"answer is:?\s*(.*?)\.?$", final)
    got_words = m.group(1).split() if m else []
    if got_words != ordered:
        return _error(
            steps,
            len(steps),
            final,
            "This is because the sorted words are: " + " ".join(ordered) + ".",
        )
    return _all_correct(steps)


def verify(item: dict, rationale: str) -> Verdict:
    """Return the scripted verdict on ``rationale`` for a task item; never raises on bad text.

    Only the scripted tasks have one; a multiple-choice task is a ValueError naming the fix.
    """
    if item["task"] not in tasks.SCRIPTED_TASKS:
        raise ValueError(
            f"task {item['task']!r} has no scripted verifier (the paper uses an LLM): set "
            "verifier_use_scripted: false and give verifier_model / improver_model specs"
        )
    check = verify_arithmetic if item["task"] == "multistep_arithmetic" else verify_word_sort
    try:
        return check(item["question"], rationale)
    except (ValueError, IndexError, KeyError, AttributeError) as err:
        return Verdict(
            False, f"The rationale could not be read: {err}", reason=str(err), parsed=False
        )


# ----------------------------------------------------------------------------- LLM verifier
VERIFIER_PROMPT = (
    "You check step-by-step solutions. Read the steps in order and report only the FIRST "
    "wrong step: say which steps are correct, quote the wrong part and say why it is wrong. "
    'If every step is right, end with "{all_correct}"'
)


class LLMVerifier:
    """Feedback in the scripted format from any ChatModel, few-shot, batched."""

    def __init__(
        self,
        model: ChatModel,
        demos: Sequence[tuple[dict, str, str]] = (),
        max_new_tokens: int = 256,
    ):
        self.model = model
        self.demos = list(demos)
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0)

    def _conversation(self, item: dict, rationale: str) -> list[Message]:
        msgs: list[Message] = [
            {"role": "system", "content": VERIFIER_PROMPT.format(all_correct=ALL_CORRECT)}
        ]
        for demo_item, demo_rationale, demo_feedback in self.demos:
            msgs.append({"role": "user", "content": _show(demo_item, demo_rationale)})
            msgs.append({"role": "assistant", "content": demo_feedback})
        msgs.append({"role": "user", "content": _show(item, rationale)})
        return msgs

    def __call__(self, items: list[dict], rationales: list[str]) -> list[Verdict]:
        """Return one verdict per (item, rationale), from one batched ``chat`` call."""
        conversations = [self._conversation(it, r) for it, r in zip(items, rationales, strict=True)]
        out = []
        for c in self.model.chat(conversations, self.params):
            text = c.text.strip()
            if c.error or c.finish_reason == "error":
                reason = c.error or "the verifier's backend reported an error"
                out.append(Verdict(False, "", parsed=False, error=f"verifier: {reason}"))
            elif not text:
                out.append(Verdict(False, "The verifier gave no feedback.", parsed=False))
            else:
                out.append(Verdict(ALL_CORRECT.lower() in text.lower(), text))
        return out


def _show(item: dict, rationale: str) -> str:
    question = item["question"].strip().removeprefix("Q:").strip()
    return f"Q: {question}\nAnswer: Let's think step by step.\n{rationale.strip()}"


def _span(wrong: str, right: str) -> tuple[str, str]:
    """Return the differing words of two texts: (the wrong part, what it should be)."""
    p = 0
    while p < min(len(wrong), len(right)) and wrong[p] == right[p]:
        p += 1
    q = 0
    while q < min(len(wrong), len(right)) - p and wrong[-1 - q] == right[-1 - q]:
        q += 1
    start = wrong.rfind(" ", 0, p) + 1  # widen to whole words
    end_w = len(wrong) - q
    nxt = wrong.find(" ", end_w)
    end_w = len(wrong) if nxt < 0 else nxt
    end_r = len(right) - (len(wrong) - end_w)
    return wrong[start:end_w], right[start:end_r]


def diff_feedback(wrong: str, right: str) -> Verdict:
    """Return the verdict on ``wrong`` in the scripted feedback format, against the known
    ``right`` rationale it was derived from (few-shot demonstrations of the LLM verifier for
    the multiple-choice tasks, which have no scripted verifier): the first step that differs,
    the differing words, and what they should be."""
    wsteps, wfinal = parse_rationale(wrong)
    rsteps, rfinal = parse_rationale(right)
    for i, (w, r) in enumerate(zip(wsteps, rsteps, strict=False)):
        if w.text != r.text:
            part, fix = _span(w.text, r.text)
            return _error(wsteps, i, part, f'This is because it should be "{fix}".')
    if len(wsteps) < len(rsteps):
        return _unreadable(wsteps, len(wsteps), "the rationale stops before the answer.")
    if len(wsteps) > len(rsteps):
        return _unreadable(wsteps, len(rsteps), "there are more steps than the answer needs.")
    if wfinal is None:
        return _unreadable(wsteps, len(wsteps), "the final response is missing.")
    if wfinal != rfinal:
        part, fix = _span(wfinal, rfinal or "")
        return _error(wsteps, len(wsteps), part, f'This is because it should be "{fix}".')
    return _all_correct(wsteps)


class AnswerCheckedVerifier:
    """An LLM verifier whose "all correct" counts only when the final answer is also the gold
    one (collection only: the gold answer is known for training items). A rationale with a
    wrong or unreadable answer that the LLM accepted gets feedback on its final response, so
    the improver tries again (or the trajectory is dropped); ``overruled`` counts them."""

    def __init__(self, inner: LLMVerifier) -> None:
        self.inner = inner
        self.overruled = 0

    def __call__(self, items: list[dict], rationales: list[str]) -> list[Verdict]:
        """Return one verdict per (item, rationale), from one batched call of the LLM."""
        out = []
        for item, text, v in zip(items, rationales, self.inner(items, rationales), strict=True):
            got = tasks.answer_of(item, text)
            if v.correct and got != item["answer"]:
                self.overruled += 1
                steps, _ = parse_rationale(text)
                if got is None:
                    v = _unreadable(steps, len(steps), "the final response names no option.")
                else:
                    v = _error(
                        steps, len(steps), f"({got})",
                        f"This is because ({got}) does not answer the question.",
                    )  # fmt: skip
            out.append(v)
        return out
