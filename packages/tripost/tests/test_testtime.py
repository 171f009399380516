"""Issue 23, point 3: test-time self-improvement re-prompts as the original (up to 10 calls),
and "improved" counts the final answer after self-improvement; point 8: numbers compare."""

from chorus_shared.models import Completion
from chorus_tripost import evaluate as ev
from chorus_tripost import loop, tasks
from chorus_tripost.records import EvalRecord
from chorus_tripost.testtime import MAX_CALLS, parse_trajectory, self_improve_generate
from chorus_tripost.verifier import ALL_CORRECT


class Scripted:
    """A raw-text model double: each call returns the next reply; records the prompts."""

    def __init__(self, replies, finish="stop"):
        self.replies = list(replies)
        self.prompts = []
        self.finish = finish

    def complete(self, prompts, params):
        self.prompts += prompts
        out = []
        for _ in prompts:
            text = self.replies.pop(0) if self.replies else ""
            out.append(Completion(text=text, finish_reason=self.finish))
        return out


def _item():
    return tasks.load_items("multistep_arithmetic", "test")[0]


def test_a_finished_answer_is_asked_for_feedback_then_an_update():
    it = _item()
    wrong = it["rationale"].replace("answer is", "answer is 1", 1)
    model = Scripted(
        [
            wrong,  # an answer, then end of text: the original re-prompts "Feedback:"
            ' In the final response the part "x" is incorrect.',  # negative: "Updated Answer:"
            it["rationale"],  # the update, then end of text: "Feedback:" again
            f" Step (1) to step (4) are correct. {ALL_CORRECT}",  # done
        ]
    )
    (st,) = self_improve_generate(model, [it], max_new_tokens=64)
    assert st.calls == 4 and st.answers == [wrong, it["rationale"]]
    assert model.prompts[1][-1] == loop.FEEDBACK
    assert model.prompts[2][-1] == tasks.answer_header(it["task"], updated=True)
    assert model.prompts[2][-2].endswith('the part "x" is incorrect.')
    assert ALL_CORRECT in st.feedback[-1]
    record = EvalRecord(it["id"], it["task"], "seen", it["question"], it["answer"], None,
                        st.answers, st.feedback, st.finish_reason, st.calls)  # fmt: skip
    graded = ev.grade(record)
    assert not graded["correct_first"] and graded["correct_final"]
    summary = ev.summarize([graded])
    assert summary["all"]["improved"] == 1 and summary["all"]["worsened"] == 0


def test_a_whole_trajectory_in_one_call_is_parsed_and_stopped_at_all_correct():
    it = _item()
    text = f"junk\nFeedback: bad\nUpdated Answer: Let's think step by step.\n{it['rationale']}"
    text += f"\nFeedback: {ALL_CORRECT}"
    model = Scripted([text])
    (st,) = self_improve_generate(model, [it], max_new_tokens=64)
    assert st.calls == 1 and st.answers == ["junk", it["rationale"]]


def test_at_most_ten_calls_and_three_continuations():
    it = _item()
    # a model that always writes a new, unfinished answer line and stops: re-prompted forever
    replies = [f"(1) step {k}\n(Final response) So the answer is {k}." for k in range(30)]
    (st,) = self_improve_generate(Scripted(replies), [it], max_new_tokens=64)
    assert st.calls <= MAX_CALLS == 10
    cut = Scripted([f"(1) more {k}" for k in range(30)], finish="length")
    (st,) = self_improve_generate(cut, [it], max_new_tokens=64)
    assert st.calls == 3  # continue the same text at most 3 times in a row


def test_a_call_that_adds_nothing_ends_the_item():
    it = _item()
    (st,) = self_improve_generate(Scripted([it["rationale"], ""]), [it], max_new_tokens=64)
    assert st.calls == 2 and st.answers == [it["rationale"]]


def test_parse_trajectory_drops_the_arithmetic_sentence():
    answers, feedback = parse_trajectory(
        f"a\nFeedback: f\nUpdated Answer: Let's think step by step. {tasks.ARITHMETIC_INFO}\nb"
    )
    assert answers == ["a", "b"] and feedback == ["f"]


def test_arithmetic_answers_compare_as_numbers():
    """Issue 23, point 8: -7.0 is -7 (the original compares float(pred) == float(gold))."""
    item = {"task": "multistep_arithmetic", "answer": "-7"}
    assert ev.is_correct(item, "(1) x = -7.0.\n(Final response) So the answer is -7.0.")
    assert ev.is_correct(item, "(Final response) So the answer is -7.")
    assert not ev.is_correct(item, "(Final response) So the answer is minus seven.")
    assert not ev.is_correct(item, "(Final response) So the answer is -6.")
    ws = {"task": "word_sort", "answer": "a b"}
    assert ev.is_correct(ws, "(Final response) So the answer is: a b.")
