"""Ranking with a PairRanker: compare, full and bubble aggregation, rewards against a reference.

Names and meanings follow the original package's API: ``rank`` returns ranks (1 = best),
``compare`` returns whether A beats B (or the logit), ``rank_with_ref`` returns a reward per
candidate (its logit against a reference), ``get_topk_candidates_from_ranks`` keeps the top k.

Every function collects all the (source, A, B) triples it needs for all inputs first and sends
them through :meth:`PairRanker.pair_logits` in one batched pass (``bubble`` needs n - 1 passes,
one per tournament step, each over all inputs), never one (i, j) pair at a time.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, Literal, Protocol, overload

import numpy as np

Aggregation = Literal["max_logits", "max_wins", "bubble"]
REF_MODES = ("longest", "shortest", "median_length", "first", "last")


class PairScorer(Protocol):
    """What ranking needs from a model: one logit per (source, A, B) triple, A better if > 0.

    The keyword arguments are PairRanker's batching options; ``**batching`` of the functions
    below is passed through to them.
    """

    def pair_logits(
        self,
        sources: Sequence[str],
        cands1: Sequence[str],
        cands2: Sequence[str],
        *,
        batch_size: int = ...,
        max_batch_tokens: int = ...,
        precision: str = ...,
    ) -> list[float]: ...


def _check_candidates(inputs: Sequence[str], candidates: Sequence[Sequence[str]]) -> None:
    if len(inputs) != len(candidates):
        raise ValueError(
            f"{len(inputs)} inputs but {len(candidates)} candidate lists: give one list per input"
        )
    for i, cands in enumerate(candidates):
        if isinstance(cands, str) or len(cands) == 0:
            raise ValueError(f"input {i}: candidates must be a non-empty list of strings")
        if not all(isinstance(c, str) for c in cands):
            raise ValueError(f"input {i}: every candidate must be a string")


def _sources(inputs: Sequence[str], instructions: Sequence[str] | None) -> list[str]:
    # The original prepends the instruction to the input with no separator (RankerDataset).
    if instructions is None:
        return list(inputs)
    if len(instructions) != len(inputs):
        raise ValueError("instructions must have one entry per input")
    return [ins + inp for ins, inp in zip(instructions, inputs, strict=True)]


def compare_matrix(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    **batching: Any,
) -> list[np.ndarray]:
    """Return, per input, the n x n matrix ``M[j, k]`` = logit of candidate j (as A) vs k (as B).

    The diagonal is 0. All n(n-1) ordered pairs of all inputs go through one batched pass.
    """
    _check_candidates(inputs, candidates)
    src, a, b, where = [], [], [], []
    for i, (source, cands) in enumerate(zip(inputs, candidates, strict=True)):
        for j in range(len(cands)):
            for k in range(len(cands)):
                if j != k:
                    src.append(source)
                    a.append(cands[j])
                    b.append(cands[k])
                    where.append((i, j, k))
    logits = scorer.pair_logits(src, a, b, **batching) if src else []
    matrices = [np.zeros((len(c), len(c))) for c in candidates]
    for (i, j, k), value in zip(where, logits, strict=True):
        matrices[i][j, k] = value
    return matrices


def scores_from_matrix(matrix: np.ndarray, aggregation: Aggregation = "max_logits") -> np.ndarray:
    """Return one score per candidate from a comparison matrix (higher = better).

    As the original (``gpt_eval/utils.py``): ``max_logits`` = mean over all n columns
    (the zero diagonal included) of ``M[j, k] - M[k, j]``; ``max_wins`` = the number of games
    j won: game (j, k) when ``M[j, k] > 0`` and game (k, j) when ``M[k, j] < 0``. A logit of
    exactly 0 is no win for either side.
    """
    n = matrix.shape[0]
    if aggregation == "max_logits":
        return (matrix - matrix.T).mean(axis=1)
    if aggregation == "max_wins":
        return ((matrix > 0).sum(axis=1) + (matrix < 0).sum(axis=0)).astype(float)
    raise ValueError(
        f"unknown aggregation {aggregation!r} for {n} candidates; use max_logits or max_wins"
    )


def ranks_from_scores(scores: Sequence[float] | np.ndarray) -> list[int]:
    """Return ranks (1 = best) for scores, as the original: tied candidates share the best
    rank of their group (scores 3, 5, 5, 1 -> ranks 3, 1, 1, 4)."""
    values = [float(x) for x in scores]
    ordered = sorted(values, reverse=True)
    return [ordered.index(v) + 1 for v in values]


def bubble_best(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    worst: bool = False,
    **batching: Any,
) -> list[int]:
    """Return the index of the best (``worst``: the worst) candidate per input by one bubble
    pass (n - 1 comparisons).

    Candidates are visited in a seeded random order; each comparison runs both orders and the
    challenger replaces the champion when ``logit(champion, challenger) - logit(challenger,
    champion) <= 0``: a tie goes to the challenger, as in the original's ``_bubble_predict``.
    Each tournament step is one batched pass over every input still playing.
    """
    _check_candidates(inputs, candidates)
    rng = random.Random(seed)
    orders = [rng.sample(range(len(c)), len(c)) for c in candidates]
    best = [order[0] for order in orders]
    for step in range(1, max(len(c) for c in candidates)):
        playing = [i for i, order in enumerate(orders) if step < len(order)]
        src, a, b = [], [], []
        for i in playing:
            champ, challenger = candidates[i][best[i]], candidates[i][orders[i][step]]
            src += [inputs[i], inputs[i]]
            a += [champ, challenger]
            b += [challenger, champ]
        logits = scorer.pair_logits(src, a, b, **batching)
        for n, i in enumerate(playing):
            margin = logits[2 * n] - logits[2 * n + 1]
            # A tie goes to the challenger in both directions, as the original's permutation.
            if (margin >= 0) if worst else (margin <= 0):
                best[i] = orders[i][step]
    return best


@overload
def rank(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    aggregation: Aggregation = ...,
    return_scores: Literal[False] = False,
    seed: int = ...,
    **batching: Any,
) -> list[list[int]]: ...


@overload
def rank(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    aggregation: Aggregation = ...,
    return_scores: Literal[True],
    seed: int = ...,
    **batching: Any,
) -> list[list[float]]: ...


def rank(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    aggregation: Aggregation = "max_logits",
    return_scores: bool = False,
    seed: int = 0,
    **batching: Any,
) -> list[list[int]] | list[list[float]]:
    """Return ranks (1 = best) per input, or scores with ``return_scores``.

    ``bubble`` finds the best only: it gets rank 1 (score 1.0) and every other candidate rank 2
    (score 0.0).
    """
    sources = _sources(inputs, instructions)
    if aggregation == "bubble":
        best = bubble_best(scorer, sources, candidates, seed=seed, **batching)
        if return_scores:
            return [
                [1.0 if j == b else 0.0 for j in range(len(c))]
                for b, c in zip(best, candidates, strict=True)
            ]
        return [
            [1 if j == b else 2 for j in range(len(c))]
            for b, c in zip(best, candidates, strict=True)
        ]
    matrices = compare_matrix(scorer, sources, candidates, **batching)
    scores = [scores_from_matrix(m, aggregation) for m in matrices]
    if return_scores:
        return [[float(x) for x in s] for s in scores]
    return [ranks_from_scores(s) for s in scores]


@overload
def compare(
    scorer: PairScorer,
    inputs: Sequence[str],
    cands_a: Sequence[str],
    cands_b: Sequence[str],
    instructions: Sequence[str] | None = None,
    *,
    return_logits: Literal[False] = False,
    **batching: Any,
) -> list[bool]: ...


@overload
def compare(
    scorer: PairScorer,
    inputs: Sequence[str],
    cands_a: Sequence[str],
    cands_b: Sequence[str],
    instructions: Sequence[str] | None = None,
    *,
    return_logits: Literal[True],
    **batching: Any,
) -> list[float]: ...


def compare(
    scorer: PairScorer,
    inputs: Sequence[str],
    cands_a: Sequence[str],
    cands_b: Sequence[str],
    instructions: Sequence[str] | None = None,
    *,
    return_logits: bool = False,
    **batching: Any,
) -> list[bool] | list[float]:
    """Return whether A beats B per input (or the logit), from both orders.

    The logit is ``logit(A, B) - logit(B, A)``, as the original's "[A,B]+[B,A]" mode returns
    it, so ``compare(a, b) == -compare(b, a)``.
    """
    if not len(inputs) == len(cands_a) == len(cands_b):
        raise ValueError("inputs, cands_a and cands_b must have the same length")
    sources = _sources(inputs, instructions)
    logits = scorer.pair_logits(
        [*sources, *sources], [*cands_a, *cands_b], [*cands_b, *cands_a], **batching
    )
    n = len(sources)
    both = [logits[i] - logits[n + i] for i in range(n)]
    return both if return_logits else [x > 0 for x in both]


def pick_reference(cands: Sequence[str], mode: str) -> str:
    """Return the reference that ``mode`` picks from ``cands``, as the original: ``longest``
    and ``shortest`` the first of equal lengths, ``median_length`` ``sorted(by length)[n // 2]``."""
    if mode not in REF_MODES:
        raise ValueError(f"unknown ref_mode {mode!r}; use one of {', '.join(REF_MODES)}")
    if mode == "first":
        return cands[0]
    if mode == "last":
        return cands[-1]
    if mode == "shortest":
        return min(cands, key=len)
    if mode == "longest":
        return max(cands, key=len)
    return sorted(cands, key=len)[len(cands) // 2]


@overload
def rank_with_ref(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    return_scores: Literal[False] = False,
    ref_mode: str = ...,
    ref_candidates: Sequence[str] | None = ...,
    **batching: Any,
) -> list[list[int]]: ...


@overload
def rank_with_ref(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    return_scores: Literal[True],
    ref_mode: str = ...,
    ref_candidates: Sequence[str] | None = ...,
    **batching: Any,
) -> list[list[float]]: ...


def rank_with_ref(
    scorer: PairScorer,
    inputs: Sequence[str],
    candidates: Sequence[Sequence[str]],
    instructions: Sequence[str] | None = None,
    *,
    return_scores: bool = False,
    ref_mode: str = "longest",
    ref_candidates: Sequence[str] | None = None,
    **batching: Any,
) -> list[list[int]] | list[list[float]]:
    """Return ranks (1 = best) per input, or with ``return_scores`` a reward per candidate:
    ``logit(c, ref) - logit(ref, c)``, its both-orders logit against a reference answer.

    The reference is ``ref_candidates[i]`` when given, else chosen from the candidates by
    ``ref_mode`` (:func:`pick_reference`). Rewards are what RLHF/DPO pipelines use as scalar
    preferences.
    """
    _check_candidates(inputs, candidates)
    if ref_candidates is not None and len(ref_candidates) != len(inputs):
        raise ValueError("ref_candidates must have one reference per input")
    refs = (
        list(ref_candidates)
        if ref_candidates is not None
        else [pick_reference(c, ref_mode) for c in candidates]
    )
    flat_in, flat_c, flat_r = [], [], []
    for source, cands, ref in zip(_sources(inputs, instructions), candidates, refs, strict=True):
        flat_in += [source] * len(cands)
        flat_c += list(cands)
        flat_r += [ref] * len(cands)
    logits = compare(scorer, flat_in, flat_c, flat_r, return_logits=True, **batching)
    scores, start = [], 0
    for cands in candidates:
        scores.append([float(x) for x in logits[start : start + len(cands)]])
        start += len(cands)
    if return_scores:
        return scores
    return [ranks_from_scores(s) for s in scores]


def get_topk_candidates_from_ranks(
    ranks: Sequence[Sequence[int]], candidates: Sequence[Sequence[str]], top_k: int = 3
) -> list[list[str]]:
    """Return the ``top_k`` best candidates per input, best first."""
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    out = []
    for r, cands in zip(ranks, candidates, strict=True):
        order = sorted(range(len(cands)), key=lambda j: (r[j], j))
        out.append([cands[j] for j in order[:top_k]])
    return out
