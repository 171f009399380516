"""Static step-level metrics, as the authors' evaluation scripts compute them.

``evaluate-multi_agent.py`` (α-UMi) and ``evaluate-backbone.py`` (the single-LLM baseline) read
one prediction string and one reference string per step, parse both (:func:`parse_output`),
and compute:

- Plan ACC: predicted plan (call / finish / give up) equals the reference's, over all steps;
- Act EM: the predicted API name equals the reference's, over reference-call steps;
- Hallucination: a predicted API that is not in the dialog's tool list, over *all* steps
  (every step where a call was read, whatever the reference);
- Arg F1: per reference-call step, 0 for a wrong API (added to the easy and the hard list);
  otherwise the key F1 of the JSON arguments, compared with Python ``==`` (a key with the
  right value 1, with a wrong value 0.5). "Easy" = reference arguments ``{}``, "hard" = any
  other; unparseable predicted arguments give 0; a reference whose arguments are not JSON is
  left out of all three lists;
- R-L: ROUGE-L F of the answer after the last "conclusion: " against the reference's, over
  reference-finish steps, with the ``rouge`` package's semantics (:func:`rouge_l`).

Where the original divides by zero (no easy or no hard step, no reference answer) we report
None, not a crash. Where its ``rouge`` package raises (an empty answer) we score 0. Next to
these, the lenient columns of earlier versions are kept and labelled as ours: ROUGE-L of the
``rouge-score`` package (case-insensitive, no sentence split) and argument values compared as
canonical text (5 equals "5").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chorus_alpha_umi.dialog import split_call

PLANS = ("call", "finish", "give up")
# The original's plan names <-> our route names.
ROUTE_OF_PLAN = {"call": "caller", "finish": "conclusion", "give up": "give up"}


@dataclass(frozen=True)
class Parsed:
    """One parsed step string: ``plan`` and, for a call, ``action``/``action_input`` (raw
    text), for a finish the ``answer``."""

    plan: str
    action: str | None = None
    action_input: str | None = None
    answer: str | None = None


def _answer_after_conclusion(text: str) -> str:
    at = text.rfind("conclusion: ")
    return text if at < 0 else text[at + len("conclusion: ") :]


def _call(text: str) -> Parsed:
    action, raw = split_call(text)
    return Parsed("call", "none" if action is None else action, raw)


def parse_output(text: str, mode: str = "multi") -> Parsed:
    """Return the step string parsed as the original's evaluation script of ``mode`` does.

    ``multi`` (evaluate-multi_agent.py): "Next: give up" > "Next: conclusion" (the answer is
    the text after the last "conclusion: ", "</s>" removed) > a call read from the part after
    the first "</s>" (the caller's turn). ``backbone`` (evaluate-backbone.py): "conclusion:
    give up" > "conclusion: " > a call read from the whole text.
    """
    if mode == "backbone":
        if "conclusion: give up" in text:
            return Parsed("give up")
        if "conclusion: " in text:
            return Parsed("finish", answer=_answer_after_conclusion(text))
        return _call(text)
    if mode != "multi":
        raise ValueError(f"unknown evaluation mode {mode!r}; choose multi or backbone")
    if "Next: give up" in text:
        return Parsed("give up")
    if "Next: conclusion" in text:
        return Parsed("finish", answer=_answer_after_conclusion(text).replace("</s>", ""))
    parts = text.split("</s>")
    # The original indexes [1] and crashes without a "</s>"; only a malformed string lacks
    # one (a prediction always has it): read it as no call at all.
    return _call(parts[1] if len(parts) > 1 else "")


# -- arguments -----------------------------------------------------------------------------


def argument_scores(
    pred_action: str, ref_action: str, pred_input: str, ref_input: str
) -> tuple[float | None, float | None, float | None]:
    """Return the step's ``(easy, hard, all)`` argument F1 as the original appends them (None
    = not appended to that list).

    A wrong API adds 0 to all three lists. A reference whose arguments are not JSON adds to
    none. Values are compared with Python ``==`` (5 and "5" differ).
    """
    if pred_action != ref_action:
        return 0.0, 0.0, 0.0
    try:
        ref = json.loads(ref_input)
    except (json.JSONDecodeError, TypeError):
        return None, None, None
    try:
        cand = json.loads(pred_input)
    except (json.JSONDecodeError, TypeError):
        return (0.0, None, 0.0) if ref == {} else (None, 0.0, 0.0)
    if ref == {}:
        return (1.0, None, 1.0) if cand == {} else (0.0, None, 0.0)
    if not isinstance(ref, dict) or not isinstance(cand, dict):
        # The original's ``.items()`` / ``.keys()`` raise here and its handler scores 0.
        return None, 0.0, 0.0
    full = sum(1 for k, v in ref.items() if k in cand and cand[k] == v)
    half = sum(1 for k, v in ref.items() if k in cand and cand[k] != v)
    hit = 0.5 * half + full
    if hit == 0:
        return None, 0.0, 0.0  # the original divides 0/0 here and its handler scores 0
    recall, precision = hit / len(ref), hit / len(cand)
    f1 = 2 * recall * precision / (recall + precision)
    return None, f1, f1


def _same_value(a: Any, b: Any) -> bool:
    # Ours, lenient: models write numbers as strings and vice versa; compare canonical text.
    def canon(v: Any) -> str:
        return v.strip() if isinstance(v, str) else json.dumps(v, sort_keys=True)

    return canon(a) == canon(b)


def lenient_argument_f1(
    pred_action: str, ref_action: str, pred_input: str, ref_input: str
) -> float:
    """Return our lenient argument F1 (values compared as canonical text, so 5 equals "5";
    any unparseable side gives 0; empty vs empty gives 1)."""
    if pred_action != ref_action:
        return 0.0
    try:
        ref, cand = json.loads(ref_input), json.loads(pred_input)
    except (json.JSONDecodeError, TypeError):
        return 0.0
    if not isinstance(ref, dict) or not isinstance(cand, dict):
        return 0.0
    if not ref and not cand:
        return 1.0
    if not ref or not cand:
        return 0.0
    hit = sum(1.0 if _same_value(ref[k], cand[k]) else 0.5 for k in cand if k in ref)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(cand), hit / len(ref)
    return 2 * precision * recall / (precision + recall)


# -- ROUGE-L -----------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    # The rouge package splits on "." and squeezes the whitespace of every non-empty piece.
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _words(sentences: list[str]) -> list[str]:
    return [word for sentence in sentences for word in sentence.split(" ")]


def _lcs_words(x: list[str], y: list[str]) -> set[str]:
    """The words of one longest common subsequence of x and y, reconstructed with the rouge
    package's tie-breaking (up when the cell above is strictly larger, else left)."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    words: set[str] = set()
    i, j = n, m
    while i > 0 and j > 0:  # iterative: the package's recursion fails on long answers
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l(reference: str, prediction: str) -> float:
    """Return ROUGE-L F of ``prediction`` against ``reference`` with the semantics of the
    ``rouge`` package the paper used (``Rouge().get_scores``, summary-level, exclusive).

    Both texts are split into sentences on "."; precision and recall divide the size of the
    union of the LCS *word sets* (one LCS per reference sentence and prediction sentence) by
    the number of distinct words; case-sensitive, no stemming. A side without a sentence
    (empty text, or only dots), where the package raises, scores 0.
    """
    hyp, ref = _sentences(prediction), _sentences(reference)
    if not hyp or not ref:
        return 0.0
    m, n = len(set(_words(ref))), len(set(_words(hyp)))
    union: set[str] = set()
    for ref_sentence in ref:
        ref_words = ref_sentence.split(" ")
        for hyp_sentence in hyp:
            union |= _lcs_words(ref_words, hyp_sentence.split(" "))
    recall, precision = len(union) / m, len(union) / n
    return 2.0 * ((precision * recall) / (precision + recall + 1e-8))


