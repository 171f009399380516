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


def _original_part(tok, marker: str, text: str, max_length: int) -> list[int]:
    # What the original's CrossCompareCollator does for one part, written out independently
    # of encode_triple: the marker glued to the text, encoded with the tokenizer's own
    # special tokens and truncated to the budget ([CLS] marker text [SEP]).
    return tok(marker + text, max_length=max_length, truncation=True)["input_ids"]


@pytest.mark.parametrize(
    ("source", "cand_a", "cand_b"),
    [
        ("one two three", "alpha beta gamma delta " * 5, "x " * 50),  # short source
        ("word " * 100, "a", "b c"),  # the source is cut to its budget
        ("q", "", "same"),  # an empty candidate keeps its [CLS] marker [SEP]
    ],
)
def test_layout_and_budgets_match_the_originals_collator(tiny_bert, source, cand_a, cand_b):
    src_max, cand_max = 8, 5
    ranker = PairRanker.from_backbone(
        tiny_bert,
        RankerConfig(
            source_max_length=src_max,
            candidate_max_length=cand_max,
            max_length=src_max + 2 * cand_max,
        ),
    )
    tok = ranker.tokenizer
    src = _original_part(tok, SOURCE_TOKEN, source, src_max)
    # The unused source budget goes to the candidates, half each, specials included.
    budget = cand_max + (src_max - len(src)) // 2
    expected = [
        *src,
        *_original_part(tok, CAND1_TOKEN, cand_a, budget),
        *_original_part(tok, CAND2_TOKEN, cand_b, budget),
    ]
    ids = ranker.encode_triple(source, cand_a, cand_b)
    assert ids == expected
    # Each candidate keeps its own [CLS] (the original's layout).
    assert ids.count(tok.cls_token_id) == 3 and ids.count(tok.sep_token_id) == 3


def test_pairrm_budgets_are_2048_minus_the_source_halved(tiny_bert):
    ranker = PairRanker.from_backbone(tiny_bert)  # PairRM's 1224 / 412 / 2048
    ids = ranker.encode_triple("short question", "y " * 3000, "z " * 3000)
    _, a, b = ranker.marker_ids
    src_len = ids.index(a) - 1  # up to the candidate's [CLS]
    assert ids.index(b) - ids.index(a) == (2048 - src_len) // 2
    assert len(ids) <= 2048


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
        use_bf16("fp8", "cpu")


def test_default_precision_is_the_originals(tiny_bert, monkeypatch):
    import chorus_shared.models.hf as hf
    from chorus_blender.ranker import autocast_dtype

    # Even on a CPU with native bf16, the default stays the original's fp32 (bf16 is a flag).
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("original", "cpu") is None
    assert autocast_dtype("original", "cuda") == torch.float16  # the original halves on GPU
    assert autocast_dtype("bf16", "cpu") == torch.bfloat16
    ranker = PairRanker.from_backbone(tiny_bert).eval()
    assert ranker.default_precision == "original"
    default = ranker.pair_logits(SOURCES, A, B)
    assert default == ranker.pair_logits(SOURCES, A, B, precision="fp32")


def test_save_and_load_round_trip(tiny_bert, tmp_path):
    ranker = PairRanker.from_backbone(tiny_bert, RankerConfig(source_max_length=64))
    before = ranker.pair_logits(SOURCES, A, B)
    folder = ranker.save_pretrained(tmp_path / "ranker")
    loaded = PairRanker.from_pretrained(folder)
    assert loaded.config.source_max_length == 64
    assert loaded.marker_ids == ranker.marker_ids
    assert loaded.pair_logits(SOURCES, A, B) == pytest.approx(before, abs=1e-5)


def _pairrm_weights(tiny_deberta, tokenizer):
    """A DeBERTa-v2 backbone resized to ``tokenizer`` and a random head, in PairRM's key names
    (``pretrained_model.*``, ``head_layer.{1,4}.*``) plus the ``position_ids`` buffer that
    older transformers stored."""
    from transformers import DebertaV2Model

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
    state["pretrained_model.embeddings.position_ids"] = torch.arange(2048).unsqueeze(0)
    return backbone, head, state


