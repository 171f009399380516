"""The multiple-choice tasks: date understanding and logical deduction (LLM verifier/improver)."""

import json
import random
import re
from collections import Counter

import pytest

from chorus_shared.testing import FakeOpenAIServer
from chorus_shared.testing.plugin import FakeChatModel
from chorus_tripost import evaluate as ev
from chorus_tripost import helpers, loop, tasks, training
from chorus_tripost.recipes import load_recipe
from chorus_tripost.records import EvalRecord, TrajectoryRecord
from chorus_tripost.testtime import fewshot_generate
from chorus_tripost.verifier import ALL_CORRECT, AnswerCheckedVerifier, diff_feedback, verify


@pytest.mark.parametrize(
    ("task", "train", "counts"),
    [
        ("date_understanding", 191, {"seen": 55, "unseen": 22}),
        ("logical_deduction", 360, {"seen": 52, "unseen": 700}),
    ],
)
def test_splits_and_seen_unseen_counts(task, train, counts):
    assert len(tasks.load_items(task, "train")) == train
    test = tasks.load_items(task, "test")
    assert Counter(tasks.seen_unseen(it) for it in test) == counts


def test_logical_deduction_rebuild_from_bigbench():
    import os
    from pathlib import Path

    from chorus_shared.data import _sibling_roots

    roots = [Path(os.environ["CHORUS_DATA_DIR"])] if os.environ.get("CHORUS_DATA_DIR") else []
    root = next(r for r in [*roots, *_sibling_roots()] if (r / "bigbench").is_dir())
    rows = tasks.rebuild_logical_deduction(root)
    assert len(rows) == 300 + 500 + 700
    by = Counter((r["meta_data"]["split"], r["meta_data"]["n_objects"]) for r in rows)
    # every TriPosT training (360) and validation (40) record found its BIG-Bench example
    assert by[("train", 3)] + by[("train", 5)] == 360 and by[("train", 7)] == 0
    assert by[("dev", 3)] + by[("dev", 5)] == 40
    assert (by[("test", 3)], by[("test", 5)], by[("test", 7)]) == (12, 40, 700)
    assert by[("unused", 3)] + by[("unused", 5)] == 348
    # no test paragraph is one a training rationale has already ordered
    para = {r["question"] for r in rows if r["meta_data"]["split"] in ("train", "dev")}
    assert not para & {r["question"] for r in rows if r["meta_data"]["split"] == "test"}
    assert all("motorcyle" not in r["question"] for r in rows)
    train = [r for r in rows if r["meta_data"]["split"] == "train"]
    # one TriPosT rationale opens with a stray "The answer is (C)." line before step (1)
    opened = sum(r["rationale"].startswith(tasks.LD_HEADER + "\n(1) ") for r in train)
    assert opened == len(train) - 1


@pytest.mark.parametrize(
    ("task", "split", "right", "total"),
    [
        ("date_understanding", "train", 190, 191),
        ("date_understanding", "test", 77, 77),
        ("logical_deduction", "train", 358, 360),
    ],
)
def test_ground_truth_rationales_graded_and_counted(task, split, right, total):
    items = tasks.load_items(task, split)
    graded = [ev.is_correct(it, it["rationale"]) for it in items]
    # The LLM-made data is not perfect: the few wrong or unreadable ones are counted here.
    assert (sum(graded), len(graded)) == (right, total)


def test_multiple_choice_answers_and_unreadable_ones():
    item = {"task": "logical_deduction", "answer": "A", "choices": "ABC"}
    good = "(1) x\n(Final response) The pears are the second-most expensive. So The answer is (A)."
    assert tasks.answer_of(item, good) == "A" and ev.is_correct(item, good)
    assert tasks.answer_of(item, "(1) x\n(Final response) So the answer is (B).") == "B"
    assert tasks.answer_of(item, "(1) So the answer is (A).") is None  # no final response
    assert tasks.answer_of(item, "(Final response) So the answer is (F).") is None  # not an option
    record = EvalRecord("x", "logical_deduction", "seen", "q", "A", "ABC", ["nonsense"], [],
                        "length", 1)  # fmt: skip
    result = ev.grade(record)
    assert result["answer_first"] is None and result["correct_first"] is False
    assert ev.summarize([result])["seen"]["unreadable_first"] == 1


