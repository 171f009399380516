"""The teacher loop (the original's data_augmentation rules) and the training examples."""

from __future__ import annotations

import json

import pytest

from chorus_selfee.chain import parse_chain
from chorus_selfee.records import TeacherRecord
from chorus_selfee.teacher import (
    drop_apology,
    drop_revision_remark,
    generate_feedback_data,
    plain_verdict,
)
from chorus_selfee.training_data import read_original_records, training_record, training_records
from chorus_shared.models import Completion, SamplingParams


def _items(n):
    return [{"id": f"i{k}", "instruction": f"task {k}", "input": ""} for k in range(n)]


def _critiqued(conv) -> str:
    return conv[-1]["content"]


def test_loop_batched_multi_turn_with_per_item_revision_counts(scripted) -> None:
    # i0 is accepted at once; i1 after one revision; i2 never (cap of 3 texts: truncated).
    def reply(conv):
        text = conv[-1]["content"]
        if text.endswith("Critique:"):
            item = text.split("\n", 1)[0]
            n_rev = text.count("REVISED")
            ok = item == "task 0" or (item == "task 1" and n_rev >= 1)
            return f"meh. Score: 6\n{'Revision is not needed' if ok else 'Revision is needed'}"
        if text.endswith("Revision:"):
            # The revision request follows the teacher's own critique in one conversation.
            assert conv[-2]["role"] == "assistant" and "Score" in conv[-2]["content"]
            return "REVISED answer. This revision fixes the score."
        return "first answer"

    teacher = scripted(reply)
    recs = generate_feedback_data(teacher, _items(3), SamplingParams(), max_iterations=3)
    assert [r["iteration"] for r in recs] == [1, 2, 3]
    assert [r["iteration_truncated"] for r in recs] == [False, False, True]
    # The closing remark about the revision is cleaned away, as in the original.
    assert recs[1]["output"] == "REVISED answer."
    assert all(o["feedback"] for r in recs for o in r["outputs"])
    # answer, fb(3), rev(2), fb(2), rev(1), fb(1): every step one shared call.
    assert [len(c) for c in teacher.calls] == [3, 3, 2, 2, 1, 1]
    assert TeacherRecord.from_json(recs[2]).to_original()["outputs"][0]["output"] == "first answer"


def test_a_critique_without_a_verdict_is_revised_and_counted(scripted) -> None:
    def reply(conv):
        text = conv[-1]["content"]
        if text.endswith("Critique:"):
            return "hmm" if "REV" not in text else "Fine now. Revision is not needed."
        return "REV" if text.endswith("Revision:") else "ans"

    rec = generate_feedback_data(scripted(reply), _items(1), SamplingParams())[0]
    assert rec["missing_verdicts"] == 1 and rec["iteration"] == 2
    with pytest.raises(ValueError, match=r"1\.\.5"):
        generate_feedback_data(scripted(reply), _items(1), SamplingParams(), max_iterations=6)


def test_a_failed_teacher_reply_makes_an_errored_record(scripted) -> None:
    def reply(conv):
        if conv[-1]["content"].endswith("Critique:"):
            return Completion(text="", finish_reason="error", error="HTTP 500")
        return "ans"

    rec = generate_feedback_data(scripted(reply), _items(1), SamplingParams())[0]
    assert rec["error"] == "HTTP 500" and rec["id"] == "i0" and "outputs" not in rec


def test_cleanup_rules() -> None:
    assert (
        drop_revision_remark("Answer.\nMore text. This revision adds detail.")
        == "Answer.\nMore text."
    )
    assert drop_revision_remark("Answer.\n\n") == "Answer."
    assert drop_apology("I apologize for the error. The answer is 4.") == "The answer is 4."
    assert drop_apology("The answer is 4.") == "The answer is 4."
    assert plain_verdict("Good. Score 8. It is fine, but revision is needed") == (
        "Good. Score 8. Revision is needed"
    )
    assert plain_verdict("Good. Revision is not needed") == "Good. Revision is not needed"


RECORD = {
    "instruction": "Say hi",
    "input": "",
    "outputs": [
        {"output": "hi", "feedback": "Short. Revision is needed"},
        {"output": "Hello!", "feedback": "Revision is not needed"},
    ],
    "iteration": 2,
}


def test_training_objectives_full_chain_and_first_answer_only() -> None:
    rec = {**RECORD, "id": "i"}
    full = training_record(rec, "full")
    prompt, target = full["segments"]
    assert prompt["weight"] == 0.0 and prompt["text"].endswith("### Answer:\n")
    assert target["weight"] == 1.0 and full["add_eos"] is True
    assert (
        parse_chain(target["text"]).final_answer == "Hello!" and parse_chain(target["text"]).stopped
    )
    # answer-only trains on the first answer, as the original's ablation.
    assert training_record(rec, "answer-only")["segments"][1]["text"] == "hi"
    out, skipped = training_records([rec, {**rec, "id": "e", "error": "HTTP 500"}])
    assert len(out) == 1 and skipped == 1
    with pytest.raises(ValueError, match="objective"):
        training_record(rec, "bogus")


def test_original_data_files_load_without_ids(tmp_path) -> None:
    jsonl = tmp_path / "feedback_mbpp.jsonl"
    jsonl.write_text(json.dumps(RECORD) + "\n\n" + json.dumps(RECORD) + "\n")
    recs = read_original_records(jsonl)
    assert [r["id"] for r in recs] == ["feedback_mbpp-1", "feedback_mbpp-3"]
    merged = tmp_path / "merged.json"
    merged.write_text(json.dumps([RECORD, {**RECORD, "dataset": "alpaca"}]))
    assert len(training_records(read_original_records(merged))[0]) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: the record has no 'outputs'"):
        read_original_records(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        read_original_records(broken)
