"""Issue 22, point 7: the original ``Blender`` API (names, arguments, return shapes)."""

from __future__ import annotations

import numpy as np
import pytest

from chorus_blender import Blender
from chorus_blender.blender import CONVERSATION_INSTRUCTION
from chorus_blender.fuser import genfuser_input

QUALITY = {"a": 0.1, "b": 2.0, "c": -1.0, "d": 1.5}


@pytest.fixture
def blender(order_scorer) -> Blender:
    b = Blender()
    b.ranker = order_scorer(QUALITY, bias=0.3)  # any PairScorer stands in for a PairRanker
    return b


def test_rank_and_compare_return_the_originals_shapes(blender):
    ranks = blender.rank(["x", "y"], [["a", "b", "c"], ["d", "a", "c"]])
    assert isinstance(ranks, np.ndarray) and ranks.dtype == np.int32
    assert ranks.tolist() == [[2, 1, 3], [1, 2, 3]]
    scores = blender.rank(["x"], [["a", "b"]], return_scores=True)
    assert scores.shape == (1, 2) and scores[0, 1] > scores[0, 0]
    assert blender.compare(["x", "x"], ["a", "b"], ["b", "c"]).tolist() == [False, True]
    both = blender.compare(["x"], ["a"], ["b"], return_logits=True)
    one = blender.compare(["x"], ["a"], ["b"], return_logits=True, mode="[A,B]")
    assert both[0] == pytest.approx(2 * (0.1 - 2.0)) and one[0] == pytest.approx(0.1 - 2.0 + 0.3)
    with pytest.raises(ValueError, match="mode must be one of"):
        blender.compare(["x"], ["a"], ["b"], mode="A")


def test_rank_with_ref_and_best_and_worst_of_n(blender):
    assert blender.rank_with_ref(["x"], [["a", "b", "c"]], ref_candidates=["d"]).tolist() == [
        [2, 1, 3]
    ]
    for kind in ("bubble", "full"):
        assert blender.get_best_of_n(["x"], [["a", "b", "c"]], pairrm_cmp_type=kind) == ["b"]
        assert blender.get_worst_of_n(["x"], [["a", "b", "c"]], pairrm_cmp_type=kind) == ["c"]
    assert blender.get_best_of_n(["x"], [["a", "b", "c"]], return_all=True) == [["b", "a", "c"]]
    assert blender.get_worst_of_n(["x"], [["a", "b", "c"]], return_all=True) == [["c", "a", "b"]]
    assert blender.get_best_of_n(["x"], [["only"]]) == ["only"]


def test_compare_conversations_builds_the_originals_texts(blender):
    seen = {}

    def spy(sources, cands1, cands2, **_):
        seen.update(sources=sources, a=cands1, b=cands2)
        return [0.0] * len(sources)

    blender.ranker.pair_logits = spy
    conv_a = [{"role": "USER", "content": "hi"}, {"role": "ASSISTANT", "content": "hello"}]
    conv_b = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    blender.compare_conversations([conv_a], [conv_b])
    assert seen["sources"][0] == CONVERSATION_INSTRUCTION + "USER: hi\nAssistant: <Response 1>"
    assert seen["a"][0] == "<Response 1>: hello" and seen["b"][0] == "<Response 1>: hey"
    with pytest.raises(ValueError, match="same USER turns"):
        other = [{"role": "user", "content": "bye"}, conv_b[1]]
        blender.compare_conversations([conv_a], [other])


def test_rank_and_fuse_and_n_generate(blender, fake_chat_model):
    fuser = fake_chat_model(lambda conversation: "fused")
    blender.fuser = fuser
    fused, ranks = blender.rank_and_fuse(["x"], [["a", "b", "c", "d"]], top_k=2)
    assert fused == ["fused"] and ranks.tolist() == [[3, 1, 4, 2]]
    # The fuser saw the original GenFuser input of the top 2 (best first).
    assert fuser.calls[0][0][-1]["content"] == genfuser_input("", ["b", "d"], input_text="x")
    sampler = fake_chat_model(lambda conversation: conversation[-1]["content"].upper())
    samples = blender.n_generate(sampler, None, ["p", "q"], instructions=["I", "J"], n=3)
    assert samples == [["I\nP"] * 3, ["J\nQ"] * 3]
    assert sampler.params[0].temperature == 0.7 and sampler.params[0].top_p == 1.0
    assert Blender().rank.__name__ == "rank"
    with pytest.raises(RuntimeError, match="loadranker"):
        Blender().rank(["x"], [["a"]])
