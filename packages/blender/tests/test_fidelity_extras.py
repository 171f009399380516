"""Issue 22, points 5-6: the original GenFuser's input format and generation, and the
ranker's BCE / MSE losses as the original computes them."""

from __future__ import annotations

import math

import pytest
import torch

from chorus_blender.fuser import GENFUSER_REQUEST, fuse_completions, genfuser_input, token_cutter
from chorus_blender.training import ranker_loss


def test_genfuser_input_is_the_originals_layout():
    text = genfuser_input("Say hi", ["hello", "hey there"], input_text="to Bob")
    assert text == (
        "Instruction: Say hi</s>Input: to Bob</s>"
        "Candidate 0: <extra_id_0>:hello</s>Candidate 1: <extra_id_1>:hey there</s>"
        + GENFUSER_REQUEST
    )
    assert GENFUSER_REQUEST == "Summarize candidates into a better one for the given instruction:"


def test_genfuser_cuts_candidates_to_tokens_plus_dots(tiny_bert):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    cut = token_cutter(tok, 3, marker="...")
    assert cut("one two three four five") == "one two three..."
    assert cut("one two") == "one two"


class _Recorder:
    spec = "fake"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def chat(self, conversations, params):
        from chorus_shared.models import Completion

        self.seen += [c[-1]["content"] for c in conversations]
        return [Completion(text="ok") for _ in conversations]


def test_fuse_format_genfuser_sends_the_originals_text():
    model = _Recorder()
    fuse_completions(model, ["Say hi"], [["a", "b"]], fuse_format="genfuser")
    assert model.seen == [genfuser_input("Say hi", ["a", "b"])]
    with pytest.raises(ValueError, match="fuse_format"):
        fuse_completions(model, ["x"], [["a"]], fuse_format="other")


def test_seq2seq_genfuser_generates_with_beams(tiny_bert, monkeypatch):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from chorus_blender.fuser import Seq2SeqGenFuser

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok), d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = T5ForConditionalGeneration(config)
    seen: dict = {}
    original = model.generate

    def spy(**kwargs):
        seen.update({k: v for k, v in kwargs.items() if k != "input_ids"})
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    fuser = Seq2SeqGenFuser(model, tok, max_new_tokens=4)
    [reply] = fuse_completions(fuser, ["Say hi"], [["a", "b"]], fuse_format="genfuser")
    assert reply.error is None and isinstance(reply.text, str)
    assert seen["num_beams"] == 4 and seen["max_new_tokens"] == 4 and not seen["do_sample"]


def _scores(*rows: float) -> torch.Tensor:
    return torch.tensor([[r] for r in rows])


def test_bce_loss_as_the_original():
    s1, s2 = _scores(0.5, -1.0), _scores(0.2, 2.0)
    labels = torch.tensor([1.0, -1.0])  # A better, then B better
    got = ranker_loss("bce", s1, s2, labels, torch.zeros(2), torch.zeros(2))

    def bce(x: float, y: float) -> float:
        return -(
            y * math.log(1 / (1 + math.exp(-x))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-x)))
        )

    left = (bce(0.5, 1) + bce(-1.0, 0)) / 2
    right = (bce(0.2, 0) + bce(2.0, 1)) / 2
    assert float(got) == pytest.approx((left + right) / 2, rel=1e-6)


def test_mse_loss_as_the_original():
    s1, s2 = _scores(0.5, -1.0), _scores(0.2, 2.0)
    g1, g2 = torch.tensor([0.9, 0.1]), torch.tensor([0.3, 0.6])
    got = ranker_loss("mse", s1, s2, torch.tensor([1.0, -1.0]), g1, g2)
    mse1 = ((0.5 - 0.9) ** 2 + (-1.0 - 0.1) ** 2) / 2
    mse2 = ((0.2 - 0.3) ** 2 + (2.0 - 0.6) ** 2) / 2
    cross = (2 * (0.5 - 0.2) * (0.9 - 0.3) + 2 * (-1.0 - 2.0) * (0.1 - 0.6)) / 2
    assert float(got) == pytest.approx(mse1 + mse2 - cross, rel=1e-6)


def test_pairwise_loss_is_the_default_and_unknown_losses_are_refused():
    from chorus_blender.recipes import load_recipe

    s1, s2 = _scores(0.5), _scores(0.2)
    got = ranker_loss("pairwise", s1, s2, torch.tensor([1.0]), torch.zeros(1), torch.zeros(1))
    assert float(got) == pytest.approx(math.log(1 + math.exp(-0.3)), rel=1e-6)
    assert load_recipe("ranker_minilm_offline").loss == "pairwise"
    with pytest.raises(ValueError, match="loss must be one of"):
        load_recipe("ranker_minilm_offline", loss="hinge")
