"""chorus_shared.training: weighted examples, loss, recipes and short real training runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from chorus_shared.training import (
    NoTrainableTokensError,
    WeightedCollator,
    build_examples,
    config_path,
    load_train_recipe,
    train,
    weighted_token_loss,
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def merging_tokenizer():
    """A BPE tokenizer that has learnt 'answer' (and more) as one token: merges cross 'ans|wer'."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(["the answer is", "answering answers"] * 50, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")


def _target_text(example, tok) -> str:
    pairs = zip(example.input_ids, example.weights, strict=True)
    return tok.decode([i for i, w in pairs if w > 0])


def test_segment_labels_exact_when_merges_cross_the_boundary(merging_tokenizer) -> None:
    tok = merging_tokenizer
    # Joint tokenization merges across the boundary, so a char-offset mapping would be off.
    assert len(tok("the answer is")["input_ids"]) < len(tok("the ans")["input_ids"]) + len(
        tok("wer is")["input_ids"]
    )
    record = {
        "id": "a",
        "segments": [{"text": "the ans", "weight": 0}, {"text": "wer is", "weight": 0.5}],
    }
    (example,), stats = build_examples([record], tok, max_length=64)
    assert _target_text(example, tok) == "wer is"
    assert tok.decode(example.input_ids) == "the answer is"
    assert set(example.weights) == {0.0, 0.5}
    assert example.weights[0] == 0.0
    assert stats.n_target_tokens == example.n_target_tokens > 0


def test_add_eos_gets_last_segment_weight(merging_tokenizer) -> None:
    tok = merging_tokenizer
    record = {
        "id": "e",
        "segments": [{"text": "the", "weight": 0}, {"text": " answer", "weight": 1}],
        "add_eos": True,
    }
    (example,), _ = build_examples([record], tok, max_length=64)
    assert example.input_ids[-1] == tok.eos_token_id and example.weights[-1] == 1.0


def test_chat_messages_weight_content_and_end_of_turn(tokenizer) -> None:
    record = {
        "id": "c",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Compute 3+4"},
            {"role": "assistant", "content": "The answer is 7."},
            {"role": "user", "content": "Again"},
            {"role": "assistant", "content": "7", "weight": 2.0},
        ],
    }
    (example,), _ = build_examples([record], tokenizer, max_length=512)
    full = tokenizer.apply_chat_template(
        [{k: m[k] for k in ("role", "content")} for m in record["messages"]], tokenize=False
    )
    assert tokenizer.decode(example.input_ids) == full
    ones = [i for i, w in zip(example.input_ids, example.weights, strict=True) if w == 1.0]
    twos = [i for i, w in zip(example.input_ids, example.weights, strict=True) if w == 2.0]
    assert tokenizer.decode(ones) == "The answer is 7.<|im_end|>"
    assert tokenizer.decode(twos) == "7<|im_end|>"


def test_chat_without_template_is_a_clear_error(merging_tokenizer) -> None:
    with pytest.raises(ValueError, match="no chat template"):
        build_examples(
            [{"id": "x", "messages": [{"role": "user", "content": "hi"}]}],
            merging_tokenizer,
            max_length=8,
        )


def test_truncation_keeps_the_right_end_and_counts(tokenizer) -> None:
    pieces = [
        {"text": "Agent 2 answered: ", "weight": 0},
        {"text": "the final answer is (B).", "weight": 1},
    ]
    full = build_examples([{"id": "f", "segments": pieces}], tokenizer, max_length=512)[0][0]
    n = len(full.input_ids)
    right, rs = build_examples([{"id": "f", "segments": pieces}], tokenizer, max_length=n - 3)
    left, ls = build_examples(
        [{"id": "f", "segments": pieces}], tokenizer, max_length=n - 3, truncation="left"
    )
    assert right[0].input_ids == full.input_ids[: n - 3]
    assert left[0].input_ids == full.input_ids[3:]
    assert left[0].weights[1:] == full.weights[4:] and left[0].weights[0] == 0
    assert rs.n_truncated == ls.n_truncated == 1 and rs.truncated_ids == ["f"]

    # Right truncation that cuts away every target token: dropped and counted, not silent.
    context_only = [
        {"id": "g", "segments": [{"text": "x " * 40, "weight": 0}, {"text": "y", "weight": 1}]}
    ]
    examples, stats = build_examples(
        [*context_only, {"id": "f", "segments": pieces}], tokenizer, max_length=n
    )
    assert [e.id for e in examples] == ["f"] and stats.n_empty == 1 and stats.empty_ids == ["g"]
    with pytest.raises(NoTrainableTokensError, match="no training example"):
        build_examples(context_only, tokenizer, max_length=n)


