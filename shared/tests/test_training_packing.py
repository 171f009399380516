"""Packed (padding-free) batches and bf16 master weights give the loss and updates they should."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chorus_shared.training import WeightedCollator, train, weighted_token_loss
from chorus_shared.training.optim import MasterWeightAdamW
from chorus_shared.training.packing import PackedCollator, packed_forward_loss
from chorus_shared.training.recipe import load_train_recipe, training_arguments
from chorus_shared.training.trainer import choose_batching, use_varlen_attention

# Three examples of different lengths; weights 0 (context), 1 and 2 as TriPosT uses them.
FEATURES = [
    {"input_ids": [5, 9, 14, 3, 22, 7, 8, 30], "weights": [0, 0, 0, 1, 1, 2, 2, 1]},
    {"input_ids": [11, 4, 6], "weights": [0, 1, 1]},
    {"input_ids": [12, 13, 19, 25, 2, 17], "weights": [0, 0, 0.5, 0.5, 1, 1]},
]


def _model(tiny_model_dir: Path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32").train()


def _padded_loss(model) -> torch.Tensor:
    batch = WeightedCollator(pad_token_id=0)(FEATURES)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return weighted_token_loss(out.logits, batch["input_ids"], batch["weights"])


def test_packed_loss_and_gradients_equal_the_padded_ones(tiny_model_dir: Path) -> None:
    model = _model(tiny_model_dir)
    padded = _padded_loss(model)
    padded.backward()
    padded_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    batch = PackedCollator()(FEATURES)
    assert batch["input_ids"].shape == (1, 17)  # 8 + 3 + 6 tokens, no padding
    assert batch["position_ids"][0].tolist() == [*range(8), *range(3), *range(6)]
    assert batch["cu_seq_lens"].tolist() == [0, 8, 11, 17]
    previous = use_varlen_attention(model)
    packed, _ = packed_forward_loss(model, batch)
    packed.backward()
    assert torch.allclose(packed, padded, rtol=1e-5, atol=1e-6), (packed, padded)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, padded_grads[name], rtol=1e-4, atol=1e-6), name
    # the Trainer's count of trained tokens (labels[..., 1:] != -100) is the loss's divisor
    assert int(batch["labels"][..., 1:].ne(-100).sum()) == 11 == 5 + 2 + 4

    # The test can fail: the same row as one sequence (attention across the boundaries)
    # gives another loss.
    model.zero_grad()
    leaky = dict(batch, cu_seq_lens=torch.tensor([0, 17], dtype=torch.int32), max_length=17)
    with torch.no_grad():
        assert abs(packed_forward_loss(model, leaky)[0].item() - padded.item()) > 1e-4
    model.set_attn_implementation(previous)


def test_packing_an_example_whose_first_weight_is_set_never_trains_across_the_boundary() -> None:
    batch = PackedCollator()([{"input_ids": [1, 2], "weights": [0, 1]},
                              {"input_ids": [3, 4], "weights": [1, 1]}])  # fmt: skip
    assert batch["weights"][0].tolist() == [0, 1, 0, 1]
    assert batch["logits_index"].tolist() == [0, 2]


def _records(n: int = 6) -> list[dict]:
    return [
        {
            "id": str(i),
            "segments": [
                {"text": f"Sort these words: {'pear apple fig ' * (1 + i % 3)}", "weight": 0},
                {"text": f"apple fig pear {i}", "weight": 1.0 + (i % 2)},
            ],
        }
        for i in range(n)
    ]


def _one_sgd_step(model_dir: Path, out: Path, **recipe_extra) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    recipe = {
        "model": f"hf:{model_dir}",
        "max_steps": 1,
        "per_device_train_batch_size": 3,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1.0,
        "warmup_ratio": 0.0,
        "lr_scheduler_type": "constant",
        "report_to": "none",
        "save_steps": 100,
        "extra_args": {"optim": "sgd", "max_grad_norm": 0.0, "use_cpu": True},
        **recipe_extra,
    }
    result = train(recipe, _records(), out)
    saved = (result.model_dir / "config.json").read_text()
    assert "chorus_varlen" not in saved  # the swapped attention is not saved with the model
    trained = AutoModelForCausalLM.from_pretrained(result.model_dir)
    return {k: v.detach().clone() for k, v in trained.state_dict().items()}


def test_training_step_packed_equals_padded(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    packed = _one_sgd_step(tiny_model_dir, tmp_path / "packed", batching="packed")
    padded = _one_sgd_step(tiny_model_dir, tmp_path / "padded", batching="padded")
    assert max((packed[k] - before[k]).abs().max().item() for k in packed) > 1e-4
    for key in packed:
        assert torch.allclose(packed[key], padded[key], atol=1e-5), key


def test_batching_choice(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration

    llama = _model(tiny_model_dir)
    auto = load_train_recipe({"model": "default"})
    assert choose_batching(auto, llama) == "packed"
    assert choose_batching(load_train_recipe({"model": "x", "batching": "grouped"}), llama) == (
        "grouped"
    )
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=32, d_model=8, d_ff=8, num_layers=1,
                                             num_heads=1, d_kv=8))  # fmt: skip
    assert choose_batching(auto, t5) == "padded"
    with pytest.raises(ValueError, match="batching: packed is not possible"):
        choose_batching(load_train_recipe({"model": "x", "batching": "packed"}), t5)
    with pytest.raises(ValueError, match="batching must be one of"):
        load_train_recipe({"model": "x", "batching": "pack"})
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                           sliding_window=4)  # fmt: skip
    windowed = MistralForCausalLM(config)
    assert choose_batching(auto, windowed, longest=4) == "packed"
    assert choose_batching(auto, windowed, longest=5) == "padded"  # would cross the window
    grouped = load_train_recipe({"model": "x", "batching": "grouped", "report_to": "none"})
    assert training_arguments(grouped, tmp_path).train_sampling_strategy == "group_by_length"
    assert training_arguments(auto, tmp_path).train_sampling_strategy == "random"


def test_master_weights_keep_updates_that_bf16_would_round_away() -> None:
    weight = torch.nn.Parameter(torch.full((4,), 0.5, dtype=torch.bfloat16))
    plain = torch.nn.Parameter(weight.detach().clone())
    master = MasterWeightAdamW([weight], lr=1e-4, weight_decay=0.0)
    naive = torch.optim.AdamW([plain], lr=1e-4, weight_decay=0.0)
    for _ in range(40):
        for p, opt in ((weight, master), (plain, naive)):
            p.grad = torch.ones_like(p)
            opt.step()
            opt.zero_grad()
    # 40 steps of 1e-4 = 0.004, several bf16 ulps (0.5 has ulp 2**-8 ~ 0.0039 / 2)
    assert plain.float().eq(0.5).all()  # every single step was below half an ulp: lost
    assert torch.allclose(master.param_groups[0]["params"][0], torch.full((4,), 0.496), atol=1e-6)
    assert weight.dtype == torch.bfloat16 and weight.float().lt(0.5).all()


def test_bf16_weights_training_runs_and_lowers_the_loss(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    recipe = {
        "model": f"hf:{tiny_model_dir}",
        "max_steps": 12,
        "learning_rate": 3e-3,
        "per_device_train_batch_size": 3,
        "report_to": "none",
        "logging_steps": 1,
        "save_steps": 1000,
        "warmup_ratio": 0.0,
        "bf16_weights": True,
        "extra_args": {"use_cpu": True},
    }
    result = train(recipe, _records(), tmp_path / "run")
    assert result.metrics["last_loss"] < result.metrics["first_loss"]
    with pytest.raises(ValueError, match="bf16_weights needs the AdamW"):
        train({**recipe, "extra_args": {"use_cpu": True, "optim": "sgd"}}, _records(),
              tmp_path / "sgd")  # fmt: skip
