"""Best-of-n: sample n answers per prompt with any chat model, keep the one the ranker ranks first.

All n x prompts samples come from one batched ``chat`` call (request k uses ``seed + k`` on API
and vLLM backends, so the n samples differ), and all their pairs from one ranking pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chorus_blender.ranking import Aggregation, PairScorer, rank
from chorus_shared.models import ChatModel, Message, SamplingParams


@dataclass
class BestOfN:
    """The chosen answer of one prompt, with every sample and its rank (1 = best)."""

    best: str
    samples: list[str]
    ranks: list[int]
    errors: int


def best_of_n_generate(
    model: ChatModel,
    ranker: PairScorer,
    prompts: Sequence[str],
    n: int = 4,
    params: SamplingParams | None = None,
    *,
    aggregation: Aggregation = "max_logits",
) -> list[BestOfN]:
    """Return, per prompt, the best of ``n`` sampled answers (errored samples are not ranked)."""
    if n < 1:
        raise ValueError("n must be >= 1")
    params = params or SamplingParams(max_new_tokens=256, temperature=1.0)
    if n > 1 and params.greedy:
        raise ValueError("best-of-n with n > 1 needs sampling: set temperature > 0")
    conversations: list[list[Message]] = [
        [{"role": "user", "content": p}] for p in prompts for _ in range(n)
    ]
    completions = model.chat(conversations, params)
    samples, errors = [], []
    for i in range(len(prompts)):
        batch = completions[i * n : (i + 1) * n]
        ok = [c.text for c in batch if c.error is None]
        samples.append(ok)
        errors.append(n - len(ok))
    rankable = [i for i, s in enumerate(samples) if s]
    ranks_of = (
        dict(
            zip(
                rankable,
                rank(
                    ranker,
                    [prompts[i] for i in rankable],
                    [samples[i] for i in rankable],
                    aggregation=aggregation,
                ),
                strict=True,
            )
        )
        if rankable
        else {}
    )
    out = []
    for i in range(len(prompts)):
        r = ranks_of.get(i, [])
        best = samples[i][r.index(1)] if r else ""
        out.append(BestOfN(best=best, samples=samples[i], ranks=list(r), errors=errors[i]))
    return out
