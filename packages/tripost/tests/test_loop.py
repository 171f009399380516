"""Issue 23, point 2: the data mixture of one iteration, as the original's collection step."""

import math

import pytest

from chorus_shared.models import SamplingParams
from chorus_tripost import loop, tasks, training
from chorus_tripost.records import TrajectoryRecord
from chorus_tripost.verifier import ALL_CORRECT, Verdict, verify


def _items(n=6):
    return tasks.load_items("multistep_arithmetic", "train")[:n]


def _wrong_last_step(item):
    # The right final answer but a last step that disagrees with it: not "directly correct".
    lines = item["rationale"].splitlines()
    lines[-2] = lines[-2].rsplit("=", 1)[0] + "= 12345."
    return "\n".join(lines)


def test_directly_correct_needs_the_right_answer_and_a_consistent_last_step():
    it = _items(1)[0]
    assert loop.is_directly_correct(it, it["rationale"])
    assert not loop.is_directly_correct(it, _wrong_last_step(it))
    assert not loop.is_directly_correct(it, it["rationale"].replace("answer is", "answer is 1"))
    ws = tasks.load_items("word_sort", "train")[0]
    assert loop.is_directly_correct(ws, ws["rationale"])
    tied = ws["rationale"].replace("Hence, we have", "Hence, we have ?", 1)
    assert not loop.is_directly_correct(ws, tied)


def test_all_correct_feedback_names_the_last_step():
    it = _items(1)[0]
    n = len(it["rationale"].splitlines()) - 1
    assert loop.all_correct_feedback(it["rationale"]) == (
        f"Step (1) to step ({n}) are correct. {ALL_CORRECT}"
    )


def test_repair_with_the_scripted_helpers():
    items = _items(3)
    gens = [([items[0]["rationale"]], []), ([_wrong_last_step(items[1])], []), (["junk"], [])]
    trajs = loop.repair(items, gens)
    assert [t.accepted for t in trajs] == [True, True, True]
    assert len(trajs[0].answers) == 1 and trajs[0].feedback[0].endswith(ALL_CORRECT)
    assert len(trajs[1].answers) == 2 and not trajs[1].bad_progress  # one repair
    assert trajs[1].answers[-1] == items[1]["rationale"]


def test_an_improver_that_makes_no_progress_ends_the_trajectory():
    items = _items(1)
    calls = []

    def same(its, attempts, verdicts):
        calls.append(len(its))
        return list(attempts)  # not a legit update: the previous answer again

    trajs = loop.repair(items, [(["junk"], [])], improve=same, max_improvements=5)
    assert calls == [1] and not trajs[0].accepted


def test_feedback_that_does_not_move_the_error_later_keeps_only_the_first_turn():
    it = _items(1)[0]
    wrong = _wrong_last_step(it)
    # the update fixes the last step but breaks the first: the first error moved earlier
    lines = it["rationale"].splitlines()
    lines[0] = lines[0].replace("written as", "written as (", 1)
    worse = "\n".join(lines)
    fixes = iter([worse, it["rationale"]])
    trajs = loop.repair(
        [it],
        [([wrong], [])],
        improve=lambda its, a, v: [next(fixes)],
        max_improvements=5,
    )
    t = trajs[0]
    assert t.accepted and t.bad_progress and len(t.answers) == 3
    improving, plain = loop.trajectory_samples(t)
    assert improving == [] and len(plain) == 1
    assert plain[0].att_start == loop.FEEDBACK and "Updated" not in plain[0].text


def test_the_models_own_correct_prefix_is_kept():
    """From the second iteration on: the model's feedback that the verifier agrees with is
    kept; the repair starts at the first feedback the verifier disagrees with."""
    it = _items(1)[0]
    wrong = _wrong_last_step(it)
    own_feedback = verify(it, wrong).feedback  # the model found its own error
    still_wrong = wrong.replace("answer is", "answer is 1", 1)
    model_says_fine = "Step (1) is correct. " + ALL_CORRECT  # the verifier disagrees
    gen = ([wrong, still_wrong], [own_feedback, model_says_fine])
    t = loop.repair([it], [gen])[0]
    assert t.accepted
    assert t.answers[:2] == [wrong, still_wrong] and t.feedback[0] == own_feedback
    assert t.feedback[1] != model_says_fine and t.answers[-1] == it["rationale"]


@pytest.mark.parametrize(
    ("n_imp", "n_plain", "ratio", "kept"),
    [(3, 10, 1.5, 2), (4, 10, 1.0, 4), (2, 1, 1.5, 1), (5, 10, -1, 10), (0, 4, 1.5, 0)],
)
def test_rebalance_as_the_original(n_imp, n_plain, ratio, kept):
    it = _items(1)[0]
    imp = [loop.Sample(f"i{k}", it, f"i{k}", loop.FEEDBACK) for k in range(n_imp)]
    plain = [loop.Sample(f"p{k}", it, f"p{k}", "Q:") for k in range(n_plain)]
    got_imp, got_plain = loop.rebalance(imp, plain, improve_data_ratio=ratio, seed=1)
    assert got_imp == imp and len(got_plain) == kept
    if ratio > 0:
        assert kept == min(math.ceil(n_imp / ratio), n_plain)


