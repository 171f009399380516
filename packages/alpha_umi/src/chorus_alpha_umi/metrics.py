"""Static step-level metrics of the paper: Plan ACC, Act EM, Hallucination, Arg F1, ROUGE-L.

Each step record holds the gold route (and gold call / conclusion) and the predictions;
``score_step`` scores one step, ``aggregate`` averages. Denominators follow the paper notes:
Plan ACC and Hallucination over all steps, Act EM and Arg F1 over gold-call steps, ROUGE-L
over gold-conclusion steps. Arg F1 is also split into easy (gold call without arguments)
and hard (gold call with arguments); a split with no steps is reported as None, not 0/0.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from chorus_alpha_umi.dialog import Call, parse_call, parse_route


def _same_value(a: Any, b: Any) -> bool:
    # Models write numbers as strings and vice versa; compare canonical text.
    def canon(v: Any) -> str:
        return v.strip() if isinstance(v, str) else json.dumps(v, sort_keys=True)

    return canon(a) == canon(b)


def argument_f1(gold: Call, pred: Call) -> float:
    """Return the per-key argument F1 of a predicted call against the gold one.

    A key with the right value counts 1, a present key with a wrong value 0.5; a wrong (or
    missing) API or unparseable arguments give 0; empty vs empty gives 1.
    """
    if pred.api is None or pred.api != gold.api or pred.arguments is None:
        return 0.0
    gold_args = gold.arguments or {}
    pred_args = pred.arguments
    if not gold_args and not pred_args:
        return 1.0
    if not gold_args or not pred_args:
        return 0.0
    hit = sum(
        1.0 if _same_value(gold_args[k], pred_args[k]) else 0.5 for k in pred_args if k in gold_args
    )
    precision = hit / len(pred_args)
    recall = hit / len(gold_args)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(reference: str, prediction: str) -> float:
    """Return the ROUGE-L F-measure of ``prediction`` against ``reference`` (rouge-score)."""
    return float(_rouge().score(reference, prediction)["rougeL"].fmeasure)


def score_step(step: dict[str, Any]) -> dict[str, Any]:
    """Return the per-step scores of one prediction record.

    ``step`` needs ``gold_route``, ``tool_names`` and ``planner`` (the planner's text); for a
    gold call ``gold_call`` and ``caller``, for a gold conclusion ``gold_conclusion`` and
    ``summarizer``. A missing prediction scores as wrong.
    """
    route, had_marker = parse_route(step.get("planner") or "")
    out: dict[str, Any] = {
        "plan_correct": route == step["gold_route"],
        "had_marker": had_marker,
        "hallucinated": False,
    }
    if step["gold_route"] == "caller":
        gold = parse_call(step["gold_call"])
        pred = parse_call(step.get("caller") or "")
        out["act_em"] = pred.api is not None and pred.api == gold.api
        out["hallucinated"] = pred.api is not None and pred.api not in set(step["tool_names"])
        out["call_error"] = pred.error
        out["arg_f1"] = argument_f1(gold, pred)
        out["easy"] = not (gold.arguments or {})
    elif step["gold_route"] == "conclusion":
        out["rouge_l"] = rouge_l(step["gold_conclusion"], step.get("summarizer") or "")
    return out


def _mean(values: list[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def aggregate(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the paper's metrics in percent (None where a denominator is empty) plus counts."""
    calls = [s for s in scores if "act_em" in s]
    concl = [s for s in scores if "rouge_l" in s]
    return {
        "plan_acc": _mean([float(s["plan_correct"]) for s in scores]),
        "act_em": _mean([float(s["act_em"]) for s in calls]),
        "hallucination": _mean([float(s["hallucinated"]) for s in scores]),
        "arg_f1": _mean([s["arg_f1"] for s in calls]),
        "arg_f1_easy": _mean([s["arg_f1"] for s in calls if s["easy"]]),
        "arg_f1_hard": _mean([s["arg_f1"] for s in calls if not s["easy"]]),
        "rouge_l": _mean([s["rouge_l"] for s in concl]),
        "steps": len(scores),
        "call_steps": len(calls),
        "easy_call_steps": sum(1 for s in calls if s["easy"]),
        "conclusion_steps": len(concl),
        "giveup_steps": len(scores) - len(calls) - len(concl),
        "planner_without_marker": sum(1 for s in scores if not s["had_marker"]),
        "unparseable_calls": sum(1 for s in calls if s["call_error"]),
    }
