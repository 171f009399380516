"""The data side of TriPosT's interactive loop.

attempts of the current model (one batched ``chat`` call) -> verifier feedback on the first
error -> improver rewrites from the correct prefix, up to ``max_improvements`` times, until the
verifier accepts (else the trajectory is dropped) -> trajectories split into single turns ->
rebalance: non-improvement samples = ceil(improvement samples / improve_data_ratio) -> gold
samples added -> weighted training records in chorus_shared.training's segment format.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from chorus_shared.models.base import Completion, SamplingParams
from chorus_tripost import verifier as verifier_mod
from chorus_tripost.improver import improve as scripted_improve
from chorus_tripost.verifier import Verdict

__all__ = [
    "ANSWER",
    "CollectStats",
    "attempt_prompt",
    "build_records",
    "collect",
    "first_answer",
    "lmsi_select",
    "plain_records",
    "plant_error",
    "rebalance",
    "repair",
    "split_turns",
    "trajectory_records",
]

ANSWER = "\nAnswer: Let's think step by step.\n"
FEEDBACK = "\nFeedback: "
UPDATED = "\nUpdated Answer: Let's think step by step.\n"

Verifier = Callable[[list[dict], list[str]], list[Verdict]]
Improver = Callable[[list[dict], list[str], list[Verdict]], list[str]]


def scripted_verifier(items: list[dict], rationales: list[str]) -> list[Verdict]:
    """The scripted verifier over a batch; returns one verdict per rationale."""
    return [verifier_mod.verify(it, r) for it, r in zip(items, rationales, strict=True)]


def scripted_improver(items: list[dict], attempts: list[str], verdicts: list[Verdict]) -> list[str]:
    """The scripted improver over a batch; returns one improved rationale per attempt."""
    return [scripted_improve(i, a, v) for i, a, v in zip(items, attempts, verdicts, strict=True)]


def question_text(item: dict) -> str:
    """Return ``Q: <question>`` without a trailing ``=`` space mess."""
    return "Q: " + item["question"].strip().removeprefix("Q:").strip()


def attempt_prompt(item: dict) -> list[str]:
    """Return the raw-text prompt pieces of an attempt: the question, then the answer header.

    The same pieces open every training record (``build_records``), so the prompt is a token
    prefix of the records (each piece is tokenized on its own, in both places).
    """
    return [question_text(item), ANSWER]


@dataclass
class CollectStats:
    """Per-window collection statistics (logged per iteration)."""

    attempts: int = 0
    correct_first: int = 0
    corrected: int = 0
    dropped: int = 0
    improvement_turns: int = 0
    rounds_used: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return asdict(self)


class RawModel(Protocol):
    """What the trained model must offer: batched raw-text continuation (``RawTextModel``)."""

    def complete(self, prompts: list[list[str]], params: SamplingParams) -> list[Completion]:
        """Return one continuation per prompt."""
        ...


def collect(
    model: RawModel,
    items: list[dict],
    *,
    verify: Verifier = scripted_verifier,
    improve: Improver = scripted_improver,
    max_improvements: int = 5,
    params: SamplingParams | None = None,
) -> tuple[list[dict], CollectStats]:
    """Return the trajectories of one window and the collection statistics.

    A trajectory is ``{"id", "item", "answers": [y0, y1, ...], "feedback": [f0, f1, ...],
    "correct": bool}``; ``answers[-1]`` is accepted when ``correct``. Attempts come from one
    batched ``complete`` call; each improvement round is one batched verifier/improver call.
    """
    params = params or SamplingParams(max_new_tokens=512, temperature=0.0, stop=(FEEDBACK,))
    completions = model.complete([attempt_prompt(it) for it in items], params)
    attempts = [first_answer(c.text) for c in completions]
    return repair(
        items, attempts, verify=verify, improve=improve, max_improvements=max_improvements
    )


def repair(
    items: list[dict],
    attempts: list[str],
    *,
    verify: Verifier = scripted_verifier,
    improve: Improver = scripted_improver,
    max_improvements: int = 5,
) -> tuple[list[dict], CollectStats]:
    """Return the accepted trajectories grown from ``attempts`` and the statistics: verify,
    improve the still-wrong ones (one batched call per round) until accepted or dropped."""
    trajs = [
        {"id": it["id"], "item": it, "answers": [a], "feedback": [], "correct": False}
        for it, a in zip(items, attempts, strict=True)
    ]
    stats = CollectStats(attempts=len(items))
    open_ = list(range(len(trajs)))
    for round_ in range(max_improvements + 1):
        if not open_:
            break
        verdicts = verify(
            [trajs[i]["item"] for i in open_], [trajs[i]["answers"][-1] for i in open_]
        )
        still = []
        for i, v in zip(open_, verdicts, strict=True):
            trajs[i]["feedback"].append(v.feedback)
            if v.correct:
                trajs[i]["correct"] = True
                stats.rounds_used.append(round_)
                if round_ == 0:
                    stats.correct_first += 1
                else:
                    stats.corrected += 1
            else:
                still.append((i, v))
        if round_ == max_improvements or not still:
            open_ = [i for i, _ in still]
            break
        texts = improve(
            [trajs[i]["item"] for i, _ in still],
            [trajs[i]["answers"][-1] for i, _ in still],
            [v for _, v in still],
        )
        for (i, _), text in zip(still, texts, strict=True):
            trajs[i]["answers"].append(text)
        open_ = [i for i, _ in still]
    stats.dropped = len(open_)
    kept = [t for t in trajs if t["correct"]]
    stats.improvement_turns = sum(len(t["answers"]) - 1 for t in kept)
    return kept, stats


def first_answer(text: str) -> str:
    """Return the first answer of a generation: the text before any ``Feedback:`` section."""
    return text.split(FEEDBACK.strip(), 1)[0].strip()


def split_turns(trajectories: list[dict]) -> tuple[list[dict], list[dict]]:
    """Split accepted trajectories into (improvement turns, non-improvement samples).

    Turn k of a trajectory is (answer k, feedback k, answer k+1), followed by the accepting
    feedback when answer k+1 is the final one, so the model also learns when to stop.
    A trajectory right at the first attempt is one non-improvement sample.
    """
    improving, plain = [], []
    for t in trajectories:
        answers, feedback = t["answers"], t["feedback"]
        if len(answers) == 1:
            plain.append(
                {
                    "id": f"{t['id']}-t0",
                    "item": t["item"],
                    "attempt": answers[0],
                    "feedback": feedback[0],
                }
            )
            continue
        for k in range(len(answers) - 1):
            turn = {
                "id": f"{t['id']}-t{k}",
                "item": t["item"],
                "attempt": answers[k],
                "feedback": feedback[k],
                "update": answers[k + 1],
            }
            if k + 1 == len(answers) - 1:
                turn["final_feedback"] = feedback[k + 1]
            improving.append(turn)
    return improving, plain


def rebalance(
    improving: list[dict], plain: list[dict], *, improve_data_ratio: float, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """Keep every improvement turn and ceil(len(improving) / improve_data_ratio) plain samples
    (all of them when there are fewer); returns (improving, kept plain), order-stable."""
    if improve_data_ratio <= 0:
        raise ValueError(f"improve_data_ratio must be > 0, got {improve_data_ratio}")
    want = math.ceil(len(improving) / improve_data_ratio)
    if want >= len(plain):
        return list(improving), list(plain)
    keep = set(random.Random(seed).sample(range(len(plain)), want))
    return list(improving), [p for i, p in enumerate(plain) if i in keep]


def build_records(
    improving: list[dict],
    plain: list[dict],
    gold: list[dict],
    *,
    self_improve_section_weight: float = 1.5,
    mask_before_att_start_text: bool = True,
) -> list[dict]:
    """Return training records ``{"id", "segments": [{"text", "weight"}], "add_eos": True,
    "text", "text_att_start_text"}`` (the paper's fields kept for reading).

    Weights: the part before the weighted section (the question, and for an improvement turn
    also the model's own wrong attempt) is 0 when ``mask_before_att_start_text`` else 1; a
    first answer is 1; the feedback / updated-answer section is ``self_improve_section_weight``.
    """
    before = 0.0 if mask_before_att_start_text else 1.0
    records = []
    for t in improving:
        section = FEEDBACK + t["feedback"] + UPDATED + t["update"]
        if "final_feedback" in t:
            section += FEEDBACK + t["final_feedback"]
        parts = [*_head(t["item"], before, before), (t["attempt"], before)]
        records.append(_record(t["id"], [*parts, (section, self_improve_section_weight)], FEEDBACK))
    for p in plain:
        parts = [*_head(p["item"], before, 1.0), (p["attempt"], 1.0)]
        section = (FEEDBACK + p["feedback"], self_improve_section_weight)
        records.append(_record(p["id"], [*parts, section], "\nAnswer:"))
    for g in gold:
        parts = [*_head(g, before, 1.0), (g["rationale"], 1.0)]
        records.append(_record(f"{g['id']}-gold", parts, "\nAnswer:"))
    return records


def trajectory_records(
    trajectories: list[dict],
    *,
    self_improve_section_weight: float = 1.5,
    mask_before_att_start_text: bool = True,
) -> list[dict]:
    """Return one record per whole trajectory (``convert_to_turns`` off): the first attempt
    [1 when right at once, else context], then every feedback / update [section weight]."""
    before = 0.0 if mask_before_att_start_text else 1.0
    records = []
    for t in trajectories:
        answers, feedback = t["answers"], t["feedback"]
        first = 1.0 if len(answers) == 1 else before
        parts = [*_head(t["item"], before, first), (answers[0], first)]
        section = FEEDBACK + feedback[0]
        for k in range(1, len(answers)):
            section += UPDATED + answers[k] + FEEDBACK + feedback[k]
        parts.append((section, self_improve_section_weight))
        records.append(_record(f"{t['id']}-traj", parts, FEEDBACK))
    return records


def plain_records(
    samples: list[tuple[dict, str, str]], *, mask_before_att_start_text: bool = True
) -> list[dict]:
    """Return records that train a bare answer (no feedback): ``(item, answer, id)`` triples
    (LMSI's self-consistent rationales)."""
    before = 0.0 if mask_before_att_start_text else 1.0
    return [
        _record(rid, [*_head(item, before, 1.0), (answer, 1.0)], "\nAnswer:")
        for item, answer, rid in samples
    ]


def _head(item: dict, question_weight: float, header_weight: float) -> list[tuple[str, float]]:
    # Exactly the pieces of ``attempt_prompt``: the generation prompt is a token prefix.
    question, header = attempt_prompt(item)
    return [(question, question_weight), (header, header_weight)]


def _record(rid: str, parts: list[tuple[str, float]], att_start: str) -> dict:
    return {
        "id": rid,
        "segments": [{"text": text, "weight": weight} for text, weight in parts],
        "add_eos": True,
        "text": "".join(text for text, _ in parts),
        "text_att_start_text": att_start,
    }


_NUMBER = re.compile(r"-?\d+")


def plant_error(item: dict, rng: random.Random) -> str:
    """Return the item's ground-truth rationale with one number changed in a random step.

    Stands in for a stronger model's mistakes in the "FT from demonstrations" baseline: the
    demonstrations then show repairs of errors the trained model did not make itself.
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


def lmsi_select(
    items: list[dict], samples: list[list[str]], answer_of: Callable[[str], str | None]
) -> tuple[list[tuple[dict, str, str]], dict]:
    """LMSI's self-consistency filter: per item keep the distinct sampled rationales whose
    final answer is the majority answer (no ground truth used). Returns ``(kept (item,
    rationale, id) triples, stats)``; items whose samples have no readable answer give none."""
    kept: list[tuple[dict, str, str]] = []
    unreadable = 0
    for item, rationales in zip(items, samples, strict=True):
        answers = [answer_of(r) for r in rationales]
        unreadable += sum(a is None for a in answers)
        votes = Counter(a for a in answers if a is not None)
        if not votes:
            continue
        majority = votes.most_common(1)[0][0]
        seen: set[str] = set()
        for k, (r, a) in enumerate(zip(rationales, answers, strict=True)):
            if a == majority and r not in seen:
                seen.add(r)
                kept.append((item, r, f"{item['id']}-lmsi{k}"))
    stats = {
        "attempts": sum(len(s) for s in samples),
        "items": len(items),
        "items_kept": len({it["id"] for it, _, _ in kept}),
        "samples_kept": len(kept),
        "unreadable": unreadable,
    }
    return kept, stats
