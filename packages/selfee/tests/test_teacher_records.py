import pytest

from chorus_selfee.chain import parse_chain
from chorus_selfee.records import training_record, training_records
from chorus_selfee.teacher import generate_feedback_data
from chorus_shared.models import SamplingParams


def _items(n):
    return [{"id": f"i{k}", "instruction": f"task {k}", "input": ""} for k in range(n)]


def test_loop_batched_with_per_item_revision_counts(scripted) -> None:
    # item i0 is accepted at once; i1 after one revision; i2 never accepted (cap of 3).
    def reply(conv):
        text = conv[-1]["content"]
        if text.startswith("Here is a request"):
            item = text.split("Request:\n", 1)[1].split("\n", 1)[0]
            n_rev = text.count("REVISED")
            ok = item == "task 0" or (item == "task 1" and n_rev >= 1)
            return f"meh. Score: 6/10\n{'Revision is not needed' if ok else 'Revision is needed'}"
        if text.startswith("Request:"):
            return "REVISED " + text.split("Previous response:\n", 1)[1].split("\n", 1)[0]
        return "first answer"

    teacher = scripted(reply)
    recs = generate_feedback_data(teacher, _items(3), SamplingParams(), max_iterations=3)
    assert [r["iteration"] for r in recs] == [1, 2, 3]
    assert [r["iteration_truncated"] for r in recs] == [False, False, True]
    assert recs[1]["output"] == "REVISED first answer"
    assert recs[0]["outputs"][0]["score"] == 6.0
    # answer, fb(3), rev(2), fb(2), rev(1), fb(1), rev(1): every step one shared call.
    assert [len(c) for c in teacher.calls] == [3, 3, 2, 2, 1, 1, 1]


def test_missing_verdict_is_counted_and_ends_loop(scripted) -> None:
    teacher = scripted(lambda conv: "hmm" if "Critique" in conv[-1]["content"] else "ans")
    rec = generate_feedback_data(teacher, _items(1), SamplingParams(), max_iterations=5)[0]
    assert rec["missing_verdicts"] == 1 and rec["iteration"] == 1
    assert len(teacher.calls) == 2
    with pytest.raises(ValueError, match=r"1\.\.5"):
        generate_feedback_data(teacher, _items(1), SamplingParams(), max_iterations=6)


def test_training_records_objectives() -> None:
    rec = {
        "id": "i",
        "instruction": "Say hi",
        "input": "",
        "outputs": [
            {"output": "hi", "feedback": "Short. Revision is needed"},
            {"output": "Hello!", "feedback": "Revision is not needed"},
        ],
    }
    full = training_record(rec, "full")
    prompt, target = full["segments"]
    assert prompt["weight"] == 0.0 and prompt["text"].endswith("### Answer:\n")
    assert target["weight"] == 1.0 and full["add_eos"] is True
    assert parse_chain(target["text"]).final_answer == "Hello!"
    assert parse_chain(target["text"]).stopped
    assert training_record(rec, "answer-only")["segments"][1]["text"] == "Hello!"
    out, skipped = training_records([rec, {**rec, "id": "e", "errors": 1}])
    assert len(out) == 1 and skipped == 1
    with pytest.raises(ValueError, match="objective"):
        training_record(rec, "bogus")