def test_gold_samples_end_with_the_all_correct_feedback_and_train_everything():
    it = _items(1)[0]
    (gold,) = loop.gold_samples([it], set())
    assert gold.att_start == "Q:" and gold.text.endswith(ALL_CORRECT)
    assert tasks.ARITHMETIC_INFO in gold.text  # issue 23, point 4: the header sentence
    record = loop.build_record(gold)
    assert {s["weight"] for s in record["segments"]} == {1.0}
    assert loop.gold_samples([it], {gold.text}) == []  # already collected: left out


def test_section_weights_and_no_masking_by_default():
    """Issue 23, point 4: the text before the weighted section is trained by default."""
    it = _items(1)[0]
    t = loop.Trajectory(it, ["junk", it["rationale"]], ["bad", "good " + ALL_CORRECT], True)
    improving, plain = loop.trajectory_samples(t)
    rec = loop.build_record(improving[0], self_improve_section_weight=1.5)
    weights = [s["weight"] for s in rec["segments"]]
    assert weights == [1.0, 1.0, 1.0, 1.5]
    assert rec["segments"][-1]["text"].startswith(loop.FEEDBACK)
    assert "\nUpdated Answer: Let's think step by step." in rec["text"]
    assert not rec["text"].rstrip().endswith(ALL_CORRECT)  # the update ends the sample
    masked = loop.build_record(improving[0], mask_before_att_start_text=True)
    assert [s["weight"] for s in masked["segments"]] == [0.0, 0.0, 0.0, 1.5]
    final = loop.build_record(plain[0])  # the final (attempt, all-correct feedback) turn
    assert final["text"].endswith(ALL_CORRECT) and final["segments"][-1]["weight"] == 1.5
    assert training.train_recipe  # the recipe default is the original's: no masking
    from chorus_tripost.recipes import Recipe

    assert Recipe().mask_before_att_start_text is False


def _record(it, answers, feedback, accepted=True, round_=0):
    return TrajectoryRecord(it["id"], it["task"], it, answers, feedback, accepted, round_)


def test_mixture_counts_dedup_and_gold_as_the_original():
    items = _items(4)
    right = [_record(it, [it["rationale"]], [loop.all_correct_feedback(it["rationale"])])
             for it in items[:2]]  # fmt: skip
    fixed = [
        _record(it, ["junk", it["rationale"]], ["bad", loop.all_correct_feedback(it["rationale"])])
        for it in items[2:]
    ]
    dropped = [_record(items[0], ["junk"], ["bad"], accepted=False)]
    # round 2 repeats round 1: every sample is a duplicate
    window = _items(6)
    samples, stats = training.mixture(
        [right + fixed + dropped, right + fixed], window, improve_data_ratio=1.5, seed=0
    )
    assert stats["improvement"] == 2
    assert stats["non_improvement"] == math.ceil(2 / 1.5)  # of 2 right + 2 final turns
    assert stats["duplicates"] == 6
    # gold = min(#non-improvement, #gold texts not collected yet): the 4 collected items'
    # gold texts equal their all-correct samples, so only the 2 other window items count
    assert stats["gold"] == min(stats["non_improvement"], 2) == 2
    assert len(samples) == stats["improvement"] + stats["non_improvement"] + stats["gold"]


def test_window_items_as_the_original():
    items = list(range(10))
    assert training.window_items(items, 4, 1) == [0, 1, 2, 3]
    assert training.window_items(items, 4, 2) == [4, 5, 6, 7]
    assert training.window_items(items, 4, 3) == [8, 9]  # the rest of the file
    assert training.window_items(items, 4, 4) == [0, 1, 2, 3]  # 12 % 10 = 2 -> 0


def test_attempt_prompt_is_a_token_prefix_of_every_record(tiny_model_dir):
    from transformers import AutoTokenizer

    from chorus_shared.training.examples import record_segments, tokenize_segments
    from chorus_tripost.generation import prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    items = _items(2) + tasks.load_items("date_understanding", "train")[:1]
    records = []
    for it in items:
        t = loop.Trajectory(it, ["junk", it["rationale"]], ["bad", "ok " + ALL_CORRECT], True)
        imp, plain = loop.trajectory_samples(t)
        records += [loop.build_record(s) for s in [*imp, *plain, *loop.gold_samples([it], set())]]
        records.append(loop.gold_sft_record(it))
    for r, it in zip(records, [it for it in items for _ in range(4)], strict=True):
        want = prompt_ids(loop.attempt_prompt(it), tok)
        ids, _ = tokenize_segments(record_segments(r, tok), tok)
        assert ids[: len(want)] == want, r["id"]


def test_raw_text_model_sets_every_attribute_of_the_hf_backend(tiny_model_dir):
    from chorus_shared.models import load_chat_model
    from chorus_tripost.generation import load_raw_model

    hf = load_chat_model(f"hf:{tiny_model_dir}")
    raw = load_raw_model(f"hf:{tiny_model_dir}")
    assert set(vars(hf)) <= set(vars(raw))


def test_raw_text_model_takes_a_base_model_without_chat_template(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chorus_tripost.generation import RawTextModel

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    model = RawTextModel(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tok, spec="base")
    assert tok.chat_template is None and model.batch_size == 16
    out = model.complete([["Q: 1 + 1 =", "\nAnswer:"]], SamplingParams(max_new_tokens=3))
    assert len(out) == 1 and out[0].completion_tokens <= 3


def test_verdict_error_is_not_a_right_answer():
    v = Verdict(False, "", parsed=False, error="verifier: HTTP 400")
    assert not v.correct and v.error
