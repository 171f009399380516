"""The PairRanker as a pairwise judge: TRL-style ``judge`` and chorus's protocol by spec."""

from __future__ import annotations

import pytest

from chorus_blender.judge import PairRMJudge
from chorus_blender.ranker import PairRanker
from chorus_shared.judges import JudgeSpecError, PairwiseJudge, load_pairwise_judge


def test_judge_returns_the_preferred_index_whatever_the_shuffle(order_scorer):
    judge = PairRMJudge(order_scorer({"good": 2.0, "bad": -1.0}, bias=3.0))  # type: ignore[arg-type]
    pairs = [["good", "bad"], ["bad", "good"]] * 5
    assert judge.judge(["p"] * 10, pairs, shuffle_order=True) == [0, 1] * 5
    assert judge.judge(["p"] * 10, pairs, shuffle_order=False) == [0, 1] * 5
    scores = judge.judge(["p"] * 2, pairs[:2], return_scores=True)
    assert scores[0] > 0.5 > scores[1]
    with pytest.raises(ValueError, match="pair of two"):
        judge.judge(["p"], [["a", "b", "c"]])


def test_loaded_by_spec_through_the_entry_point(tiny_bert, tmp_path):
    folder = PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path / "ranker")
    judge = load_pairwise_judge(f"pairrm:{folder}")
    assert isinstance(judge, PairwiseJudge)
    ab = judge.compare(["q", "r"], ["yes", "a long answer"], ["no", "short"])
    ba = judge.compare(["q", "r"], ["no", "short"], ["yes", "a long answer"])
    assert ab == pytest.approx([-x for x in ba], abs=1e-5)


def test_unknown_scheme_lists_installed_ones():
    with pytest.raises(JudgeSpecError, match=r"installed: .*pairrm"):
        load_pairwise_judge("nosuch:thing")
