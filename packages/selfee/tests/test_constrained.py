"""Constrained choice (offline teacher verdicts and judge scores) on a tiny real model, and
the teacher / judge / report paths that use it."""

from __future__ import annotations

import pytest

from chorus_selfee.constrained import ConstrainedChooser
from chorus_selfee.judge import SCORE_LINES, aggregate, judge_reviews, parse_scores
from chorus_selfee.records import PreferenceRecord, ReviewRecord
from chorus_selfee.teacher import VERDICT_CHOICES, generate_feedback_data
from chorus_shared.models import SamplingParams
from chorus_shared.models.hf import HFChatModel


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir) -> HFChatModel:
    return HFChatModel.from_pretrained(tiny_model_dir, dtype="float32")


def test_choice_is_the_models_preferred_first_token(tiny_chat) -> None:
    import torch

    tok = tiny_chat.tokenizer
    # Single-token choices: the pick must be the one with the highest next-token logit.
    vocab = [t for t in ("a", "b", "c", "d") if len(tok("x" + t)["input_ids"]) > 0]
    choices = [c for c in vocab if len(tok(c, add_special_tokens=False)["input_ids"]) == 1]
    assert len(choices) >= 2
    convs = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    chooser = ConstrainedChooser(tiny_chat, batch_size=2)
    picks = chooser.choose(convs, ["pre"] * 5, choices)
    assert chooser.calls == 3  # 5 prompts in batches of 2
    ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in choices]
    for conv, k in zip(convs, picks, strict=True):
        prompt = tiny_chat.render(conv) + tok("pre", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = tiny_chat.model(input_ids=torch.tensor([prompt])).logits[0, -1]
        assert k == int(torch.argmax(logits[ids]))


def test_every_pick_is_an_allowed_multi_token_string(tiny_chat) -> None:
    convs = [[{"role": "user", "content": f"rate {i}"}] for i in range(3)]
    chooser = ConstrainedChooser(tiny_chat)
    picks = chooser.choose(convs, [""] * 3, SCORE_LINES)
    assert all(parse_scores(SCORE_LINES[k]) is not None for k in picks)
    verdicts = chooser.choose(convs, ["Score: "] * 3, VERDICT_CHOICES)
    assert all(0 <= k < len(VERDICT_CHOICES) for k in verdicts)


def test_bad_choices_and_api_models_get_clear_errors(tiny_chat, scripted) -> None:
    chooser = ConstrainedChooser(tiny_chat)
    conv = [[{"role": "user", "content": "q"}]]
    with pytest.raises(ValueError, match="prefix-free"):
        chooser.choose(conv, [""], ["1 1", "1 10"])
    with pytest.raises(ValueError, match="distinct"):
        chooser.choose(conv, [""], ["a", "a"])
    with pytest.raises(ValueError, match="free-text path"):
        ConstrainedChooser(scripted(lambda c: "x"))


class FixedChooser:
    """A chooser double: returns scripted indices and records what it was asked."""

    def __init__(self, picks):
        self.picks = list(picks)
        self.asked = []

    def choose(self, conversations, prefixes, choices):
        self.asked.append((list(prefixes), tuple(choices)))
        out, self.picks = self.picks[: len(conversations)], self.picks[len(conversations) :]
        return out


def test_teacher_constrained_verdict_drives_the_loop(scripted) -> None:
    def reply(conv):
        text = conv[-1]["content"]
        if text.endswith("Critique:"):
            assert "Revision is not needed" not in text  # critique-only prompt
            return "Too short. Score: 2/10 Revision is not needed"  # its own verdict is cut
        return "REVISED" if text.endswith("Revision:") else "first"

    needed = VERDICT_CHOICES.index("3/10\nRevision is needed")
    done = VERDICT_CHOICES.index("9/10\nRevision is not needed")
    chooser = FixedChooser([needed, done])
    items = [{"id": "i0", "instruction": "task", "input": ""}]
    rec = generate_feedback_data(
        scripted(reply), items, SamplingParams(), max_iterations=3, chooser=chooser
    )[0]
    assert rec["iteration"] == 2 and rec["output"] == "REVISED"
    assert rec["outputs"][0]["feedback"] == "Too short.\n\nScore: 3/10\nRevision is needed"
    assert rec["missing_verdicts"] == 0
    assert chooser.asked[0][0] == ["Too short.\n\nScore: "]


def _items(qs, orders=("model-first", "reference-first")):
    return [
        {"id": f"{q['id']}-{o}", "question": q["id"], "category": q["category"],
         "instruction": q["instruction"], "order": o, "model_answer": "mine",
         "reference_answer": "ref"}
        for q in qs
        for o in orders
    ]  # fmt: skip


def test_judge_constrained_scores_both_orders(scripted) -> None:
    from chorus_selfee.datasets import load_instructions
    from chorus_shared.data import load_dataset_records

    prompts = {p["category"]: p for p in load_dataset_records("vicuna80-judge", "test")}
    qs = [q for q in load_instructions("vicuna80") if q["category"] == "generic"][:1]
    qs += [q for q in load_instructions("vicuna80") if q["category"] == "math"][:1]
    # q1 model-first "8 6", reference-first "7 9"; q2 model-first "4 8", reference-first "5 5"
    picks = [SCORE_LINES.index(f"{a} {b}\n") for a, b in ((8, 6), (7, 9), (4, 8), (5, 5))]
    never = scripted(lambda c: pytest.fail("constrained judge must not generate free text"))
    recs = judge_reviews(never, prompts, _items(qs), SamplingParams(), FixedChooser(picks))
    m = aggregate([ReviewRecord.from_json(r) for r in recs])
    assert m["parse_rate"] == 1.0
    assert m["per_group"]["general"]["relative"] == pytest.approx(17 / 13)
    assert m["per_group"]["math"]["relative"] == pytest.approx(9 / 13)
    assert m["relative"] == pytest.approx(26 / 26)


def test_token_logprobs_match_a_direct_forward(tiny_chat) -> None:
    import torch

    tok = tiny_chat.tokenizer
    choices = [c for c in ("1", "2") if len(tok(c, add_special_tokens=False)["input_ids"]) == 1]
    assert len(choices) == 2
    convs = [[{"role": "user", "content": "short"}], [{"role": "user", "content": "a longer one"}]]
    chooser = ConstrainedChooser(tiny_chat)
    got = chooser.token_logprobs(convs, ["Assistant "] * 2, choices)  # padded batch of 2
    ids = [tok(c, add_special_tokens=False)["input_ids"][0] for c in choices]
    for conv, row in zip(convs, got, strict=True):
        prompt = tiny_chat.render(conv) + tok("Assistant ", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = tiny_chat.model(input_ids=torch.tensor([prompt])).logits[0, -1]
        want = torch.log_softmax(logits.float(), -1)[ids].tolist()
        assert row == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="single tokens"):
        chooser.token_logprobs(convs, ["", ""], ["1 1", "2"])


class FixedLogprobs:
    def __init__(self, rows):
        self.rows = rows
        self.prefixes = []

    def token_logprobs(self, conversations, prefixes, choices):
        assert list(choices) == ["1", "2"] and len(conversations) == len(self.rows)
        self.prefixes = list(prefixes)
        return self.rows


def test_judge_likelihood_cancels_position_bias() -> None:
    from chorus_selfee.datasets import load_instructions
    from chorus_selfee.judge import aggregate_pairwise, judge_likelihood
    from chorus_shared.data import load_dataset_records

    prompts = {p["category"]: p for p in load_dataset_records("vicuna80-judge", "test")}
    qs = load_instructions("vicuna80")
    qs = [next(q for q in qs if q["category"] == c) for c in ("generic", "coding", "math")]
    # Each question: (model-first [lp1, lp2]), (reference-first [lp1, lp2]).
    rows = [
        [-0.1, -2.0],  # generic: "1" preferred in both orders (pure position bias) ...
        [-0.2, -1.9],  # ... margins +1.9 and -1.7: model wins by 0.1
        [-1.0, -0.5],  # coding: model-first margin -0.5
        [-0.5, -1.0],  # reference-first margin -0.5: reference wins
        [-0.7, -0.7],  # math: no preference either way: a tie
        [-0.7, -0.7],
    ]
    judge = FixedLogprobs(rows)
    items = [{**it, "id": it["question"]} for it in _items(qs, ("both",))]
    recs = [PreferenceRecord.from_json(r) for r in judge_likelihood(judge, prompts, items)]
    assert judge.prefixes == ["Assistant "] * 6
    assert [r.winner for r in recs] == ["model", "reference", "tie"]
    assert recs[0].logit == pytest.approx(0.1)
    m = aggregate_pairwise(recs)
    assert m["win_rate"] == pytest.approx(1.5 / 3)
    assert {g: v["win_rate"] for g, v in m["per_group"].items()} == {
        "general": 1.0,
        "coding": 0.0,
        "math": 0.5,
    }
