from chorus_selfee.chain import (
    Chain,
    build_prompt,
    chain_from_record,
    feedback_score,
    parse_chain,
    verdict,
)


def test_render_parse_round_trip() -> None:
    chain = Chain(
        answer="Paris is the capital.",
        feedbacks=["Too short. Score: 5/10. Revision is needed", "Good. Revision is not needed"],
        revisions=["Paris is the capital of France, on the Seine."],
    )
    text = chain.render()
    assert "### Feedback 1:\n" in text and "### Revision 1:\n" in text
    assert parse_chain(text) == chain
    assert parse_chain(text).final_answer == chain.revisions[0]
    assert parse_chain(text).stopped


def test_parse_stops_at_out_of_order_header_and_empty_revision() -> None:
    text = "A\n\n### Feedback 1:\nbad\n\n### Revision 3:\nX"
    c = parse_chain(text)
    assert c.feedbacks == ["bad"] and c.revisions == [] and c.final_answer == "A"
    assert not c.stopped
    c2 = parse_chain("A\n\n### Feedback 1:\nRevision is needed.\n\n### Revision 1:\n")
    assert c2.revisions == []


def test_verdict_and_score() -> None:
    assert verdict("... Revision is not needed.") is False
    assert verdict("revision is needed") is True
    assert verdict("looks fine") is None
    assert feedback_score("Score: 7/10") == 7.0
    assert feedback_score("no score") is None
    assert feedback_score("Score: 42") is None


def test_prompt_and_record() -> None:
    p = build_prompt("Add 2 and 3", "numbers")
    assert p.endswith("### Answer:\n") and "### Input:\nnumbers" in p
    assert "### Input" not in build_prompt("Add 2 and 3")
    rec = {
        "id": "x",
        "outputs": [
            {"output": "4", "feedback": "wrong. Revision is needed"},
            {"output": "5", "feedback": "Revision is not needed"},
        ],
    }
    c = chain_from_record(rec)
    assert c.final_answer == "5" and c.stopped
    assert parse_chain(c.render()) == c
