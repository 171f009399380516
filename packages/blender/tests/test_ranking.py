"""Aggregations on hand-built matrices and on a scorer with a known total order."""

from __future__ import annotations

import numpy as np
import pytest

from chorus_blender.ranking import (
    compare,
    compare_matrix,
    get_topk_candidates_from_ranks,
    pick_reference,
    rank,
    rank_with_ref,
    ranks_from_scores,
    scores_from_matrix,
)

QUALITY = {"a": 0.1, "b": 2.0, "c": -1.0, "d": 1.5, "e": 0.7}


def test_max_logits_is_the_originals_mean_over_all_n_columns(order_scorer):
    m = np.array([[0.0, 2.0, -1.0], [1.0, 0.0, 0.5], [3.0, -2.0, 0.0]])
    # The original (gpt_eval/utils.get_scores_from_cmps): (M - M.T).mean(-1), i.e. the sum
    # over the two opponents divided by n = 3 (the zero diagonal counts), not by n - 1.
    expected = [((2 - 1) + (-1 - 3)) / 3, ((1 - 2) + (0.5 + 2)) / 3, ((3 + 1) + (-2 - 0.5)) / 3]
    assert scores_from_matrix(m, "max_logits").tolist() == pytest.approx(expected)
    scorer = order_scorer(QUALITY)
    scores = rank(scorer, ["x"], [["a", "b", "c"]], return_scores=True)[0]
    # OrderScorer: M[j,k] = q_j - q_k, so score_j = 2 * sum_k (q_j - q_k) / 3.
    q = [QUALITY[c] for c in "abc"]
    assert scores == pytest.approx([2 * sum(qj - qk for qk in q) / 3 for qj in q])


def test_max_wins_a_zero_logit_is_no_win(order_scorer):
    m = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, -0.5], [3.0, -2.0, 0.0]])
    # candidate 0: wins (0,1) [2>0]; (0,2)=0 no win; as B: (1,0)=1>0 lost; (2,0)=3>0 lost -> 1
    # candidate 1: (1,0) won; (1,2) lost; as B: (0,1)=2 lost; (2,1)=-2<0 won -> 2
    # candidate 2: (2,0) won; (2,1) lost; as B: (0,2)=0 no win; (1,2)=-0.5<0 won -> 2
    assert scores_from_matrix(m, "max_wins").tolist() == [1.0, 2.0, 2.0]


def test_tied_scores_share_the_best_rank_as_in_the_original(order_scorer):
    assert ranks_from_scores(np.array([1.0, 3.0, 1.0, -2.0])) == [2, 1, 2, 4]
    assert ranks_from_scores([5.0, 5.0, 5.0]) == [1, 1, 1]


def test_bubble_tie_goes_to_the_challenger(order_scorer):
    from chorus_blender.ranking import bubble_best

    # Every logit is 0: the original's _bubble_predict keeps the challenger on a tie
    # (preds + preds_inv <= 0), so the last candidate of the visiting order wins.
    scorer = order_scorer(dict.fromkeys("abcd", 0.0))
    import random

    for seed in range(4):
        order = random.Random(seed).sample(range(4), 4)
        assert bubble_best(scorer, ["x"], [list("abcd")], seed=seed) == [order[-1]]


def test_full_and_bubble_agree_on_the_best_of_a_known_order(order_scorer):
    scorer = order_scorer(QUALITY, bias=0.3)
    cands = [["a", "b", "c", "d", "e"], ["c", "e", "a"], ["d", "c"]]
    inputs = ["x", "y", "z"]
    for aggregation in ("max_logits", "max_wins"):
        ranks = rank(scorer, inputs, cands, aggregation=aggregation)
        assert [r.index(1) for r in ranks] == [1, 1, 0]
        assert ranks[0] == [4, 1, 5, 2, 3]  # the whole known order, not only the best
    for seed in range(5):
        bubble = rank(scorer, inputs, cands, aggregation="bubble", seed=seed)
        assert [r.index(1) for r in bubble] == [1, 1, 0]


def test_full_sends_all_pairs_of_all_inputs_in_one_pass(order_scorer):
    scorer = order_scorer(QUALITY)
    compare_matrix(scorer, ["x", "y"], [["a", "b", "c"], ["d", "e"]])
    assert scorer.calls == [3 * 2 + 2 * 1]


def test_compare_is_antisymmetric_and_cancels_position_bias(order_scorer):
    scorer = order_scorer(QUALITY, bias=5.0)  # bias alone would make A win every time
    ab = compare(scorer, ["x", "y"], ["a", "c"], ["b", "e"], return_logits=True)
    ba = compare(scorer, ["x", "y"], ["b", "e"], ["a", "c"], return_logits=True)
    assert ab == pytest.approx([-x for x in ba])
    # The original's "[A,B]+[B,A]" logit: l(A,B) - l(B,A), not halved.
    qa, qb = QUALITY["a"], QUALITY["b"]
    assert ab[0] == pytest.approx((qa - qb + 5.0) - (qb - qa + 5.0))
    assert compare(scorer, ["x", "y"], ["a", "c"], ["b", "e"]) == [False, False]


def test_rank_with_ref_modes(order_scorer):
    cands = ["aa", "b", "cccc", "ddd"]
    assert pick_reference(cands, "longest") == "cccc"
    assert pick_reference(cands, "shortest") == "b"
    # The original: sorted(by length)[n // 2] -> lengths 1, 2, 3, 4 -> the third.
    assert pick_reference(cands, "median_length") == "ddd"
    assert pick_reference(cands, "first") == "aa" and pick_reference(cands, "last") == "ddd"
    # Equal lengths: the first of them (max/min by length), as the original.
    assert pick_reference(["xy", "ab", "c"], "longest") == "xy"
    assert pick_reference(["x", "ab", "c"], "shortest") == "x"
    with pytest.raises(ValueError, match="unknown ref_mode"):
        pick_reference(cands, "best")
    scorer = order_scorer(QUALITY, bias=0.4)
    rewards = rank_with_ref(
        scorer, ["x"], [["a", "b", "c"]], ref_candidates=["d"], return_scores=True
    )
    # reward = l(c, ref) - l(ref, c) = 2 (q_c - q_ref); the position bias cancels.
    assert rewards[0] == pytest.approx([2 * (0.1 - 1.5), 2 * (2.0 - 1.5), 2 * (-1.0 - 1.5)])
    # Without return_scores: ranks, as the original's default.
    assert rank_with_ref(scorer, ["x"], [["a", "b", "c"]], ref_candidates=["d"]) == [[2, 1, 3]]


def test_topk_from_ranks(order_scorer):
    assert get_topk_candidates_from_ranks([[3, 1, 2]], [["x", "y", "z"]], top_k=2) == [["y", "z"]]


@pytest.mark.parametrize(
    "cands, message",
    [([[]], "non-empty"), (["abc"], "non-empty list"), ([["a", 3]], "must be a string")],
)
def test_bad_candidate_lists_get_one_clear_error(cands, message, order_scorer):
    with pytest.raises(ValueError, match=message):
        rank(order_scorer(QUALITY), ["x"], cands)


def test_single_candidate_ranks_first(order_scorer):
    assert rank(order_scorer(QUALITY), ["x"], [["a"]]) == [[1]]
