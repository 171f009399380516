"""Issue 23, points 5 and 7: the LLM improver as the original's, and the LMSI and
FT-from-demonstrations baselines as the paper's."""

from __future__ import annotations

import pytest

from chorus_shared.models import Completion
from chorus_shared.testing.plugin import FakeChatModel
from chorus_tripost import collection, loop, tasks, training
from chorus_tripost.improver import LLMImprover
from chorus_tripost.recipes import load_recipe
from chorus_tripost.records import TrajectoryRecord
from chorus_tripost.verifier import Failure, verify


class Sampler:
    """A raw-text model double that records the sampling parameters of each call."""

    def __init__(self, texts):
        self.texts = texts
        self.params = []

    def complete(self, prompts, params):
        self.params.append(params)
        return [Completion(text=self.texts[k % len(self.texts)]) for k in range(len(prompts))]


def test_lmsi_samples_at_1_2_and_keeps_answers_that_are_the_gold_one():
    items = tasks.load_items("multistep_arithmetic", "train")[:2]
    recipe = load_recipe("arithmetic_default", method="lmsi")
    model = Sampler([items[0]["rationale"]])  # right for item 0, wrong for item 1
    records = collection._lmsi_window(recipe, model, items, seed=40, round_=0)
    assert model.params[0].temperature == collection.LMSI_TEMPERATURE == 1.2
    assert [r["accepted"] for r in records] == [True, False]


def test_lmsi_training_records_add_answer_only_copies_and_drop_duplicates():
    it = tasks.load_items("multistep_arithmetic", "train")[0]
    right = TrajectoryRecord(it["id"], it["task"], it, [it["rationale"]], [], True, 0)
    again = TrajectoryRecord(it["id"], it["task"], it, [it["rationale"]], [], True, 1)
    wrong = TrajectoryRecord(it["id"], it["task"], it, ["(1) x"], [], False, 0)
    records = training.lmsi_records([[right, wrong], [again]])
    assert len(records) == 2  # the rationale once, its answer-only copy once
    answer_only = records[1]["text"]
    assert answer_only.endswith(f"\nAnswer: So the answer is {it['answer']}.")
    assert all(r["text_att_start_text"] == "\nAnswer:" for r in records)
    recipe = load_recipe("arithmetic_llama7b")
    assert (recipe.lmsi_rounds, recipe.lmsi_epochs) == (5, 5.0)


def test_ft_demo_learns_from_the_llms_own_attempts_unless_planted_is_asked():
    with pytest.raises(ValueError, match="demo_source: planted"):
        load_recipe("arithmetic_default", method="ft_demo", demo_source="llm")
    recipe = load_recipe("arithmetic_default", method="ft_demo", demo_source="planted")
    items = tasks.load_items("multistep_arithmetic", "train")[:2]
    helpers = (loop.scripted_verifier, loop.scripted_improver)
    gens, errors = collection._attempts(recipe, None, items, 40, helpers)
    assert errors == [None, None]
    assert all(g[0][0] != it["rationale"] for g, it in zip(gens, items, strict=True))


def test_the_llm_improver_keeps_the_correct_prefix_and_samples_at_0_7():
    it = tasks.load_items("multistep_arithmetic", "train")[0]
    lines = it["rationale"].splitlines()
    wrong_lines = list(lines)
    wrong_lines[2] = wrong_lines[2].rsplit("=", 1)[0] + "= 999."
    wrong = "\n".join(wrong_lines)
    verdict = verify(it, wrong)
    assert verdict.error_index == 2
    rest = "\n".join(lines[2:])
    llm = FakeChatModel(lambda conv: rest)
    (out,) = LLMImprover(llm)([it], [wrong], [verdict])
    assert out == it["rationale"]  # kept steps (1)-(2) + the LLM's continuation
    assert llm.params[0].temperature == 0.7
    assert "Keep these steps unchanged" in llm.calls[0][0][-1]["content"]


def test_a_failed_improver_reply_makes_an_errored_trajectory():
    it = tasks.load_items("multistep_arithmetic", "train")[0]
    trajs = loop.repair(
        [it], [(["junk"], [])], improve=lambda i, a, v: [Failure("improver: HTTP 400")]
    )
    assert trajs[0].error == "improver: HTTP 400" and not trajs[0].accepted