@pytest.mark.parametrize("task", tasks.MC_TASKS)
def test_planted_errors_get_feedback_at_the_planted_step(task):
    rng = random.Random(0)
    items = tasks.load_items(task, "train")[:40]
    for it in items:
        wrong = loop.plant_error(it, rng)
        changed = [
            k
            for k, (a, b) in enumerate(
                zip(wrong.splitlines(), it["rationale"].splitlines(), strict=True)
            )
            if a != b
        ]
        verdict = diff_feedback(wrong, it["rationale"])
        assert not verdict.correct and len(changed) == 1
        line = wrong.splitlines()[changed[0]]
        label = re.match(r"\((\d+|Final response)\)", line).group(1)
        where = "the final response" if label == "Final response" else f"step ({label})"
        assert f"In {where} the part" in verdict.feedback, (wrong, verdict.feedback)
        assert verdict.part in line
        assert diff_feedback(it["rationale"], it["rationale"]).feedback.endswith(ALL_CORRECT)


def test_no_scripted_helpers_for_multiple_choice():
    item = tasks.load_items("date_understanding", "train")[0]
    with pytest.raises(ValueError, match="no scripted verifier"):
        verify(item, item["rationale"])
    with pytest.raises(ValueError, match="verifier_use_scripted and improver_use_scripted false"):
        load_recipe("date_default", verifier_use_scripted=True)
    for name in ("date_offline", "logical_offline", "date_llama7b", "logical_llama7b"):
        recipe = load_recipe(name)
        assert recipe.task in tasks.MC_TASKS and not recipe.verifier_use_scripted
        assert not recipe.improver_use_scripted
    assert load_recipe("logical_llama7b").deepspeed == "zero2_offload"


def test_llm_correct_verdict_on_a_wrong_answer_is_overruled():
    items = tasks.load_items("date_understanding", "train")[:2]
    wrong = items[1]["rationale"].replace(f"({items[1]['answer']})", "(Q)")
    llm = FakeChatModel(lambda conv: f"Step (1) is correct. {ALL_CORRECT}")
    demos = helpers.pick_demos(tasks.load_items("date_understanding", "train"), 2)
    verifier, _ = helpers.llm_helpers(llm, llm, demos)
    assert isinstance(verifier, AnswerCheckedVerifier)
    verdicts = verifier(items, [items[0]["rationale"], wrong])
    assert llm.batch_sizes == [2]  # one batched call
    assert verdicts[0].correct and not verdicts[1].correct and verifier.overruled == 1
    assert "final response" in verdicts[1].feedback
    # the few-shot conversation carries the demonstrations (planted error, repair, all correct)
    conv = llm.calls[0][0]
    assert len(conv) == 1 + 2 * 3 + 1 and conv[-1]["content"].startswith("Q: ")


def _helper_server(items):
    """An OpenAI-compatible LLM helper, scripted: the verifier rejects anything but the
    ground truth, the improver writes the ground truth."""
    gold = {loop.question_text(it): it["rationale"] for it in items}

    def respond(body):
        system = body["messages"][0]["content"]
        last = body["messages"][-1]["content"]
        question, _, rest = last.partition("\nAnswer: Let's think step by step.\n")
        if system.startswith("You check"):
            return (
                f"Step (1) is correct. {ALL_CORRECT}"
                if rest.strip() == gold[question].strip()
                else 'In step (1) the part "x" is incorrect. This is because it is wrong.'
            )
        return gold[question]

    return FakeOpenAIServer(respond)