@lru_cache(maxsize=1)
def _rouge_score() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l_lenient(reference: str, prediction: str) -> float:
    """Return ROUGE-L F of the ``rouge-score`` package (ours: case-insensitive tokens, no
    sentence split); kept as a labelled second column."""
    return float(_rouge_score().score(reference, prediction)["rougeL"].fmeasure)


# -- one step, and the aggregate -------------------------------------------------------------


def score_step(
    reference: str, prediction: str, tool_names: list[str], mode: str = "multi"
) -> dict[str, Any]:
    """Return the scores of one step: plan, hallucination, and per the reference's plan the
    call scores (``act_em``, ``easy``/``hard``/``arg_f1`` as appended, ``arg_f1_lenient``) or
    the answer scores (``rouge_l``, ``rouge_l_lenient``)."""
    ref, pred = parse_output(reference, mode), parse_output(prediction, mode)
    out: dict[str, Any] = {
        "ref_plan": ref.plan,
        "pred_plan": pred.plan,
        "plan_correct": ref.plan == pred.plan,
        "hallucinated": pred.action is not None
        and pred.action != "none"
        and pred.action not in tool_names,
    }
    if ref.plan == "call":
        pred_action = "none" if pred.action is None else pred.action
        pred_input = "{}" if pred.action_input is None else pred.action_input
        ref_action, ref_input = str(ref.action), str(ref.action_input)
        easy, hard, f1 = argument_scores(pred_action, ref_action, pred_input, ref_input)
        out.update(
            act_em=pred_action == ref_action,
            easy=easy,
            hard=hard,
            arg_f1=f1,
            arg_f1_lenient=lenient_argument_f1(pred_action, ref_action, pred_input, ref_input),
        )
    elif ref.plan == "finish":
        answer = "none" if pred.answer is None else pred.answer
        out.update(
            rouge_l=rouge_l(str(ref.answer), answer),
            rouge_l_lenient=rouge_l_lenient(str(ref.answer), answer),
        )
    return out


def _pct(values: list[float]) -> float | None:
    return 100.0 * sum(values) / len(values) if values else None


def aggregate(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the metrics in percent (None where the original would divide by zero) and the
    counts behind them."""
    calls = [s for s in scores if "act_em" in s]
    answers = [s for s in scores if "rouge_l" in s]
    return {
        "plan_acc": _pct([float(s["plan_correct"]) for s in scores]),
        "act_em": _pct([float(s["act_em"]) for s in calls]),
        "hallucination": _pct([float(s["hallucinated"]) for s in scores]),
        "arg_f1": _pct([s["arg_f1"] for s in calls if s["arg_f1"] is not None]),
        "arg_f1_easy": _pct([s["easy"] for s in calls if s["easy"] is not None]),
        "arg_f1_hard": _pct([s["hard"] for s in calls if s["hard"] is not None]),
        "rouge_l": _pct([s["rouge_l"] for s in answers]),
        # Ours, labelled: lenient argument values and the rouge-score package.
        "arg_f1_lenient": _pct([s["arg_f1_lenient"] for s in calls]),
        "rouge_l_lenient": _pct([s["rouge_l_lenient"] for s in answers]),
        "steps": len(scores),
        "call_steps": len(calls),
        # The lengths of the original's easy / hard lists (a wrong API adds to both).
        "easy_entries": sum(1 for s in calls if s["easy"] is not None),
        "hard_entries": sum(1 for s in calls if s["hard"] is not None),
        "conclusion_steps": len(answers),
        "giveup_steps": len(scores) - len(calls) - len(answers),
    }
