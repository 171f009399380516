"""The chain format, the original's prompt header and the original's final-answer rule."""

from __future__ import annotations

import pytest

from chorus_selfee.chain import (
    Chain,
    build_prompt,
    chain_from_record,
    feedback_score,
    final_answer,
    parse_chain,
    verdict,
    wants_revision,
)

# Shapes of the released SelFee generations (evaluation/answer/selfee_*.jsonl), in our own
# words: what follows "### Answer:\n", and the answer the authors' parse() returned.
COMPLETE_AFTER_FORCED = (
    "Tea helps.\n\n### Feedback 1:\nToo thin. Score: 6. Revision is needed.\n\n"
    "### Revision 1:\nTea and rest help.\n\n### Feedback 2:\nBetter. Score: 8. Revision is "
    "needed.\n\n### Revision 2:\nTea, rest and a walk help.\n\n### Feedback 3:\nGood. "
    "Score: 9. Revision is not needed."
)
CUT_AFTER_SEVERAL = (
    "Go early.\n\n### Feedback 1:\nVague. Revision is needed.\n\n### Revision 1:\nGo early "
    "and plan.\n\n### Feedback 2:\nOk. Revision is needed.\n\n### Revision 2:\nGo early, "
    "plan, rest.\n\n### Feedback 3:\nFine. Revision is needed.\n\n### Revision 3:\nGo early, "
    "plan the route, and rest before the"
)
SINGLE_CUT = (
    "Paris.\n\n### Feedback 1:\nShort. Revision is needed.\n\n### Revision 1:\nParis is the"
)
NO_REVISION = "Blue.\n\n### Feedback 1:\nFine, score 8. Revision is not needed."
NO_VERDICT_EOS = "Blue.\n\n### Feedback 1:\nAdding details could enhance it."


@pytest.mark.parametrize(
    ("generation", "answer", "revisions"),
    [
        (COMPLETE_AFTER_FORCED, "Tea, rest and a walk help.", 2),
        (CUT_AFTER_SEVERAL, "Go early, plan, rest.", 2),  # the cut revision 3 is no answer
        (SINGLE_CUT, "Paris.", 0),  # a single cut revision: the first answer
        (NO_REVISION, "Blue.", 0),
        (NO_VERDICT_EOS, "Blue.", 0),
        ("Only an answer, cut by the bud", "Only an answer, cut by the bud", 0),
    ],
    ids=["complete", "cut-after-several", "single-cut", "no-revision", "no-verdict", "bare"],
)
def test_final_answer_follows_the_original_parse(generation, answer, revisions) -> None:
    got = final_answer(generation)
    assert (got.text, got.revisions) == (answer, revisions)


def test_render_is_the_original_full_target_and_parses_back() -> None:
    chain = Chain(
        answer="Paris is the capital.",
        feedbacks=["Too short. Score: 5/10. Revision is needed", "Good. Revision is not needed"],
        revisions=["Paris is the capital of France, on the Seine."],
    )
    text = chain.render()
    assert text == (
        "Paris is the capital.\n\n### Feedback 1:\nToo short. Score: 5/10. Revision is needed"
        "\n\n### Revision 1:\nParis is the capital of France, on the Seine.\n\n### Feedback 2:\n"
        "Good. Revision is not needed"
    )
    assert parse_chain(text) == chain and parse_chain(text).stopped
    assert final_answer(text).text == chain.final_answer == chain.revisions[0]


def test_a_revision_without_feedback_is_not_the_final_answer() -> None:
    chain = Chain("A", ["bad. Revision is needed"], ["B"])
    assert chain.final_answer == "A" and final_answer(chain.render()).text == "A"


def test_parse_stops_at_out_of_order_header_and_empty_revision() -> None:
    c = parse_chain("A\n\n### Feedback 1:\nbad\n\n### Revision 3:\nX")
    assert c.feedbacks == ["bad"] and c.revisions == [] and c.final_answer == "A"
    assert (
        parse_chain("A\n\n### Feedback 1:\nRevision is needed.\n\n### Revision 1:\n").revisions
        == []
    )


def test_verdict_stop_rule_and_score() -> None:
    assert verdict("... Revision is not needed.") is False
    assert verdict("revision is needed") is True
    assert verdict("looks fine") is None
    # The teacher loop revises unless the critique says there is nothing to revise.
    assert wants_revision("looks fine") and wants_revision("Revision is needed.")
    assert not wants_revision("No critique.") and not wants_revision("No need to change it")
    assert feedback_score("Score: 7/10") == 7.0
    assert feedback_score("no score") is None and feedback_score("Score: 42") is None


def test_prompt_is_the_original_header() -> None:
    assert build_prompt("Add 2 and 3") == (
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nAdd 2 and 3\n\n### Answer:\n"
    )
    p = build_prompt("Add 2 and 3", "numbers")
    assert "paired with an input" in p and p.endswith("### Input:\nnumbers\n\n### Answer:\n")
    with pytest.raises(ValueError, match="empty"):
        build_prompt("  ")


def test_chain_from_record() -> None:
    rec = {
        "id": "x",
        "outputs": [
            {"output": "4", "feedback": "wrong. Revision is needed"},
            {"output": "5", "feedback": "Revision is not needed"},
        ],
    }
    c = chain_from_record(rec)
    assert c.final_answer == "5" and c.stopped and parse_chain(c.render()) == c
