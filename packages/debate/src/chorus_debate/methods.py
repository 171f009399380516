"""The methods compared in the paper's tables, as settings of one engine.

| method     | agents | rounds | what a later round shows an agent              |
|------------|--------|--------|------------------------------------------------|
| single     | 1      | 1      | (no later round)                               |
| reflection | 1      | R      | its own last answer, asked to double-check it  |
| majority   | N      | 1      | (no later round; final = majority of N)        |
| debate     | N      | R      | the other agents' answers, or their summary    |
"""

from __future__ import annotations

from dataclasses import dataclass

METHODS = ("single", "reflection", "majority", "debate")


@dataclass(frozen=True)
class MethodPlan:
    """How many agents and rounds a method runs, and what later rounds feed back."""

    method: str
    agents: int
    rounds: int
    feedback: str  # "none" | "self" | "others"


def plan_method(method: str, agents: int, rounds: int) -> MethodPlan:
    """Return the agents/rounds/feedback plan of ``method`` given the recipe's numbers.

    single and majority ignore ``rounds``; single and reflection ignore ``agents``.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if agents < 1 or rounds < 1:
        raise ValueError(f"agents and rounds must be >= 1, got agents={agents} rounds={rounds}")
    if method == "single":
        return MethodPlan(method, 1, 1, "none")
    if method == "majority":
        return MethodPlan(method, agents, 1, "none")
    if method == "reflection":
        return MethodPlan(method, 1, rounds, "self")
    return MethodPlan(method, agents, rounds, "others" if agents > 1 else "self")
