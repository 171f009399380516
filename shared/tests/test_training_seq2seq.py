"""chorus_shared.training's seq2seq path (Flan-T5-style): examples, loss, a real short run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chorus_shared.training import NoTrainableTokensError, load_train_recipe, train
from chorus_shared.training.seq2seq import (
    Seq2SeqCollator,
    build_seq2seq_examples,
    seq2seq_token_loss,
    source_and_target,
)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from chorus_shared.testing import build_tiny_seq2seq_model

    return build_tiny_seq2seq_model(tmp_path_factory.mktemp("t5") / "model")


@pytest.fixture(scope="module")
def t5_tokenizer(tiny_t5: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_t5)


def test_source_and_target_from_each_record_shape() -> None:
    chat = {
        "id": "c",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Q?"},
            {"role": "assistant", "content": "A."},
        ],
    }
    assert source_and_target(chat) == ("Be brief.\n\nQ?", "A.")
    segments = {"id": "s", "segments": [{"text": "in ", "weight": 0}, {"text": "out"}]}
    assert source_and_target(segments) == ("in ", "out")
    assert source_and_target({"source": "x", "target": "y"}) == ("x", "y")
    with pytest.raises(ValueError, match="both 'source' and 'target'"):
        source_and_target({"id": "b", "source": "x"})
    with pytest.raises(ValueError, match="no message with a positive weight"):
        source_and_target({"id": "m", "messages": [{"role": "user", "content": "hi"}]})


def test_examples_end_with_eos_and_cuts_are_counted(t5_tokenizer) -> None:
    tok = t5_tokenizer
    records = [
        {"id": "a", "source": "The answer is 42.", "target": "yes"},
        {"id": "long", "source": "step by step " * 40, "target": "no " * 40},
        {"id": "empty", "source": "hi", "target": ""},
    ]
    examples, stats = build_seq2seq_examples(
        records, tok, max_length=16, max_target_length=8, truncation="left"
    )
    a, long = examples
    assert a.labels == tok("yes", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert a.input_ids == tok("The answer is 42.")["input_ids"]
    assert len(long.input_ids) == 16 and len(long.labels) == 8
    # left truncation keeps the end of the source
    assert long.input_ids == tok("step by step " * 40)["input_ids"][-16:]
    assert (stats.n_truncated, stats.n_empty, stats.empty_ids) == (1, 1, ["empty"])
    with pytest.raises(NoTrainableTokensError):
        build_seq2seq_examples(records[2:], tok, max_length=16, max_target_length=8)


def test_seq2seq_loss_is_the_mean_target_cross_entropy() -> None:
    collate = Seq2SeqCollator(pad_token_id=0)
    batch = collate(
        [{"input_ids": [5, 6, 7], "labels": [3, 4, 1]}, {"input_ids": [9], "labels": [2]}]
    )
    assert batch["input_ids"][1].tolist() == [9, 0, 0]
    assert batch["attention_mask"][1].tolist() == [1, 0, 0]
    assert batch["labels"][1].tolist() == [2, -100, -100]
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 10)
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[0, 0, 3] + logp[0, 1, 4] + logp[0, 2, 1] + logp[1, 0, 2]) / 4
    assert torch.allclose(seq2seq_token_loss(logits, batch["labels"]), expected, atol=1e-6)
    # With the effective batch's count (gradient accumulation), the same sum over 8 targets.
    assert torch.allclose(seq2seq_token_loss(logits, batch["labels"], 8), expected / 2, atol=1e-6)


def _fuse_records(n: int = 8) -> list[dict]:
    return [
        {
            "id": str(i),
            "messages": [
                {"role": "user", "content": f"Candidate 1: {i} step by step. Candidate 2: {i}."},
                {"role": "assistant", "content": "The answer is 42."},
            ],
        }
        for i in range(n)
    ]


def test_seq2seq_training_lowers_loss_and_the_run_loads(tiny_t5: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from chorus_shared.models import SamplingParams, load_chat_model

    recipe = load_train_recipe(
        {
            "model": f"hf:{tiny_t5}",
            "max_steps": 30,
            "learning_rate": 1e-2,
            "per_device_train_batch_size": 4,
            "max_length": 64,
            "max_target_length": 16,
            "report_to": "none",
            "logging_steps": 5,
            "save_steps": 1000,
            "warmup_ratio": 0.0,
            "lr_scheduler_type": "constant",
            "extra_args": {"use_cpu": True},
        }
    )
    assert recipe.architecture == "auto"  # detected from the config: is_encoder_decoder
    result = train(recipe, _fuse_records(), tmp_path / "run")
    assert result.metrics["last_loss"] < 0.5 * result.metrics["first_loss"]
    assert result.build_stats.n_examples == 8

    # The saved folder holds the trained weights: its loss on a training pair is far below
    # the untrained model's.
    tok = AutoTokenizer.from_pretrained(result.model_dir)
    batch = Seq2SeqCollator(tok.pad_token_id)(
        [
            {
                "input_ids": tok("Candidate 1: 3 step by step. Candidate 2: 3.")["input_ids"],
                "labels": tok("The answer is 42.", add_special_tokens=False)["input_ids"]
                + [tok.eos_token_id],
            }
        ]
    )

    def loss_of(folder: Path) -> float:
        model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        with torch.no_grad():
            return float(model(**batch).loss)

    assert loss_of(result.model_dir) < 0.5 * loss_of(tiny_t5)
    # The run folder loads as a chat model (seq2seq generation) and writes the learnt target.
    model = load_chat_model(f"hf:{tmp_path / 'run'}", dtype="float32")
    (completion,) = model.chat(
        [[{"role": "user", "content": "Candidate 1: 5 step by step. Candidate 2: 5."}]],
        SamplingParams(max_new_tokens=12),
    )
    assert completion.text == "The answer is 42." and completion.finish_reason == "stop"


def test_recipe_rejects_bad_seq2seq_settings() -> None:
    with pytest.raises(ValueError, match="architecture must be one of"):
        load_train_recipe({"model": "default", "architecture": "encoder"})
    with pytest.raises(ValueError, match="max_target_length"):
        load_train_recipe({"model": "default", "max_target_length": 1})
