"""The typed debate record: what the writer stores and the one check every reader relies on."""

from __future__ import annotations

import pytest

from chorus_debate.records import AgentLog, DebateRecord, JudgeLog, RecordFormatError, Usage


def _record(**changes) -> dict:
    record = DebateRecord(
        id="arithmetic-0-0",
        task="arithmetic",
        method="debate",
        question="1+2*3+4-5*6",
        target=-19,
        agents=[
            AgentLog(
                "fake", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
            )
            for _ in range(2)
        ],
        finish_reasons=[["stop", "length"]],
        usage=Usage(prompt_tokens=10, completion_tokens=4),
    ).to_json()
    record.update(changes)
    return record


def test_round_trip_keeps_every_field() -> None:
    judged = DebateRecord.from_json(_record(judge={"model": "j", "verdicts": [["yes", None]]}))
    assert judged.judge == JudgeLog("j", [["yes", None]])
    assert DebateRecord.from_json(judged.to_json()) == judged
    assert judged.replies_by_round() == [["a", "a"]] and judged.last_replies() == ["a", "a"]
    assert "judge" not in _record() and "error" not in _record()


def test_an_old_line_with_stored_grades_reads_and_drops_them() -> None:
    old = _record(answers=[[3, 3]], final=3, correct=True, correct_by_round=[True], score=1.0)
    assert DebateRecord.from_json(old).to_json() == _record()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"agents": None}, "'agents' should be list"),
        ({"agents": []}, "'agents' is empty"),
        ({"usage": {"prompt_tokens": True, "completion_tokens": 1}}, "usage.prompt_tokens"),
        ({"target": {"x": 1}}, "'target' should be str or int or float"),
        ({"finish_reasons": [["stop"]]}, "'finish_reasons' should be [round][agent]"),
        ({"judge": {"model": "j"}}, "no 'judge.verdicts'"),
        (
            {"agents": [{"model": "m", "messages": []}, {"model": "m", "messages": []}]},
            "different numbers of replies (or none)",
        ),
    ],
)
def test_a_damaged_line_is_one_error_naming_the_field(changes: dict, message: str) -> None:
    with pytest.raises(RecordFormatError) as err:
        DebateRecord.from_json(_record(**changes))
    assert message in str(err.value)


def test_a_missing_field_is_named() -> None:
    record = _record()
    del record["usage"]
    with pytest.raises(RecordFormatError, match="no 'usage'"):
        DebateRecord.from_json(record)
