"""The typed records: round trip, and one RecordFormatError naming the field."""

import pytest

from chorus_tripost.records import EvalRecord, RecordFormatError, TrajectoryRecord

ITEM = {"id": "a-1", "task": "word_sort", "question": "q", "answer": "x y"}


def _eval() -> EvalRecord:
    return EvalRecord("a-1", "word_sort", "seen", "q", "x y", None, ["ans"], [], "stop", 1)


def test_round_trip():
    record = _eval()
    assert EvalRecord.from_json(record.to_json()) == record
    traj = TrajectoryRecord("a-1", "word_sort", ITEM, ["a", "b"], ["f", "g"], True, 2, False)
    assert TrajectoryRecord.from_json(traj.to_json()) == traj


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"answers": "ans"}, "'answers'"),
        ({"calls": True}, "'calls'"),
        ({"split": "train"}, "'split'"),
        ({"gold": None}, "'gold'"),
        ({"answers": []}, "'answers' is empty"),
    ],
)
def test_a_malformed_eval_line_names_the_field(change, field):
    with pytest.raises(RecordFormatError, match=field):
        EvalRecord.from_json(_eval().to_json() | change)


def test_a_missing_field_and_a_bad_trajectory_are_named():
    data = _eval().to_json()
    del data["question"]
    with pytest.raises(RecordFormatError, match="no 'question'"):
        EvalRecord.from_json(data)
    traj = TrajectoryRecord("a-1", "word_sort", ITEM, ["a"], ["f"], True).to_json()
    with pytest.raises(RecordFormatError, match="'feedback' should hold one entry per answer"):
        TrajectoryRecord.from_json(traj | {"feedback": ["f", "g", "h"]})
    with pytest.raises(RecordFormatError, match=r"item\.answer"):
        TrajectoryRecord.from_json(traj | {"item": {"id": "a-1", "question": "q"}})


def test_a_malformed_line_in_a_run_is_a_counted_skip(tmp_path):
    import json

    from chorus_shared.runs import RunDir
    from chorus_tripost.evaluate import EVAL_KIND, evaluate_run

    config = {"kind": EVAL_KIND, "recipe": {"task": "word_sort"}, "item_ids": ["a-1", "a-2"]}
    with RunDir.create(tmp_path / "r", config) as run:
        run.append(_eval().to_json())
        run.append(_eval().to_json() | {"id": "a-2", "calls": "two"})
    metrics = evaluate_run(RunDir.open(tmp_path / "r"))
    assert metrics["items"] == 1 and metrics["skipped_records"] == 1
    assert metrics["coverage"] == "1 of 2 items"
    assert any("'calls'" in note for note in metrics["notes"]), json.dumps(metrics["notes"])
