"""GenFuser training: records for the training core, and train-fuser end to end on a tiny LM."""

from __future__ import annotations

import json

import pytest

from chorus_blender.cli import main
from chorus_blender.fuser import (
    FuserRecipe,
    fuse,
    fuser_prompt,
    fuser_training_records,
    load_fuser_recipe,
    token_cutter,
    train_fuser,
)


def _record(rid, scores, output="the reference"):
    return {
        "id": rid,
        "instruction": "Add 2 and 2.",
        "output": output,
        "candidates": [{"text": f"cand {s}", "scores": {"bertscore": s}} for s in scores],
    }


def test_training_records_take_the_gold_top_k_best_first():
    records = [
        _record("a", [1.0, 9.0, 5.0, 7.0]),
        _record("no-ref", [1.0, 2.0], output=""),
        {"id": "no-scores", "instruction": "x", "output": "y", "candidates": [{"text": "z"}]},
    ]
    out, skipped = fuser_training_records(records, top_k=2)
    assert skipped == ["no-ref", "no-scores"]
    [rec] = out
    user, assistant = rec["messages"]
    assert user["weight"] == 0.0 and assistant == {
        "role": "assistant",
        "content": "the reference",
        "weight": 1.0,
    }
    assert "Candidate 1: cand 9.0" in user["content"] and "Candidate 2: cand 7.0" in user["content"]
    assert "cand 5.0" not in user["content"]


def test_shipped_fuser_recipe_is_a_causal_training_recipe():
    recipe = load_fuser_recipe("fuser_smollm2_offline")
    assert recipe.top_k == 3 and recipe.train["model"] == "default"
    with pytest.raises(ValueError, match="top_k"):
        load_fuser_recipe("fuser_smollm2_offline", top_k=0)


def test_train_fuser_cli_trains_through_the_core(tmp_path, capsys):
    from chorus_shared.testing import build_tiny_chat_model

    chat = build_tiny_chat_model(tmp_path / "chat")
    recipe = tmp_path / "fuser.yaml"
    recipe.write_text(
        "top_k: 2\nmax_words: 16\ntrain:\n"
        f"  model: 'hf:{chat}'\n  max_length: 128\n  max_steps: 2\n"
        "  per_device_train_batch_size: 2\n  report_to: none\n  logging_steps: 1\n"
    )
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps(_record(f"r{k}", [k, k + 1, k + 2])) + "\n" for k in range(4))
    )
    out = tmp_path / "fuser"
    assert (
        main(["train-fuser", "--recipe", str(recipe), "--data", str(data), "--out", str(out)]) == 0
    )
    assert "fuser trained on 4 items" in capsys.readouterr().out
    assert (out / "model" / "config.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 2 and metrics["first_loss"] > 0
    # The trained fuser loads as a chat model by spec.
    from chorus_shared.models import SamplingParams, load_chat_model

    model = load_chat_model(f"hf:{out / 'model'}")
    [reply] = model.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_new_tokens=3))
    assert reply.error is None


def test_paper_fuser_recipe_is_a_seq2seq_flan_t5_with_the_paper_budgets():
    from chorus_shared.training import load_train_recipe

    recipe = load_fuser_recipe("fuser_flan_t5_xl")
    assert (recipe.top_k, recipe.candidate_max_tokens) == (3, 128)
    train = load_train_recipe(recipe.train)
    assert train.model == "google/flan-t5-xl" and train.architecture == "seq2seq"
    assert (train.max_length, train.max_target_length) == (1024, 128)


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from chorus_shared.testing import build_tiny_seq2seq_model

    return build_tiny_seq2seq_model(tmp_path_factory.mktemp("t5") / "model")


def test_token_cutter_cuts_candidates_to_n_tokens(tiny_t5):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    cut = token_cutter(tok, 5)
    long = "The answer is 42. Let me check each step again."
    assert len(tok(long, add_special_tokens=False)["input_ids"]) > 5
    short = cut(long)
    assert short.endswith(" ...") and long.startswith(short[:-4])
    assert len(tok(short[:-4], add_special_tokens=False)["input_ids"]) == 5
    assert cut("yes") == "yes"
    prompt = fuser_prompt("Add.", [long, "yes"], cut=cut)
    assert f"Candidate 1: {short}" in prompt and "Candidate 2: yes" in prompt


def test_seq2seq_fuser_trains_fuses_and_round_trips(tiny_t5, tmp_path):
    """A tiny random T5 learns the reference; the saved fuser loads as hf: and writes it."""
    from chorus_shared.models import SamplingParams, load_chat_model

    recipe = FuserRecipe(
        top_k=2,
        candidate_max_tokens=12,
        train={
            "model": f"hf:{tiny_t5}",
            "max_length": 96,
            "max_target_length": 16,
            "max_steps": 30,
            "learning_rate": 1e-2,
            "per_device_train_batch_size": 4,
            "lr_scheduler_type": "constant",
            "warmup_ratio": 0.0,
            "report_to": "none",
            "logging_steps": 5,
            "save_steps": 1000,
            "extra_args": {"use_cpu": True},
        },
    )
    records = [_record(f"r{k}", [k, k + 1, k + 2], output="The answer is 42.") for k in range(8)]
    result, skipped = train_fuser(recipe, records, tmp_path / "fuser")
    assert skipped == []
    assert result.metrics["last_loss"] < 0.5 * result.metrics["first_loss"]
    assert result.build_stats.n_examples == 8
    fuser = load_chat_model(f"hf:{result.model_dir}", dtype="float32")
    assert fuser.encoder_decoder
    fused = fuse(
        fuser,
        ["Add 2 and 2.", "Add 3 and 3."],
        [["cand 1", "cand 2"], ["cand 7", "cand 5"]],
        SamplingParams(max_new_tokens=12),
        candidate_max_tokens=12,
    )
    assert fused == ["The answer is 42.", "The answer is 42."]


def test_fuse_by_tokens_needs_a_local_tokenizer(fake_chat_model):
    with pytest.raises(ValueError, match="needs the fuser's tokenizer"):
        fuse(fake_chat_model(), ["q"], [["a"]], candidate_max_tokens=8)
