"""Every static metric on hand-computed cases."""

from __future__ import annotations

import pytest

from chorus_alpha_umi.dialog import Call, parse_call, parse_route, strip_route
from chorus_alpha_umi.metrics import aggregate, argument_f1, rouge_l, score_step


def test_route_first_marker_wins_and_default_is_caller() -> None:
    assert parse_route("ok. Next: conclusion. later Next: caller.") == ("conclusion", True)
    assert parse_route("Hmm, Next: give up.") == ("give up", True)
    assert parse_route("no marker at all") == ("caller", False)
    assert strip_route("Think. Next: caller.") == "Think."


def test_parse_call_shapes() -> None:
    assert parse_call('Action: f\nAction Input: {"a": 1}') == Call("f", {"a": 1})
    assert parse_call("Action: f\nAction Input: {}") == Call("f", {})
    assert parse_call("Action: f\nAction Input: {bad").arguments is None
    assert parse_call("Action: f\nAction Input: [1]").error.startswith("Action Input is a JSON")
    assert parse_call("just text").api is None
    # A call is data: code in the arguments is never run.
    assert parse_call("Action: f\nAction Input: __import__('os')").arguments is None


G = Call("f", {"a": "1", "b": "x"})


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        (Call("f", {"a": "1", "b": "x"}), 1.0),
        (Call("g", {"a": "1", "b": "x"}), 0.0),  # wrong API
        (Call("f", {"a": "1"}), 2 * 1.0 * 0.5 / 1.5),  # p=1, r=1/2
        (Call("f", {"a": "1", "b": "y"}), 0.75),  # 1 + 0.5 over 2 and 2
        (Call("f", {"a": 1, "b": "x", "c": "z"}), 2 * (2 / 3) * 1.0 / (2 / 3 + 1)),
        (Call("f", {}), 0.0),
        (Call("f", None, "bad json"), 0.0),
    ],
)
def test_argument_f1(pred: Call, expected: float) -> None:
    assert argument_f1(G, pred) == pytest.approx(expected)


def test_argument_f1_empty_arguments() -> None:
    empty = Call("f", {})
    assert argument_f1(empty, Call("f", {})) == 1.0
    assert argument_f1(empty, Call("f", {"a": "1"})) == 0.0
    assert argument_f1(empty, Call("g", {})) == 0.0


def test_rouge_l_hand_computed() -> None:
    # LCS("the cat sat", "the cat ran") = 2 tokens: P = R = F = 2/3.
    assert rouge_l("the cat sat", "the cat ran") == pytest.approx(2 / 3)
    assert rouge_l("a b", "") == 0.0


def _step(route: str, planner: str, **kw: str) -> dict:
    return {"gold_route": route, "tool_names": ["f", "g"], "planner": planner, **kw}


def test_score_and_aggregate_hand_computed() -> None:
    steps = [
        # gold call with arguments, right route, right call.
        _step(
            "caller",
            "x Next: caller.",
            gold_call='Action: f\nAction Input: {"a": "1"}',
            caller='Action: f\nAction Input: {"a": "1"}',
        ),
        # gold call without arguments, planner without marker (defaults to caller), unknown tool.
        _step(
            "caller",
            "no marker",
            gold_call="Action: g\nAction Input: {}",
            caller="Action: nope\nAction Input: {}",
        ),
        # gold conclusion, wrong route, summarizer exact.
        _step(
            "conclusion",
            "x Next: give up.",
            gold_conclusion="it is sunny",
            summarizer="it is sunny",
        ),
        # gold give up, right route.
        _step("give up", "Next: give up."),
    ]
    m = aggregate([score_step(s) for s in steps])
    assert m["plan_acc"] == pytest.approx(75.0)
    assert m["act_em"] == pytest.approx(50.0)
    assert m["hallucination"] == pytest.approx(25.0)  # 1 of all 4 steps
    assert m["arg_f1"] == pytest.approx(50.0)
    assert m["arg_f1_hard"] == pytest.approx(100.0)
    assert m["arg_f1_easy"] == pytest.approx(0.0)
    assert m["rouge_l"] == pytest.approx(100.0)
    assert (m["call_steps"], m["conclusion_steps"], m["giveup_steps"]) == (2, 1, 1)
    assert m["planner_without_marker"] == 1


def test_no_division_by_zero_when_a_split_is_empty() -> None:
    only_hard = [
        _step(
            "caller",
            "Next: caller.",
            gold_call='Action: f\nAction Input: {"a": 1}',
            caller="garbage",
        )
    ]
    m = aggregate([score_step(s) for s in only_hard])
    assert m["arg_f1_easy"] is None and m["rouge_l"] is None
    assert m["arg_f1_hard"] == 0.0 and m["unparseable_calls"] == 1
    assert aggregate([])["plan_acc"] is None


def test_malformed_arguments_and_unknown_tool_are_counted_as_wrong() -> None:
    steps = [
        # right API, malformed JSON arguments: Act EM counts the name, Arg F1 is 0, counted.
        _step(
            "caller",
            "Next: caller.",
            gold_call='Action: f\nAction Input: {"a": "1"}',
            caller='Action: f\nAction Input: {"a": "1"',
        ),
        # a tool that is not in the list: hallucinated, wrong API, Arg F1 0.
        _step(
            "caller",
            "Next: caller.",
            gold_call="Action: g\nAction Input: {}",
            caller="Action: made_up\nAction Input: {}",
        ),
    ]
    m = aggregate([score_step(s) for s in steps])
    assert m["act_em"] == pytest.approx(50.0)
    assert m["arg_f1"] == pytest.approx(0.0)
    assert m["hallucination"] == pytest.approx(50.0)
    assert m["unparseable_calls"] == 1
