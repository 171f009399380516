"""GenFuser training: records for the training core, and train-fuser end to end on a tiny LM."""

from __future__ import annotations

import json

import pytest

from chorus_blender.cli import main
from chorus_blender.fuser import fuser_training_records, load_fuser_recipe


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
