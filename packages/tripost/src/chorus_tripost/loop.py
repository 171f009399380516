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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from chorus_shared.models.base import ChatModel, SamplingParams
from chorus_tripost import verifier as verifier_mod
from chorus_tripost.improver import improve as scripted_improve
from chorus_tripost.verifier import Verdict

__all__ = [
    "ANSWER",
    "CollectStats",
    "attempt_prompt",
    "build_records",
    "collect",
    "rebalance",
    "split_turns",
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


def attempt_prompt(item: dict) -> list[dict]:
    """Return the conversation that asks the model for an attempt."""
    return [{"role": "user", "content": question_text(item) + ANSWER.rstrip("\n")}]


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


def collect(
    model: ChatModel,
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
    batched ``chat`` call; each improvement round is one batched verifier/improver call.
    """
    params = params or SamplingParams(max_new_tokens=512, temperature=0.0)
    completions = model.chat([attempt_prompt(it) for it in items], params)
    trajs = [
        {
            "id": it["id"],
            "item": it,
            "answers": [_strip_answer(c.text)],
            "feedback": [],
            "correct": False,
        }
        for it, c in zip(items, completions, strict=True)
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


def _strip_answer(text: str) -> str:
    text = text.strip()
    # Models trained on our records may echo the "Answer:" header; keep only the steps.
    return (
        text.split("Let's think step by step.", 1)[-1].strip()
        if "Let's think step by step." in text[:60]
        else text
    )


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
        head = question_text(t["item"]) + ANSWER + t["attempt"]
        section = FEEDBACK + t["feedback"] + UPDATED + t["update"]
        if "final_feedback" in t:
            section += FEEDBACK + t["final_feedback"]
        records.append(
            _record(t["id"], [(head, before), (section, self_improve_section_weight)], FEEDBACK)
        )
    for p in plain:
        records.append(
            _record(
                p["id"],
                [
                    (question_text(p["item"]), before),
                    (ANSWER + p["attempt"], 1.0),
                    (FEEDBACK + p["feedback"], self_improve_section_weight),
                ],
                "\nAnswer:",
            )
        )
    for g in gold:
        records.append(
            _record(
                f"{g['id']}-gold",
                [(question_text(g), before), (ANSWER + g["rationale"], 1.0)],
                "\nAnswer:",
            )
        )
    return records


def _record(rid: str, parts: list[tuple[str, float]], att_start: str) -> dict:
    return {
        "id": rid,
        "segments": [{"text": text, "weight": weight} for text, weight in parts],
        "add_eos": True,
        "text": "".join(text for text, _ in parts),
        "text_att_start_text": att_start,
    }