def test_one_loop_iteration_on_a_tiny_model_with_an_llm_helper(tiny_model_dir, tmp_path,
                                                               monkeypatch):  # fmt: skip
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    train = tasks.load_items("date_understanding", "train")
    with _helper_server(train) as server:
        spec = f"openai:fake-model@{server.base_url}"
        recipe = load_recipe(
            "date_default", model=f"hf:{tiny_model_dir}", verifier_model=spec,
            improver_model=spec, train_items=2, collect_train_data_window=2, max_new_tokens=8,
            baseline_epochs=1.0, iteration_epochs=1.0, max_steps=1, max_length=384,
            per_device_train_batch_size=2, report_to="none", learning_rate=1e-4, bf16="false",
            max_data_itr=1, batch_window=2,
        )  # fmt: skip
        metrics = training.run_training(recipe, tmp_path / "run", num_iterations=1, log=print)
        requests = server.requests
    stats = metrics["iterations"][0]
    assert metrics["iterations_done"] == 1 and metrics["stopped"] is None
    # random weights never answer; the LLM helper repairs both in one round
    assert stats["attempts"] == 2 and stats["correct_first"] == 0
    assert stats["corrected"] == 2 and stats["dropped"] == 0
    # 2 (attempt, feedback, update) turns, 2 final all-correct turns, 2 gold samples
    assert (stats["improvement_samples"], stats["non_improvement_samples"]) == (2, 2)
    assert stats["gold_samples"] == 2 and stats["samples"] == 6
    # verify (2), improve (2), verify again (2): helper calls are per item over HTTP
    assert len(requests) == 6
    lines = (tmp_path / "run/iter-1/collect-r0/records.jsonl").read_text().splitlines()
    record = TrajectoryRecord.from_json(json.loads(lines[0]))
    assert record.accepted and record.feedback[-1].endswith(ALL_CORRECT)
    assert "Options:\n(A)" in record.item["question"]
    assert (tmp_path / "run" / "iter-1" / "train" / "model" / "config.json").is_file()


def test_fewshot_self_improvement_on_a_multiple_choice_task():
    items = tasks.load_items("logical_deduction", "test")[:1]
    demos = tasks.load_items("logical_deduction", "train")[:2]
    answer = items[0]["answer"]
    other = next(c for c in items[0]["choices"] if c != answer)

    def reply(conv):
        system = conv[0]["content"]
        if system.startswith("You check"):
            return 'In the final response the part "x" is incorrect.'
        if system.startswith("You repair"):
            return f"(1) fixed.\n(Final response) So the answer is ({answer})."
        return f"(1) guess.\n(Final response) So the answer is ({other})."

    states = fewshot_generate(FakeChatModel(reply), items, demos, max_new_tokens=8, rounds=1)
    it = items[0]
    st = states[0]
    fields = (it["id"], it["task"], "seen", it["question"], it["answer"], it["choices"])
    r = ev.grade(EvalRecord(*fields, st.answers, st.feedback, "stop", st.calls))
    assert r["correct_first"] is False and r["correct_final"] is True


def test_check_helper_measures_a_perfect_scripted_helper(tmp_path, monkeypatch, capsys):
    from chorus_tripost.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    train = tasks.load_items("logical_deduction", "train")
    gold = {loop.question_text(it): it["rationale"] for it in train}

    def respond(body):  # judges against the ground truth; repairs to it
        question, _, rest = body["messages"][-1]["content"].partition(
            "\nAnswer: Let's think step by step.\n"
        )
        if body["messages"][0]["content"].startswith("You check"):
            return diff_feedback(rest.strip(), gold[question]).feedback
        return gold[question]

    with FakeOpenAIServer(respond) as server:
        spec = f"openai:fake-model@{server.base_url}"
        argv = ["check-helper", "--recipe", "logical_default", "--verifier-model", spec,
                "--improver-model", spec, "--n", "3", "--out", str(tmp_path / "c")]  # fmt: skip
        assert main(argv) == 0
        assert len(server.requests) == 3 * 2 + 3
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["n"] == 3 and m["right_accepted"] == m["wrong_rejected"] == 1.0
    assert m["wrong_located"] == m["repair_right"] == 1.0 and m["repair_unreadable"] == 0.0
    assert main(argv) == 0 and "checked earlier" in capsys.readouterr().out


def test_llm_improver_output_ends_at_the_answer():
    from chorus_tripost.improver import LLMImprover

    item = tasks.load_items("date_understanding", "train")[0]
    text = item["rationale"] + "\nFeedback: Step (1) is correct."
    llm = FakeChatModel(lambda conv: text)
    verdict = diff_feedback(item["rationale"], item["rationale"])
    assert LLMImprover(llm)([item], ["x"], [verdict]) == [item["rationale"]]
    assert llm.params[0].stop == ("\nFeedback:",)
