"""The biography judge: whole-word verdicts, scoring, and one batched judge call."""

from __future__ import annotations

import re

import pytest

from chorus_debate.judge import (
    JUDGE_PROMPT,
    biography_score,
    judge_biographies,
    judge_conversations,
    parse_verdict,
    pooled_accuracy,
)
from chorus_shared.models import Completion, SamplingParams

PARAMS = SamplingParams(max_new_tokens=8)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("No.", "no"),
        ("no", "no"),
        ("NO, it does not", "no"),
        ("Yes, it agrees", "yes"),
        ("yes", "yes"),
        ("Uncertain.", "uncertain"),
        ("I am uncertain about it", "uncertain"),
        # "no" hides inside these words; none of them is a verdict.
        ("I don't know", None),
        ("not sure", None),
        ("Nothing here", None),
        ("The biography does not mention it; cannot tell", None),
        ("Yesterday", None),
        ("", None),
    ],
)
def test_parse_verdict_whole_words(reply: str, verdict: str | None) -> None:
    assert parse_verdict(reply) == verdict


def test_parse_verdict_first_word_said_wins() -> None:
    assert parse_verdict("No. Well, yes partly.") == "no"
    assert parse_verdict("Yes - no doubt.") == "yes"


def test_biography_score_excludes_and_counts_unparseable() -> None:
    score, counts = biography_score([["yes", "no", "uncertain"], [None, "yes"]])
    assert counts == {"yes": 2, "no": 1, "uncertain": 1, "unparseable": 1}
    assert score == pytest.approx(2 / 3)  # uncertain and unparseable are both left out


def test_biography_score_all_yes_and_all_uncertain() -> None:
    assert biography_score([["yes", "yes"], ["yes"]]) == (
        1.0,
        {"yes": 3, "no": 0, "uncertain": 0, "unparseable": 0},
    )
    score, counts = biography_score([["uncertain", "uncertain"], ["uncertain"]])
    assert score is None  # only uncertain verdicts: the person has no score, not 0
    assert counts["uncertain"] == 3
    score, counts = biography_score([[None, None]])
    assert score is None
    assert counts["unparseable"] == 2


def test_pooled_accuracy_by_hand() -> None:
    # Three people; uncertain and unparseable verdicts are excluded from both sums.
    people = [
        [["yes", "yes", "no"], ["uncertain", "yes", None]],  # 3 yes, 1 no
        [["no", "no"], ["no", "yes"]],  # 1 yes, 3 no
        [["uncertain", None]],  # nothing decided: no per-person score
    ]
    scored = [biography_score(v) for v in people]
    assert [s for s, _ in scored] == [pytest.approx(3 / 4), pytest.approx(1 / 4), None]
    # Paper: pooled yes / (yes + no) = 4 / 8; the per-person mean would also be 0.5 here, so
    # check a set where they differ: drop one "no" of person 2.
    assert pooled_accuracy([c for _, c in scored]) == pytest.approx(4 / 8)
    people[1] = [["no"], ["yes"]]  # 1 yes, 1 no
    scored = [biography_score(v) for v in people]
    assert pooled_accuracy([c for _, c in scored]) == pytest.approx(4 / 6)
    assert pooled_accuracy([biography_score([["uncertain"]])[1]]) is None


def test_judge_conversations_one_per_fact() -> None:
    convs = judge_conversations("Ada", "- born 1815", ["born 1815", "a poet"])
    assert len(convs) == 2
    for conv, fact in zip(convs, ["born 1815", "a poet"], strict=True):
        assert conv == [
            {
                "role": "user",
                "content": JUDGE_PROMPT.format(person="Ada", biography="- born 1815", fact=fact),
            }
        ]


_JUDGED = re.compile(
    r"Here is a biography of (?P<person>.+?):\n\n(?P<bio>.*)\n\n"
    r"Here is one fact about (?P=person): (?P<fact>.*)\n\n",
    re.S,
)


def _fact_checker(conversation) -> str:
    # Says yes exactly when the fact is written in the biography, "uncertain" for facts with
    # "maybe" in them: verdicts that end up in the wrong slot are detected.
    m = _JUDGED.match(conversation[-1]["content"])
    assert m, conversation
    if "maybe" in m["fact"]:
        return "Uncertain."
    return "Yes." if m["fact"] in m["bio"] else "No, it does not."


def test_judge_biographies_one_batched_call(fake_chat_model) -> None:
    judge = fake_chat_model(_fact_checker, spec="judge")
    people = ["Ada", "Alan"]
    facts = [["born 1815", "a poet", "maybe tall"], ["born 1912", "a runner"]]
    bios = [
        ["- born 1815\n- a poet", "- a poet", None],
        ["- born 1912", "- a runner\n- born 1912"],
    ]
    verdicts = judge_biographies(judge, people, bios, facts, PARAMS)

    # Every (item, agent, fact) of every non-missing biography, in ONE call.
    assert judge.batch_sizes == [3 + 3 + 2 + 2]
    assert judge.params == [PARAMS]
    assert verdicts == [
        [["yes", "yes", "uncertain"], ["no", "yes", "uncertain"], ["no", "no", "no"]],
        [["yes", "no"], ["yes", "yes"]],
    ]
    # The missing biography was never shown to the judge.
    assert all("None" not in conv[0]["content"] for conv in judge.calls[0])
    people_asked = [_JUDGED.match(c[0]["content"])["person"] for c in judge.calls[0]]
    assert people_asked == ["Ada"] * 6 + ["Alan"] * 4


def test_judge_not_called_when_every_biography_is_missing(fake_chat_model) -> None:
    judge = fake_chat_model(_fact_checker)
    verdicts = judge_biographies(judge, ["Ada"], [[None, None]], [["born 1815"]], PARAMS)
    assert judge.calls == []
    assert verdicts == [[["no"], ["no"]]]


def test_judge_error_is_unparseable_and_excluded(fake_chat_model) -> None:
    def broken(conversation):
        return Completion(text="yes", finish_reason="error", error="HTTP 500")

    judge = fake_chat_model(broken)
    verdicts = judge_biographies(judge, ["Ada"], [["- born 1815"]], [["born 1815"]], PARAMS)
    assert verdicts == [[[None]]]
    score, counts = biography_score(verdicts[0])
    assert score is None  # nothing decided: no score, not 0
    assert counts["unparseable"] == 1
