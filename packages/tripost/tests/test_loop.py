import math

import pytest

from chorus_shared.models import Completion, SamplingParams
from chorus_tripost import loop, tasks


class ScriptedModel:
    """A raw-text model double: answers each prompt (question, header) from a function."""

    spec = "scripted"

    def __init__(self, by_question):
        self.by_question = by_question
        self.calls = 0

    def complete(self, prompts, params):
        self.calls += 1
        assert all(p[1] == loop.ANSWER for p in prompts)  # the header of the records
        return [Completion(text=self.by_question(p[0])) for p in prompts]


def _items(n=12):
    return tasks.generate_arithmetic(n, length=3, depth=2, seed=3)


def test_collect_counts_and_batches():
    items = _items()
    by_q = {}
    for k, it in enumerate(items):
        text = it["rationale"]
        if k % 3 == 1:  # wrong final response only
            text = text.rsplit("answer is", 1)[0] + "answer is 12345."
        elif k % 3 == 2:  # unreadable
            text = "no idea"
        by_q[loop.question_text(it)] = text
    model = ScriptedModel(lambda question: by_q[question])
    kept, stats = loop.collect(model, items)
    assert model.calls == 1  # every attempt in one batched call
    assert stats.attempts == 12 and stats.correct_first == 4 and stats.corrected == 8
    assert stats.dropped == 0 and len(kept) == 12
    improving, plain = loop.split_turns(kept)
    assert len(improving) == 8 and len(plain) == 4
    assert all("final_feedback" in t for t in improving)


def test_improver_that_never_fixes_is_dropped_after_five_rounds():
    items = _items(4)
    model = ScriptedModel(lambda content: "garbage")
    rounds = []

    def useless(its, attempts, verdicts):
        rounds.append(len(its))
        return ["still garbage"] * len(its)

    kept, stats = loop.collect(model, items, improve=useless, max_improvements=5)
    assert kept == [] and stats.dropped == 4 and rounds == [4] * 5


@pytest.mark.parametrize(
    ("n_imp", "n_plain", "ratio"), [(10, 50, 1.0), (7, 50, 2.0), (9, 4, 0.5), (3, 100, 0.3)]
)
def test_rebalance_exact_counts(n_imp, n_plain, ratio):
    improving = [{"id": f"i{k}"} for k in range(n_imp)]
    plain = [{"id": f"p{k}"} for k in range(n_plain)]
    imp, kept = loop.rebalance(improving, plain, improve_data_ratio=ratio, seed=1)
    assert imp == improving
    assert len(kept) == min(n_plain, math.ceil(n_imp / ratio))
    assert len({p["id"] for p in kept}) == len(kept)
    assert kept == loop.rebalance(improving, plain, improve_data_ratio=ratio, seed=1)[1]


def test_rebalance_rejects_bad_ratio():
    with pytest.raises(ValueError, match="improve_data_ratio"):
        loop.rebalance([], [], improve_data_ratio=0)


def test_records_round_trip_weights_and_counts():
    items = _items(6)
    by_q = {
        loop.question_text(it): (it["rationale"] if k < 2 else "bad") for k, it in enumerate(items)
    }
    kept, _ = loop.collect(ScriptedModel(lambda q: by_q[q]), items)
    improving, plain = loop.split_turns(kept)
    improving, plain = loop.rebalance(improving, plain, improve_data_ratio=4.0)
    assert len(plain) == 1  # ceil(4 / 4)
    records = loop.build_records(improving, plain, items[:3], self_improve_section_weight=1.5)
    assert len(records) == 4 + 1 + 3
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert r["text"] == "".join(s["text"] for s in r["segments"])
        assert r["text_att_start_text"] in r["text"]
        assert r["segments"][0]["weight"] == 0.0
    turn = records[0]
    assert turn["segments"][-1]["weight"] == 1.5
    assert turn["segments"][-1]["text"].startswith("\nFeedback: ")
    assert "\nUpdated Answer: Let's think step by step.\n(1)" in turn["text"]
    assert turn["text"].rstrip().endswith("The final response is also correct.")
    unmasked = loop.build_records(improving, [], [], mask_before_att_start_text=False)
    assert unmasked[0]["segments"][0]["weight"] == 1.0


def test_collect_with_a_tiny_random_model(tmp_path):
    from chorus_shared.testing import build_tiny_chat_model
    from chorus_tripost.generation import load_raw_model

    path = build_tiny_chat_model(tmp_path / "tiny")
    model = load_raw_model(f"hf:{path}")
    items = _items(3)
    kept, stats = loop.collect(model, items, params=SamplingParams(max_new_tokens=8))
    # Random weights never solve it; the scripted improver repairs each from the start.
    assert stats.correct_first == 0 and stats.corrected == 3 and len(kept) == 3


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
