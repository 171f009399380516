"""PairRanker as a judge: chorus's PairwiseJudge protocol and TRL's pairwise-judge interface.

``PairRMJudge.judge(prompts, completions, shuffle_order=True)`` has the meaning of TRL's
pairwise judges (``BasePairwiseJudge``): for each prompt and its two completions, the index
(0 or 1) of the preferred one — so it can stand where TRL's PairRM judge stood (online DPO,
``WinRateCallback``). ``compare`` implements ``chorus_shared.judges.PairwiseJudge`` so other
packages reach it by spec (``pairrm:<folder>``) without importing this package.
"""

from __future__ import annotations

import random
from pathlib import Path

from chorus_blender.ranker import PairRanker
from chorus_blender.ranking import compare


class PairRMJudge:
    """Pairwise judge backed by a PairRanker (ours or a PairRM checkpoint)."""

    def __init__(self, ranker: PairRanker, *, batch_size: int = 32, seed: int = 0) -> None:
        self.ranker = ranker
        self.batch_size = batch_size
        self._rng = random.Random(seed)

    def compare(
        self, prompts: list[str], answers_a: list[str], answers_b: list[str]
    ) -> list[float]:
        """Return one both-orders logit per item, ``l(A, B) - l(B, A)``; positive when A is
        better."""
        return compare(
            self.ranker,
            prompts,
            answers_a,
            answers_b,
            return_logits=True,
            batch_size=self.batch_size,
        )

    def judge(
        self,
        prompts: list[str],
        completions: list[list[str]],
        shuffle_order: bool = True,
        return_scores: bool = False,
    ) -> list[int] | list[float]:
        """Return the preferred index (0 or 1) per prompt, or P(first is better) with scores.

        As TRL's ``PairRMJudge``: the probability is ``sigmoid(l(A, B) - l(B, A))`` (its
        softmax over the two rank scores), and a tie prefers the first completion.
        ``shuffle_order`` swaps each pair at random before judging and maps the answer back;
        since ``compare`` runs both orders, only a tie's pick depends on it.
        """
        if len(prompts) != len(completions):
            raise ValueError("completions must hold one pair per prompt")
        if any(len(pair) != 2 for pair in completions):
            raise ValueError("each entry of completions must be a pair of two strings")
        swaps = [shuffle_order and self._rng.random() < 0.5 for _ in prompts]
        first = [pair[1] if s else pair[0] for pair, s in zip(completions, swaps, strict=True)]
        second = [pair[0] if s else pair[1] for pair, s in zip(completions, swaps, strict=True)]
        logits = [
            -x if s else x for x, s in zip(self.compare(prompts, first, second), swaps, strict=True)
        ]
        if return_scores:
            import math

            return [1.0 / (1.0 + math.exp(-x)) for x in logits]
        return [0 if x >= 0 else 1 for x in logits]


def load_pairrm_judge(target: str | Path) -> PairRMJudge:
    """Entry point of ``pairrm:<folder or hub id>``: return a judge on that checkpoint."""
    return PairRMJudge(PairRanker.from_pretrained(target))
