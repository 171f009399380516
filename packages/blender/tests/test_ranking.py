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


def test_max_logits_matches_definition_on_a_hand_built_matrix(order_scorer):
    m = np.array([[0.0, 2.0, -1.0], [1.0, 0.0, 0.5], [3.0, -2.0, 0.0]])
    # score_j = mean_k (M[j,k] - M[k,j]) over the two opponents
    expected = [((2 - 1) + (-1 - 3)) / 2, ((1 - 2) + (0.5 + 2)) / 2, ((3 + 1) + (-2 - 0.5)) / 2]
    assert scores_from_matrix(m, "max_logits").tolist() == pytest.approx(expected)


def test_max_wins_counts_both_orders_and_half_wins_on_ties(order_scorer):
    m = np.array([[0.0, 2.0, 0.0], [1.0, 0.0, -0.5], [3.0, -2.0, 0.0]])
    # candidate 0: wins (0,1) [2>0]; tie (0,2) -> 0.5; as B: (1,0)=1>0 lost; (2,0)=3>0 lost -> 1.5
    # candidate 1: (1,0) won; (1,2) lost; as B: (0,1)=2 lost; (2,1)=-2<0 won -> 2
    # candidate 2: (2,0) won; (2,1) lost; as B: (0,2)=0 tie 0.5; (1,2)=-0.5<0 won -> 2.5
    assert scores_from_matrix(m, "max_wins").tolist() == [1.5, 2.0, 2.5]


def test_ranks_break_ties_by_position(order_scorer):
    assert ranks_from_scores(np.array([1.0, 3.0, 1.0, -2.0])) == [2, 1, 3, 4]


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
    assert compare(scorer, ["x", "y"], ["a", "c"], ["b", "e"]) == [False, False]


def test_rank_with_ref_modes(order_scorer):
    cands = ["aa", "b", "cccc", "ddd"]
    assert pick_reference(cands, "longest") == "cccc"
    assert pick_reference(cands, "shortest") == "b"
    assert pick_reference(cands, "median_length") == "aa"
    assert pick_reference(cands, "first") == "aa" and pick_reference(cands, "last") == "ddd"
    with pytest.raises(ValueError, match="unknown ref_mode"):
        pick_reference(cands, "best")
    scorer = order_scorer(QUALITY)
    rewards = rank_with_ref(scorer, ["x"], [["a", "b", "c"]], ref_candidates=["d"])
    assert rewards[0] == pytest.approx([0.1 - 1.5, 2.0 - 1.5, -1.0 - 1.5])


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