def test_weighted_loss_matches_hand_computation_with_padding() -> None:
    torch.manual_seed(0)
    collate = WeightedCollator(pad_token_id=0)
    batch = collate(
        [
            {"input_ids": [5, 6, 7, 8], "weights": [0, 0, 1, 0.5]},
            {"input_ids": [9, 3], "weights": [0, 2.0]},
        ]
    )
    assert batch["input_ids"][1].tolist() == [9, 3, 0, 0] and batch["weights"][1, 2:].sum() == 0
    logits = torch.randn(2, 4, 12)
    logp = torch.log_softmax(logits, -1)
    expected = -(1 * logp[0, 1, 7] + 0.5 * logp[0, 2, 8] + 2.0 * logp[1, 0, 3]) / 3
    got = weighted_token_loss(logits, batch["input_ids"], batch["weights"])
    assert torch.allclose(got, expected, atol=1e-6)
    # labels let the Trainer count exactly the w>0 tokens the loss divides by
    assert int(batch["labels"][..., 1:].ne(-100).sum()) == 3


def _records(n: int = 8) -> list[dict]:
    out = []
    for i in range(n):
        q = f"Compute {i}+{i % 3}"
        out.append(
            {
                "id": str(i),
                "segments": [
                    {"text": f"{q} step by step. " * (1 + i % 3), "weight": 0},
                    {"text": f"The answer is {2 * i + i % 3}.", "weight": 1.0 + (i % 2)},
                ],
            }
        )
    return out


def _one_sgd_step(model_dir: Path, out: Path, batch: int, accum: int) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    recipe = {
        "model": f"hf:{model_dir}",
        "max_steps": 1,
        "per_device_train_batch_size": batch,
        "gradient_accumulation_steps": accum,
        "learning_rate": 1.0,
        "warmup_ratio": 0.0,
        "lr_scheduler_type": "constant",
        "report_to": "none",
        "save_steps": 100,
        "extra_args": {"optim": "sgd", "max_grad_norm": 0.0, "use_cpu": True},
    }
    result = train(recipe, _records(4), out)
    trained = AutoModelForCausalLM.from_pretrained(result.model_dir)
    return {k: v.detach().clone() for k, v in trained.state_dict().items()}


def test_grad_accumulation_one_vs_two_gives_the_same_update(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    a = _one_sgd_step(tiny_model_dir, tmp_path / "a", batch=4, accum=1)
    b = _one_sgd_step(tiny_model_dir, tmp_path / "b", batch=2, accum=2)
    moved = max((a[k] - before[k]).abs().max().item() for k in a)
    assert moved > 1e-4  # the step did something
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_training_loss_falls_and_run_dir_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    from chorus_shared.models import SamplingParams, load_chat_model

    out = tmp_path / "run"
    recipe = {
        "model": f"hf:{tiny_model_dir}",
        "max_steps": 30,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 4,
        "report_to": "none",
        "logging_steps": 5,
        "save_steps": 1000,
        "warmup_ratio": 0.0,
        "extra_args": {"use_cpu": True},
    }
    result = train(recipe, _records(), out)
    assert result.metrics["global_step"] == 30
    assert result.metrics["last_loss"] < 0.7 * result.metrics["first_loss"]
    for name in ("config.json", "metrics.json", "report.md", "loss.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text())["build_stats"]["n_examples"] == 8
    model = load_chat_model(f"hf:{result.model_dir}")
    (completion,) = model.chat(
        [[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=3)
    )
    assert isinstance(completion.text, str)


@pytest.mark.parametrize("report_to", ["none", "wandb"])
def test_a_base_model_that_cannot_load_leaves_no_run_folder(tmp_path: Path, report_to: str) -> None:
    from chorus_shared.models import ModelSpecError

    out = tmp_path / "runs" / "train"
    recipe = {"model": "hf:/nonexistent/model", "max_steps": 1, "report_to": report_to}
    with pytest.raises(ModelSpecError, match="local folder '/nonexistent/model' does not exist"):
        train(recipe, _records(), out)
    assert not (tmp_path / "runs").exists()


def test_recipe_errors_and_shipped_configs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown training recipe key"):
        load_train_recipe({"model": "default", "learnin_rate": 1e-5})
    with pytest.raises(ValueError, match="needs 'model'"):
        load_train_recipe({})
    path = tmp_path / "r.yaml"
    path.write_text("model: default\nmax_length: 64\ntruncation: left\n")
    recipe = load_train_recipe(path, learning_rate=1e-4)
    assert (recipe.max_length, recipe.truncation, recipe.learning_rate) == (64, "left", 1e-4)
    for name, stage in (("ds_zero2.json", 2), ("ds_zero3.json", 3), ("ds_zero3_offload.json", 3)):
        cfg = json.loads(config_path(name).read_text())
        assert cfg["zero_optimization"]["stage"] == stage
    import yaml

    fsdp = yaml.safe_load(config_path("fsdp.yaml").read_text())
    assert fsdp["distributed_type"] == "FSDP"
