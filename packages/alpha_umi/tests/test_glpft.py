"""GLPFT stage recipes and one real (tiny) training step through chorus_shared.training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.glpft import load_glpft_recipe, read_stage_records, stage_recipe
from chorus_alpha_umi.pipeline import _without_chat_template

FIXTURE = Path(__file__).parent / "fixtures" / "toolbench_alpha_umi" / "out_of_domain.json"


def test_the_7b_recipe_is_train_toolbench_sh() -> None:
    # Issue 25 point 7: epochs 2/1/1/2, lr 5e-5/1e-5, warmup 0.4/0.2/0.2/0.4, weight decay
    # 0.01 for the roles, global batch 48 (8 x 6), ZeRO-3 for the backbone only.
    recipe = load_glpft_recipe("glpft_llama2_7b_zero3", model="hf:bb")
    got = {
        stage: stage_recipe(recipe if stage != "backbone" else load_glpft_recipe(
            "glpft_llama2_7b_zero3"), stage, world_size=8)
        for stage in ("backbone", "planner", "caller", "summarizer")
    }  # fmt: skip
    assert [got[s]["num_train_epochs"] for s in got] == [2.0, 1.0, 1.0, 2.0]
    assert [got[s]["learning_rate"] for s in got] == [5e-5, 1e-5, 1e-5, 1e-5]
    assert [got[s]["warmup_ratio"] for s in got] == [0.4, 0.2, 0.2, 0.4]
    assert [got[s]["weight_decay"] for s in got] == [0.0, 0.01, 0.01, 0.01]
    assert [got[s]["deepspeed"] for s in got] == ["zero3", None, None, None]
    for stage in got.values():
        per_step = stage["per_device_train_batch_size"] * 8 * stage["gradient_accumulation_steps"]
        assert per_step == 48 and stage["max_length"] == 4096 and stage["truncation"] == "left"
    assert got["backbone"]["model"] == "hf:meta-llama/Llama-2-7b-hf"
    # On one device the accumulation keeps the global batch at 48.
    assert stage_recipe(recipe, "planner", world_size=1)["gradient_accumulation_steps"] == 8
    with pytest.raises(ValueError, match="starts from the backbone"):
        stage_recipe(load_glpft_recipe("glpft_offline"), "planner")


def test_a_stage_file_without_messages_names_the_file_and_key(tmp_path: Path, capsys) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "planner.jsonl").write_text('{"id": "a"}\n')
    argv = ["train", "--stage", "planner", "--data", str(tmp_path / "data"), "--model", "default"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "planner.jsonl:1: no 'messages' key" in err and err.count("\n") == 1
    (tmp_path / "data" / "planner.jsonl").write_text("{oops\n")
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    assert "planner.jsonl:1: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_base_model_without_chat_template_trains_on_raw_system_text(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # The original's train.py: "system: " + input, then the target (loss on the target only).
    import shutil

    raw = tmp_path / "raw-model"
    shutil.copytree(tiny_model_dir, raw)
    config = json.loads((raw / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (raw / "tokenizer_config.json").write_text(json.dumps(config))
    (raw / "chat_template.jinja").unlink(missing_ok=True)
    assert _without_chat_template(f"hf:{raw}") and not _without_chat_template(
        f"hf:{tiny_model_dir}"
    )
    assert main(["preprocess", str(FIXTURE), "--out", str(tmp_path / "data")]) == 0
    records = read_stage_records(tmp_path / "data", "planner", raw_text=True)
    assert records[0]["segments"][0]["text"].startswith("system: ")
    assert records[0]["segments"][0]["text"].endswith(" assistant: ")
    argv = ["train", "--stage", "planner", "--data", str(tmp_path / "data"), "--model",
            f"hf:{raw}", "--max-steps", "1", "--max-length", "256", "--no-bf16",
            "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0


def test_train_planner_stage_with_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert main(["preprocess", str(FIXTURE), "--out", str(tmp_path / "data")]) == 0
    out = tmp_path / "planner"
    argv = [
        "train",
        "--stage",
        "planner",
        "--data",
        str(tmp_path / "data"),
        "--model",
        f"hf:{tiny_model_dir}",
        "--out",
        str(out),
        "--max-steps",
        "1",
        "--max-length",
        "512",
        "--no-bf16",
    ]
    assert main(argv) == 0
    assert (out / "model" / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["n_records"] == 4
