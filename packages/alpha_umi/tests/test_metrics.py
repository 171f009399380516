"""The static metrics and parsing as the authors' evaluation scripts (issue 25, points 2-4)."""

from __future__ import annotations

import pytest

from chorus_alpha_umi.dialog import cut_plan, parse_call, parse_route, strip_route
from chorus_alpha_umi.metrics import (
    aggregate,
    argument_scores,
    lenient_argument_f1,
    parse_output,
    rouge_l,
    rouge_l_lenient,
    score_step,
)

CALL_REF = 'assistant: go. Next: caller.</s>caller: Action: f\nAction Input: {"n": 5}</s>'
EMPTY_REF = "assistant: go. Next: caller.</s>caller: Action: g\nAction Input: {}</s>"
ANSWER_REF = "assistant: done. Next: conclusion.</s>conclusion: It is 18 C.</s>"


def test_route_priority_and_exact_markers() -> None:
    # give up > conclusion > caller, whatever the order in the text; exact markers only.
    assert parse_route("Next: caller. or Next: give up.") == ("give up", True)
    assert parse_route("Next: caller. Next: conclusion.") == ("conclusion", True)
    assert parse_route("Next: caller.") == ("caller", True)
    assert parse_route("next: conclusion.") == ("caller", False)  # case matters
    assert parse_route("Next: conclusion") == ("caller", False)  # the period is part of it
    assert cut_plan("think. Next: caller. trailing") == "think. Next: caller."
    assert cut_plan("no marker") == "no markerNext: caller."
    assert strip_route("think. Next: conclusion. more") == "think."


def test_last_call_counts_and_missing_input_reads_as_empty() -> None:
    call = parse_call('Action: a\nAction Input: {}\nAction: b\nAction Input: {"x": 1}')
    assert (call.api, call.arguments) == ("b", {"x": 1})
    assert parse_call("Action: g").arguments == {}  # no "Action Input": "{}", as the original
    assert parse_call("nothing").api is None
    assert parse_call('Action: f\nAction Input: ["x"]').arguments is None


def test_parse_output_multi_and_backbone() -> None:
    assert parse_output(CALL_REF).plan == "call"
    assert (parse_output(CALL_REF).action, parse_output(CALL_REF).action_input) == (
        "f",
        '{"n": 5}',
    )
    assert parse_output(ANSWER_REF).answer == "It is 18 C."
    assert parse_output("x Next: give up.").plan == "give up"
    backbone = "think\nAction: f\nAction Input: {}"
    assert parse_output(backbone, "backbone").action == "f"
    assert parse_output("t\nconclusion: give up.", "backbone").plan == "give up"
    assert parse_output("t\nconclusion: 18 C", "backbone").answer == "18 C"


def test_argument_values_compare_with_python_equality() -> None:
    # 5 vs "5": half a match for the paper's column, a full one for our lenient column.
    assert argument_scores("f", "f", '{"n": "5"}', '{"n": 5}') == (None, 0.5, 0.5)
    assert lenient_argument_f1("f", "f", '{"n": "5"}', '{"n": 5}') == 1.0
    assert argument_scores("f", "f", '{"n": 5}', '{"n": 5}') == (None, 1.0, 1.0)


def test_easy_hard_f1_as_the_original() -> None:
    # A wrong API adds 0 to both the easy and the hard list.
    assert argument_scores("h", "f", "{}", '{"n": 5}') == (0.0, 0.0, 0.0)
    assert argument_scores("g", "g", "{}", "{}") == (1.0, None, 1.0)
    assert argument_scores("g", "g", '{"a": 1}', "{}") == (0.0, None, 0.0)
    assert argument_scores("f", "f", "not json", '{"n": 5}') == (None, 0.0, 0.0)
    assert argument_scores("f", "f", '{"m": 1}', '{"n": 5}') == (None, 0.0, 0.0)
    assert argument_scores("f", "f", "{}", "not json") == (None, None, None)


def test_rouge_l_has_the_rouge_package_semantics() -> None:
    # Sentences split on ".", word sets, case-sensitive: LCS words {cat, sat} over 6 distinct
    # reference words and 5 distinct prediction words -> F = 4/11.
    assert rouge_l("The cat sat. It was happy.", "the cat sat on the mat.") == pytest.approx(4 / 11)
    assert rouge_l_lenient("The cat sat. It was happy.", "the cat sat on the mat.") == (
        pytest.approx(0.5)
    )
    assert rouge_l("a a a b", "a b") == pytest.approx(1.0, abs=1e-6)  # distinct words
    assert rouge_l("x", "") == 0.0 and rouge_l("x", "...") == 0.0  # the package raises here


def test_hallucination_counts_every_step_with_a_call() -> None:
    # The reference is a conclusion, but the prediction made a call to an unknown tool.
    prediction = "asssitant: x Next: caller.</s>caller: Action: nope\nAction Input: {}"
    scores = score_step(ANSWER_REF, prediction, ["f", "g"])
    assert scores["hallucinated"] and not scores["plan_correct"]
    assert scores["rouge_l"] == 0.0  # no answer: "none" against the reference
    named = "asssitant: x Next: caller.</s>caller: Action: f\nAction Input: {}"
    assert not score_step(ANSWER_REF, named, ["f", "g"])["hallucinated"]


def test_aggregate_hand_computed() -> None:
    right = 'asssitant: go. Next: caller.</s>caller: Action: f\nAction Input: {"n": 5}'
    no_input = "asssitant: go. Next: caller.</s>caller: Action: g"  # gold {}: a match
    concluded = "asssitant: done. Next: conclusion.</s>conclusion: It is 18 C."
    scores = [
        score_step(CALL_REF, right, ["f", "g"]),
        score_step(EMPTY_REF, no_input, ["f", "g"]),
        score_step(ANSWER_REF, concluded, ["f", "g"]),
        score_step("I stop. Next: give up.", concluded, ["f", "g"]),
    ]
    m = aggregate(scores)
    assert m["plan_acc"] == 75.0 and m["act_em"] == 100.0 and m["hallucination"] == 0.0
    assert m["arg_f1"] == 100.0 and m["arg_f1_easy"] == 100.0 and m["arg_f1_hard"] == 100.0
    assert m["rouge_l"] == pytest.approx(100.0, abs=1e-4)
    assert (m["call_steps"], m["conclusion_steps"], m["giveup_steps"]) == (2, 1, 1)


def test_no_division_by_zero_when_a_list_is_empty() -> None:
    m = aggregate(
        [
            score_step(
                CALL_REF,
                'asssitant: Next: caller.</s>caller: Action: f\nAction Input: {"n": 5}',
                ["f"],
            )
        ]
    )
    assert m["arg_f1_easy"] is None and m["rouge_l"] is None  # the original divides by zero
    assert aggregate([])["plan_acc"] is None