def _logit_by_hand(backbone, head, enc, ids) -> float:
    # The logit from the stored weights: head on concat(source, cand) at the markers.
    with torch.no_grad():
        h = backbone(input_ids=torch.tensor([enc])).last_hidden_state[0]
        pos = [enc.index(i) for i in ids]

        def score(c: int) -> torch.Tensor:
            x = torch.cat([h[pos[0]], h[pos[c]]])
            x = torch.tanh(head["head_layer.1.weight"] @ x + head["head_layer.1.bias"])
            return head["head_layer.4.weight"] @ x + head["head_layer.4.bias"]

        return float((score(1) - score(2)).mean())


def test_loads_a_pairrm_hf_layout_checkpoint(tiny_deberta, tmp_path):
    """A folder laid out like llm-blender/PairRM-hf: the DeBERTa config with the marker ids."""
    from transformers import AutoTokenizer, DebertaV2Model

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_deberta))
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN]}
    )
    backbone, head, state = _pairrm_weights(tiny_deberta, tokenizer)
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
    enc = ranker.encode_triple(SOURCES[0], A[0], B[0])
    fp32 = ranker.pair_logits(SOURCES[:1], A[:1], B[:1], precision="fp32")[0]
    assert fp32 == pytest.approx(_logit_by_hand(backbone, head, enc, ids), abs=1e-4)
    # and it saves back in the same layout and loads again with the same logits
    again = PairRanker.from_pretrained(ranker.save_pretrained(tmp_path / "again"))
    assert again.pair_logits(SOURCES, A, B) == pytest.approx(ranker.pair_logits(SOURCES, A, B))


def test_loads_the_pairrm_rankerconfig_layout(tiny_deberta, tmp_path):
    """A folder laid out like llm-blender/PairRM (what the README and TRL load): the original's
    RankerConfig as config.json, the markers only as the tokenizer's added tokens, a stored
    position_ids buffer. It used to raise RankerCheckpointError."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_deberta))
    # The original's collator adds these four with add_tokens, in this order.
    tokenizer.add_tokens([SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN, "<|candidate|>"])
    backbone, head, state = _pairrm_weights(tiny_deberta, tokenizer)
    folder = tmp_path / "PairRM"
    folder.mkdir()
    torch.save(state, folder / "pytorch_model.bin")
    tokenizer.save_pretrained(folder)
    config = {
        "ranker_type": "pairranker",
        "model_type": "deberta",
        "model_name": str(tiny_deberta),  # the real one: microsoft/deberta-v3-large
        "source_maxlength": 64,
        "candidate_maxlength": 32,
        "n_tasks": 1,
        "drop_out": 0.05,
        "loss_type": "instructgpt",
        "inference_mode": "bubble",
        "fp16": True,
    }
    (folder / "config.json").write_text(json.dumps(config))

    ranker = PairRanker.from_pretrained(folder)
    ids = tokenizer.convert_tokens_to_ids([SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN])
    assert ranker.marker_ids == tuple(ids)
    assert (ranker.config.source_max_length, ranker.config.candidate_max_length) == (64, 32)
    assert ranker.config.max_length == 64 + 2 * 32
    enc = ranker.encode_triple(SOURCES[0], A[0], B[0])
    logit = ranker.pair_logits(SOURCES[:1], A[:1], B[:1])[0]
    assert logit == pytest.approx(_logit_by_hand(backbone, head, enc, ids), abs=1e-4)


def test_rankerconfig_layout_knows_pairrms_backbone_offline():
    from chorus_blender.ranker import KNOWN_BACKBONES

    values = KNOWN_BACKBONES["microsoft/deberta-v3-large"]
    assert (values["hidden_size"], values["num_hidden_layers"], values["vocab_size"]) == (
        1024,
        24,
        128100,
    )


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
