"""The methods of the paper's tables as (agents, rounds, feedback) plans."""

from __future__ import annotations

import pytest

from chorus_debate.methods import METHODS, MethodPlan, plan_method


@pytest.mark.parametrize(
    ("method", "agents", "rounds", "expected"),
    [
        ("single", 3, 2, MethodPlan("single", 1, 1, "none")),
        ("single", 1, 5, MethodPlan("single", 1, 1, "none")),
        ("reflection", 3, 2, MethodPlan("reflection", 1, 2, "self")),
        ("reflection", 1, 4, MethodPlan("reflection", 1, 4, "self")),
        ("majority", 3, 2, MethodPlan("majority", 3, 1, "none")),
        ("majority", 7, 1, MethodPlan("majority", 7, 1, "none")),
        ("debate", 3, 2, MethodPlan("debate", 3, 2, "others")),
        ("debate", 5, 3, MethodPlan("debate", 5, 3, "others")),
        # One agent has nobody to debate with: it can only look at its own answer.
        ("debate", 1, 2, MethodPlan("debate", 1, 2, "self")),
    ],
)
def test_plan_table(method: str, agents: int, rounds: int, expected: MethodPlan) -> None:
    assert plan_method(method, agents, rounds) == expected


def test_every_method_has_a_plan() -> None:
    assert set(METHODS) == {"single", "reflection", "majority", "debate"}
    for method in METHODS:
        assert plan_method(method, 2, 2).method == method


def test_unknown_method_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError) as err:
        plan_method("vote", 3, 2)
    for method in METHODS:
        assert method in str(err.value)


@pytest.mark.parametrize(("agents", "rounds"), [(0, 2), (-1, 2), (3, 0)])
def test_agents_and_rounds_must_be_positive(agents: int, rounds: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        plan_method("debate", agents, rounds)
