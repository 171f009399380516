"""GPT-Rank: verdict parsing, counting rules and ranks on hand-computed judge scripts."""

from __future__ import annotations

import pytest

from chorus_blender.gpt_rank import (
    best_shared_ranks,
    fractional_ranks,
    gpt_rank,
    parse_verdict,
    ranks_from_cmp_results,
)
from chorus_shared.models import Completion


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("A", "A"),
        ("B.", "B"),
        ("**B**", "B"),
        ("(A)", "A"),
        ("Tie", "tie"),
        ("Verdict: tie", "tie"),
        ("Response A is better because ...", "A"),
        ("The answer B", "B"),
        ("B wins.", "B"),
        ("A\nbecause it is longer", "A"),
        ("A/B", None),
        ("Both are fine", None),
        ("A good answer would be ...", None),
        ("a", None),
        ("As an AI, I cannot judge", None),
        ("", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_ties_share_the_best_rank_as_in_the_original():
    # gpt_eval/utils.get_ranks_from_scores: sorted(scores, reverse=True).index(s) + 1
    assert best_shared_ranks([3.0, 5.0, 5.0, 1.0]) == [3.0, 1.0, 1.0, 4.0]
    assert best_shared_ranks([2.0, 2.0, 2.0]) == [1.0, 1.0, 1.0]


def test_gpt_rank_rebuilt_from_mixinstructs_released_labels():
    models = ["oasst", "vicuna", "alpaca"]
    cmp_results = {
        "oasst,vicuna": "A is better",
        "oasst,alpaca": "Same good",  # moves both cells alike: no win
        "vicuna,alpaca": "B is better",
    }
    # scores: oasst 2, vicuna -4, alpaca 2 -> oasst and alpaca share rank 1
    assert ranks_from_cmp_results(models, cmp_results) == [1.0, 3.0, 1.0]
    with pytest.raises(ValueError, match="unknown cmp_results label"):
        ranks_from_cmp_results(models, {"oasst,vicuna": "A wins"})


def test_fractional_ranks_share_ties():
    assert fractional_ranks([3.0, 1.0, 3.0, 0.0]) == [1.5, 3.0, 1.5, 4.0]
    assert fractional_ranks([2.0, 2.0, 2.0]) == [2.0, 2.0, 2.0]


def _between(conversation):
    """Return (instruction, text A, text B) of a judge conversation."""
    body = conversation[-1]["content"]
    instruction = body.split("Instruction:\n", 1)[1].split("\n\nResponse A:\n", 1)[0]
    a = body.split("Response A:\n", 1)[1].split("\n\nResponse B:\n", 1)[0]
    b = body.split("Response B:\n", 1)[1].split("\n\nWhich response", 1)[0]
    return instruction, a, b


# Item "script": every ordered pair's reply written out by hand.
SCRIPT = {
    ("p", "q"): "A",  # p +1
    ("q", "p"): "I would rather not say",  # unparseable: no point to anyone
    ("p", "r"): "Response B",  # r +1
    ("r", "p"): "A",  # r +1
    ("q", "r"): "tie",  # q +0.5, r +0.5
    ("r", "q"): "A.",  # r +1
}


def _reply(conversation):
    instruction, a, b = _between(conversation)
    if instruction == "longer wins":
        return "A" if len(a) > len(b) else "B"
    if instruction == "always first":
        return "A"  # pure position bias: both orders cancel
    if instruction == "script":
        return SCRIPT[(a, b)]
    if instruction == "errors":
        return Completion(text="", finish_reason="error", error="backend down")
    return "no idea"


def test_ranks_from_pairwise_wins_in_one_batched_call(fake_chat_model):
    judge = fake_chat_model(_reply)
    results = gpt_rank(
        judge,
        ["longer wins", "always first", "script", "no verdict", "empty", "errors"],
        [
            ["ab", "abcd", "abcdef"],
            ["x", "yy", "zzz"],
            ["p", "q", "r"],
            ["x", "x", "yy"],
            ["good", ""],
            ["u", "v"],
        ],
    )
    # 6 ordered pairs for each of the first three items, 2 for the duplicates (one pair of
    # distinct texts), none for the empty answer, 2 for the errored item: one call of 22.
    assert judge.batch_sizes == [6 + 6 + 6 + 2 + 0 + 2]
    longer, biased, script, dup, empty, errors = results
    assert longer.points == [0.0, 2.0, 4.0] and longer.ranks == [3.0, 2.0, 1.0]
    assert biased.points == [2.0, 2.0, 2.0] and biased.ranks == [1.0, 1.0, 1.0]
    # p: 1; q: 0.5; r: 1 + 1 + 0.5 + 1 = 3.5; one verdict unparseable.
    assert script.points == [1.0, 0.5, 3.5] and script.ranks == [2.0, 3.0, 1.0]
    assert (script.judged, script.unparseable) == (6, 1)
    assert script.verdict_counts() == {"A": 3, "B": 1, "tie": 1, "unparseable": 1}
    assert biased.verdict_counts() == {"A": 6, "B": 0, "tie": 0, "unparseable": 0}
    assert dup.judged == 2 and dup.unparseable == 2 and dup.ranks == [1.0, 1.0, 1.0]
    assert empty.judged == 0 and empty.ranks == [1.0, 2.0]
    assert errors.unparseable == 2 and errors.ranks == [1.0, 1.0]
    # Every ordered pair was shown: the judge saw both orders of each pair.
    shown = {_between(c)[1:] for c in judge.calls[0] if _between(c)[0] == "script"}
    assert shown == set(SCRIPT)


def test_gpt_rank_rejects_bad_input(fake_chat_model):
    with pytest.raises(ValueError, match="one list of entries per instruction"):
        gpt_rank(fake_chat_model(), ["a"], [])
    with pytest.raises(ValueError, match="no entries"):
        gpt_rank(fake_chat_model(), ["a"], [[]])
