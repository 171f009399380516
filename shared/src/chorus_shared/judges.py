"""Pairwise judges by spec, so one package can use another's judge without importing it.

A pairwise judge answers "which of two answers to this prompt is better?" in batches. A paper
package that provides one (packages/blender's PairRanker) declares a Python entry point in the
group ``chorus.pairwise_judges``; any other package loads it by spec::

    judge = load_pairwise_judge("pairrm:runs/blender/ranker")   # scheme "pairrm", target folder
    logits = judge.compare(prompts, answers_a, answers_b)      # > 0: A is better

The scheme before the first ``:`` names the entry point; the rest goes to it unchanged.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

ENTRY_POINT_GROUP = "chorus.pairwise_judges"


@runtime_checkable
class PairwiseJudge(Protocol):
    """Batched pairwise preference: one logit per (prompt, A, B), positive when A is better.

    Implementations run both orders and average, so ``compare(p, a, b) == -compare(p, b, a)``.
    """

    def compare(
        self, prompts: list[str], answers_a: list[str], answers_b: list[str]
    ) -> list[float]: ...


class JudgeSpecError(ValueError):
    """A judge spec whose scheme no installed package provides."""


def available_judge_schemes() -> list[str]:
    """Return the schemes (``pairrm``, ...) that installed packages provide."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def load_pairwise_judge(spec: str) -> PairwiseJudge:
    """Return the judge named by ``<scheme>:<target>`` through its package's entry point.

    Raises ``JudgeSpecError`` naming the installed schemes when none matches.
    """
    scheme, sep, target = spec.partition(":")
    if not sep or not target:
        raise JudgeSpecError(
            f"judge spec {spec!r} must look like '<scheme>:<target>', e.g. 'pairrm:<folder>'"
        )
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            judge = ep.load()(target)
            if not isinstance(judge, PairwiseJudge):
                raise JudgeSpecError(f"entry point {ep.value} did not return a PairwiseJudge")
            return judge
    installed = ", ".join(available_judge_schemes()) or "none (install e.g. chorus-blender)"
    raise JudgeSpecError(
        f"no installed package provides judge scheme {scheme!r}; installed: {installed}"
    )
