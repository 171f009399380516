"""The data side of TriPosT's interactive loop, as the original's collection step does it.

attempts of the current model -> directly correct ones (right answer, consistent last step)
kept with the all-correct feedback -> otherwise the model's own feedback/update prefix is kept
up to the first feedback the verifier disagrees with, and the improver rewrites from there,
up to ``max_improvements`` times, until the verifier accepts (else the trajectory is dropped);
an update that does not make progress ends the trajectory, a feedback that does not move the
first error later keeps only the first turn -> trajectories are split into turns: (attempt,
feedback, update) improvement samples; the final (attempt, all-correct feedback) turn and the
directly-correct attempts are non-improvement samples -> per sampling round, de-duplicated,
non-improvement samples rebalanced to ``ceil(improvement / improve_data_ratio)`` -> gold
samples (ground-truth rationale + all-correct feedback), ``min(#non-improvement, #gold)`` ->
weighted training records in chorus_shared.training's segment format.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chorus_shared.models.base import Completion, SamplingParams
from chorus_tripost import tasks
from chorus_tripost import verifier as verifier_mod
from chorus_tripost.improver import improve as scripted_improve
from chorus_tripost.verifier import ALL_CORRECT, Failure, Verdict, parse_rationale

__all__ = [
    "FEEDBACK",
    "Failure",
    "Sample",
    "Trajectory",
    "all_correct_feedback",
    "attempt_prompt",
    "build_record",
    "gold_samples",
    "is_directly_correct",
    "plant_error",
    "rebalance",
    "repair",
    "trajectory_samples",
]

FEEDBACK = "\nFeedback:"


Verifier = Callable[[list[dict], list[str]], list[Verdict]]
Improver = Callable[[list[dict], list[str], list[Verdict]], "list[str | Failure]"]


def scripted_verifier(items: list[dict], rationales: list[str]) -> list[Verdict]:
    """The scripted verifier over a batch; returns one verdict per rationale."""
    return [verifier_mod.verify(it, r) for it, r in zip(items, rationales, strict=True)]


def scripted_improver(
    items: list[dict], attempts: list[str], verdicts: list[Verdict]
) -> list[str | Failure]:
    """The scripted improver over a batch; returns one improved rationale per attempt."""
    return [scripted_improve(i, a, v) for i, a, v in zip(items, attempts, verdicts, strict=True)]


def question_text(item: dict) -> str:
    """Return ``Q: <question>`` (arithmetic ends with ``=``, as the original's texts)."""
    question = item["question"].strip().removeprefix("Q:").strip()
    if item.get("task") == "multistep_arithmetic" and not question.endswith("="):
        question += " ="
    return "Q: " + question


def attempt_prompt(item: dict) -> list[str]:
    """Return the raw-text prompt pieces of an attempt: the question, then the answer header.

    The same pieces open every training record (:func:`build_record`), so the prompt is a
    token prefix of the records (each piece is tokenized on its own, in both places).
    """
    return [question_text(item), tasks.answer_header(item["task"])]


class RawModel(Protocol):
    """What the trained model must offer: batched raw-text continuation (``RawTextModel``)."""

    def complete(self, prompts: list[list[str]], params: SamplingParams) -> list[Completion]:
        """Return one continuation per prompt."""
        ...


# ----------------------------------------------------------------------------- trajectories
def all_correct_feedback(rationale: str) -> str:
    """Return the all-correct feedback on ``rationale``: ``Step (1) to step (N) are correct.
    The final response is also correct.`` with N the label of its last numbered step."""
    steps, _ = parse_rationale(rationale)
    last = steps[-1].label if steps else "1"
    return f"Step (1) to step ({last}) are correct. {ALL_CORRECT}"


def is_directly_correct(item: dict, attempt: str) -> bool:
    """Return True when an attempt counts as right at once, as the original decides it: the
    right final answer and a consistent last step (arithmetic: the last numbered step ends in
    ``= <answer>.``; word sorting: no ``Hence`` step with an unresolved ``?``; multiple choice:
    the right option)."""
    got = tasks.answer_of(item, attempt)
    if not tasks.answers_match(item, got):
        return False
    steps, _ = parse_rationale(attempt)
    if not steps:
        return False
    if item["task"] == "multistep_arithmetic":
        last = steps[-1].text.rstrip()
        return bool(re.search(rf"=\s?{re.escape(str(got))}\.$", last))
    if item["task"] == "word_sort":
        return not any("Hence" in s.text and "?" in s.text for s in steps)
    return True


@dataclass
class Trajectory:
    """One item's trajectory: ``answers[k]`` with the feedback ``feedback[k]`` on it."""

    item: dict
    answers: list[str]
    feedback: list[str] = field(default_factory=list)
    accepted: bool = False
    bad_progress: bool = False
    error: str | None = None


def _error_key(feedback: str) -> tuple[str, str] | None:
    """Return (wrong step label, wrong part) named by a feedback, or None when all correct."""
    if ALL_CORRECT.lower() in feedback.lower():
        return None
    step = re.search(r"In (?:step \(([^)]+)\)|(the final response))", feedback)
    part = re.search(r'the part "(.*?)" is incorrect', feedback)
    label = "" if step is None else (step.group(1) or "final")
    return label, part.group(1) if part else ""


def _step_order(label: str) -> tuple[float, ...]:
    if label == "final":
        return (math.inf,)
    try:
        return tuple(float(x) for x in label.split("."))
    except ValueError:
        return (-1.0,)


def _legit_update(previous: str, update: str, verdict: Verdict) -> bool:
    """The original's check of an update: readable, not the previous answer, and the wrong
    step rewritten without the wrong part."""
    steps, final = parse_rationale(update)
    if not steps or final is None or update.strip() == previous.strip():
        return False
    if verdict.error_index is None or not verdict.part:
        return True
    old_steps, _ = parse_rationale(previous)
    if verdict.error_index >= len(old_steps) or verdict.error_index >= len(steps):
        return True  # the final response was wrong, or the update is shorter: judged next
    new_step = steps[verdict.error_index].text.lower()
    return new_step != old_steps[verdict.error_index].text.lower() and (
        verdict.part.lower() not in new_step
    )


def _made_progress(previous: str, current: str) -> bool:
    """The original's feedback check: the first error moved later (or all is now correct)."""
    now, before = _error_key(current), _error_key(previous)
    if now is None:
        return True
    if before is None or now == before:
        return False
    return _step_order(now[0]) >= _step_order(before[0])


def repair(
    items: list[dict],
    generations: list[tuple[list[str], list[str]]],
    *,
    verify: Verifier = scripted_verifier,
    improve: Improver = scripted_improver,
    max_improvements: int = 5,
) -> list[Trajectory]:
    """Return one trajectory per item, grown from the model's generation ``(answers,
    feedback)`` (its attempt, and from the second iteration on its own feedback and updates).

    Directly-correct first attempts are accepted at once. Otherwise the model's answers are
    verified in order; its prefix is kept up to the first answer whose model feedback the
    verifier disagrees with, and the improver repairs from there (one batched call per round).
    """
    trajs: list[Trajectory] = []
    todo: list[int] = []
    for item, (answers, _) in zip(items, generations, strict=True):
        trajs.append(Trajectory(item, [answers[0]]))
        if is_directly_correct(item, answers[0]):
            trajs[-1].feedback.append(all_correct_feedback(answers[0]))
            trajs[-1].accepted = True
        else:
            todo.append(len(trajs) - 1)
    # The model's own turns: keep them while the verifier agrees with its feedback.
    verdicts: dict[int, Verdict] = {}
    own = {i: generations[i] for i in todo}
    depth = 0
    open_ = list(todo)
    while open_:
        batch = [i for i in open_ if depth < len(own[i][0])]
        if not batch:
            break
        got = verify([trajs[i].item for i in batch], [own[i][0][depth] for i in batch])
        next_open = []
        for i, v in zip(batch, got, strict=True):
            t = trajs[i]
            t.answers[-1] = own[i][0][depth]
            model_fb = own[i][1][depth] if depth < len(own[i][1]) else None
            agree = model_fb is not None and _error_key(model_fb) == _error_key(v.feedback)
            if v.error:
                t.error = v.error
            elif agree and depth + 1 < len(own[i][0]) and not v.correct:
                t.feedback.append(model_fb or "")
                t.answers.append(own[i][0][depth + 1])
                next_open.append(i)
                continue
            verdicts[i] = v
        open_ = next_open
        depth += 1
    # Repair from the first disagreement, round by round.
    open_ = [i for i in todo if trajs[i].error is None]
    for i in open_:
        trajs[i].feedback.append(verdicts[i].feedback)
        trajs[i].accepted = verdicts[i].correct
    open_ = [i for i in open_ if not trajs[i].accepted]
    for _ in range(max_improvements):
        if not open_:
            break
        texts = improve(
            [trajs[i].item for i in open_],
            [trajs[i].answers[-1] for i in open_],
            [verdicts[i] for i in open_],
        )
        legit = []
        for i, text in zip(open_, texts, strict=True):
            if isinstance(text, Failure):
                trajs[i].error = text.reason
            elif _legit_update(trajs[i].answers[-1], text, verdicts[i]):
                legit.append((i, text))
        if not legit:
            break
        got = verify([trajs[i].item for i, _ in legit], [text for _, text in legit])
        still = []
        for (i, text), v in zip(legit, got, strict=True):
            t = trajs[i]
            if v.error:
                t.error = v.error
                continue
            if not _made_progress(t.feedback[-1], v.feedback):
                t.bad_progress = True
            t.answers.append(text)
            t.feedback.append(v.feedback)
            verdicts[i] = v
            if v.correct:
                t.accepted = True
            else:
                still.append(i)
        open_ = still
    return trajs


# ----------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class Sample:
    """One training text: the item, the answer body after the header, and where the
    weighted section starts (``"Q:"``: all trained at weight 1, as the original's gold and
    directly-correct samples; ``FEEDBACK``: from the first feedback on, the section weight)."""

    id: str
    item: dict
    body: str
    att_start: str

    @property
    def text(self) -> str:
        """Returns the sample's whole text (what the original de-duplicates on)."""
        return "".join(attempt_prompt(self.item)) + self.body


def trajectory_samples(t: Trajectory, *, convert_to_turns: bool = True) -> tuple[list, list]:
    """Return (improvement samples, non-improvement samples) of an accepted trajectory.

    Turn k is (answer k, feedback k, Updated Answer k+1); the final (answer, all-correct
    feedback) turn is a non-improvement sample. A trajectory right at once is one
    non-improvement sample trained whole; one with ``bad_progress`` keeps only its first turn.
    """
    item, rid = t.item, t.item["id"]
    updated = tasks.answer_header(item["task"], updated=True)
    first = f"{t.answers[0]}{FEEDBACK} {t.feedback[0]}"
    if t.bad_progress:
        return [], [Sample(f"{rid}-t0", item, first, FEEDBACK)]
    if len(t.answers) == 1:
        return [], [Sample(f"{rid}-t0", item, first, "Q:")]
    if not convert_to_turns:
        body = t.answers[0]
        for k in range(len(t.answers) - 1):
            body += f"{FEEDBACK} {t.feedback[k]}{updated}{t.answers[k + 1]}"
        body += f"{FEEDBACK} {t.feedback[-1]}"
        return [Sample(f"{rid}-traj", item, body, FEEDBACK)], []
    improving = [
        Sample(
            f"{rid}-t{k}",
            item,
            f"{t.answers[k]}{FEEDBACK} {t.feedback[k]}{updated}{t.answers[k + 1]}",
            FEEDBACK,
        )
        for k in range(len(t.answers) - 1)
    ]
    last = len(t.answers) - 1
    final = Sample(f"{rid}-t{last}", item, f"{t.answers[-1]}{FEEDBACK} {t.feedback[-1]}", FEEDBACK)
    return improving, [final]


def rebalance(
    improving: list[Sample], plain: list[Sample], *, improve_data_ratio: float, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Keep every improvement sample and ``min(ceil(len(improving) / improve_data_ratio),
    len(plain))`` non-improvement samples drawn at random, as the original; a ratio <= 0
    keeps them all (its "do not balance" ablation). Returns (improving, kept plain)."""
    if improve_data_ratio <= 0:
        return list(improving), list(plain)
    want = min(math.ceil(len(improving) / improve_data_ratio), len(plain))
    return list(improving), random.Random(seed).sample(plain, want)


def gold_samples(items: list[dict], seen_texts: set[str]) -> list[Sample]:
    """Return the gold samples of a window: each ground-truth rationale followed by its
    all-correct feedback, trained whole; texts already collected are left out."""
    out = []
    for it in items:
        rationale = it["rationale"].strip()
        sample = Sample(
            f"{it['id']}-gold", it, f"{rationale}{FEEDBACK} {all_correct_feedback(rationale)}", "Q:"
        )
        if sample.text not in seen_texts:
            seen_texts.add(sample.text)
            out.append(sample)
    return out


def build_record(
    sample: Sample,
    *,
    self_improve_section_weight: float = 1.5,
    mask_before_att_start_text: bool = False,
) -> dict[str, Any]:
    """Return a training record ``{"id", "segments": [{"text", "weight"}], "add_eos": True,
    "text", "text_att_start_text"}`` (the original's fields kept for reading).

    As the original's dataset: with ``att_start == "Q:"`` every token has weight 1; with the
    feedback marker, the text before the first feedback has weight 1 (0 when
    ``mask_before_att_start_text``) and from the first feedback on the section weight.
    """
    question, header = attempt_prompt(sample.item)
    if sample.att_start == "Q:":
        parts = [(question, 1.0), (header, 1.0), (sample.body, 1.0)]
    else:
        before = 0.0 if mask_before_att_start_text else 1.0
        cut = sample.body.find(FEEDBACK)
        head, section = (sample.body, "") if cut < 0 else (sample.body[:cut], sample.body[cut:])
        parts = [(question, before), (header, before), (head, before)]
        if section:
            parts.append((section, self_improve_section_weight))
    return {
        "id": sample.id,
        "segments": [{"text": text, "weight": weight} for text, weight in parts if text],
        "add_eos": True,
        "text": "".join(text for text, _ in parts),
        "text_att_start_text": sample.att_start,
    }


def gold_sft_record(item: dict, *, mask_before_att_start_text: bool = False) -> dict[str, Any]:
    """Return the baseline SFT record of a ground-truth rationale (the original's baseline
    files: the question and the rationale, weighted section from ``\\nAnswer:``)."""
    question, header = attempt_prompt(item)
    before = 0.0 if mask_before_att_start_text else 1.0
    parts = [(question, before), (header, 1.0), (item["rationale"].strip(), 1.0)]
    return {
        "id": f"{item['id']}-gold",
        "segments": [{"text": text, "weight": weight} for text, weight in parts],
        "add_eos": True,
        "text": "".join(text for text, _ in parts),
        "text_att_start_text": "\nAnswer:",
    }


_NUMBER = re.compile(r"-?\d+")


def plant_error(item: dict, rng: random.Random) -> str:
    """Return the item's ground-truth rationale with one number changed in a random step.

    Our offline stand-in for an LLM's mistakes (the ``planted`` demonstration source of the
    FT-from-demonstrations baseline; the paper's source is the LLM's own attempts).
    """
    lines = item["rationale"].split("\n")
    # Numbered steps and the final response only (not a header line such as logical
    # deduction's 'Let "??" represents 0 or more objects ...').
    candidates = [
        i
        for i, line in enumerate(lines)
        if line.startswith("(") and _NUMBER.search(line.split(")", 1)[-1])
    ]
    if not candidates:
        raise ValueError(f"item {item['id']}: no number to change in its rationale")
    i = rng.choice(candidates)
    label, sep, body = lines[i].partition(")")
    matches = list(_NUMBER.finditer(body))
    m = rng.choice(matches)
    wrong = int(m.group()) + rng.choice([-3, -2, -1, 1, 2, 3])
    lines[i] = label + sep + body[: m.start()] + str(wrong) + body[m.end() :]
    return "\n".join(lines)
