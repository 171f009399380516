"""PairRanker: encoding budgets, batching, save/load, and loading PairRM-layout checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from chorus_blender.ranker import (
    CAND1_TOKEN,
    CAND2_TOKEN,
    SOURCE_TOKEN,
    PairRanker,
    RankerCheckpointError,
    RankerConfig,
)

SOURCES = ["What is 2 + 2?", "Name a colour.", "Say hi " * 40]
A = ["4", "Blue, the colour of the sky on a clear day.", "hi"]
B = ["The answer is five.", "red", "hello there " * 30]


def test_markers_and_budgets(tiny_bert):
    ranker = PairRanker.from_backbone(
        tiny_bert, RankerConfig(source_max_length=8, candidate_max_length=5, max_length=40)
    )
    tok = ranker.tokenizer
    ids = ranker.encode_triple("one two three", "alpha beta gamma delta " * 5, "x " * 50)
    s, a, b = ranker.marker_ids
    assert ids.count(s) == ids.count(a) == ids.count(b) == 1
    assert ids[0] == tok.cls_token_id and ids[1] == s
    src_len = ids.index(a) - 2 - 1  # [CLS] <src> ... [SEP]
    assert src_len == 3
    # 5 unused source tokens -> each candidate gets 5 + 5 // 2 = 7 tokens
    cand_a = ids[ids.index(a) + 1 : ids.index(b) - 1]
    cand_b = ids[ids.index(b) + 1 : -1]
    assert len(cand_a) == len(cand_b) == 7
    long_src = ranker.encode_triple("word " * 100, "a", "b")
    assert long_src.index(a) - 3 == 8  # the source is cut to its budget
    assert len(ranker.encode_triple("w " * 100, "c " * 100, "d " * 100)) <= 40


def test_batched_logits_equal_one_at_a_time(tiny_bert):
    ranker = PairRanker.from_backbone(tiny_bert).eval()
    batched = ranker.pair_logits(SOURCES, A, B, batch_size=8, precision="fp32")
    single = [
        ranker.pair_logits([s], [a], [b], precision="fp32")[0]
        for s, a, b in zip(SOURCES, A, B, strict=True)
    ]
    tiny_batches = ranker.pair_logits(SOURCES, A, B, batch_size=1, precision="fp32")
    assert batched == pytest.approx(single, abs=1e-5)
    assert tiny_batches == pytest.approx(single, abs=1e-5)
    # bf16 autocast stays close to fp32 (it rounds the matmuls' inputs to 8 mantissa bits).
    bf16 = ranker.pair_logits(SOURCES, A, B, batch_size=8, precision="bf16")
    assert bf16 == pytest.approx(single, abs=5e-2) and bf16 != single


def test_precision_auto_follows_the_hardware(monkeypatch):
    import chorus_shared.models.hf as hf
    from chorus_blender.ranker import use_bf16

    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: True)
    assert use_bf16("auto", "cpu") and not use_bf16("fp32", "cpu")
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: False)
    assert not use_bf16("auto", "cpu") and use_bf16("bf16", "cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        use_bf16("fp16", "cpu")


def test_save_and_load_round_trip(tiny_bert, tmp_path):
    ranker = PairRanker.from_backbone(tiny_bert, RankerConfig(source_max_length=64))
    before = ranker.pair_logits(SOURCES, A, B)
    folder = ranker.save_pretrained(tmp_path / "ranker")
    loaded = PairRanker.from_pretrained(folder)
    assert loaded.config.source_max_length == 64
    assert loaded.marker_ids == ranker.marker_ids
    assert loaded.pair_logits(SOURCES, A, B) == pytest.approx(before, abs=1e-5)


def test_loads_a_pairrm_layout_checkpoint(tiny_deberta, tmp_path):
    """A folder laid out like llm-blender/PairRM-hf: DeBERTa-v2, pytorch_model.bin, PairRM keys."""
    from transformers import AutoTokenizer, DebertaV2Model

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_deberta))
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN]}
    )
    torch.manual_seed(3)
    backbone = DebertaV2Model.from_pretrained(str(tiny_deberta))
    backbone.resize_token_embeddings(len(tokenizer))
    hidden = backbone.config.hidden_size
    head = {
        "head_layer.1.weight": torch.randn(hidden, 2 * hidden),
        "head_layer.1.bias": torch.randn(hidden),
        "head_layer.4.weight": torch.randn(1, hidden),
        "head_layer.4.bias": torch.randn(1),
    }
    state = {f"pretrained_model.{k}": v for k, v in backbone.state_dict().items()} | head
    folder = tmp_path / "pairrm"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    tokenizer.save_pretrained(folder)
    config = backbone.config.to_dict()
    ids = tokenizer.convert_tokens_to_ids([SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN])
    config.update(
        architectures=["DebertaV2PairRM"],
        n_tasks=1,
        drop_out=0.05,
        source_prefix_id=ids[0],
        cand1_prefix_id=ids[1],
        cand2_prefix_id=ids[2],
        cand_prefix_id=ids[1],
    )
    (folder / "config.json").write_text(json.dumps(config))

    ranker = PairRanker.from_pretrained(folder)
    assert isinstance(ranker.pretrained_model, DebertaV2Model)
    # The logit by hand from the stored weights: head on concat(source, cand) at the markers.
    enc = ranker.encode_triple(SOURCES[0], A[0], B[0])
    with torch.no_grad():
        h = backbone(input_ids=torch.tensor([enc])).last_hidden_state[0]
        pos = [enc.index(i) for i in ids]

        def score(c: int) -> torch.Tensor:
            x = torch.cat([h[pos[0]], h[pos[c]]])
            x = torch.tanh(head["head_layer.1.weight"] @ x + head["head_layer.1.bias"])
            return head["head_layer.4.weight"] @ x + head["head_layer.4.bias"]

        expected = float((score(1) - score(2)).mean())
    fp32 = ranker.pair_logits(SOURCES[:1], A[:1], B[:1], precision="fp32")[0]
    assert fp32 == pytest.approx(expected, abs=1e-4)
    # and it saves back in the same layout and loads again with the same logits
    again = PairRanker.from_pretrained(ranker.save_pretrained(tmp_path / "again"))
    assert again.pair_logits(SOURCES, A, B) == pytest.approx(ranker.pair_logits(SOURCES, A, B))


def test_plain_encoder_folder_is_refused_with_a_fix(tiny_bert):
    with pytest.raises(RankerCheckpointError, match="from_backbone"):
        PairRanker.from_pretrained(tiny_bert)


def test_missing_folder_names_the_problem(tmp_path):
    with pytest.raises(RankerCheckpointError, match=r"ranker folder .* does not exist"):
        PairRanker.from_pretrained(tmp_path / "nope")


def test_input_without_markers_is_a_clear_error(tiny_bert):
    ranker = PairRanker.from_backbone(tiny_bert)
    batch = ranker.collate([[101, 2000, 102]])
    with pytest.raises(RankerCheckpointError, match="marker token"):
        ranker(**batch)


def test_budget_beyond_the_encoders_positions_is_refused(tiny_bert):
    with pytest.raises(ValueError, match="exceeds the encoder's 2048 positions"):
        PairRanker.from_backbone(tiny_bert, RankerConfig(max_length=4096))
