"""GLPFT stage recipes and one real (tiny) training step through chorus_shared.training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.glpft import stage_recipe

FIXTURE = Path(__file__).parent / "fixtures" / "toolbench_alpha_umi" / "out_of_domain.json"


def test_stage_recipes_carry_paper_hyper_parameters() -> None:
    backbone = stage_recipe("glpft_llama2_7b_zero3", "backbone")
    assert (backbone["num_train_epochs"], backbone["learning_rate"]) == (2, 5e-5)
    assert backbone["deepspeed"] == "zero3" and backbone["max_length"] == 4096
    assert backbone["truncation"] == "left"
    summarizer = stage_recipe("glpft_llama2_7b_zero3", "summarizer", model="hf:x")
    assert (summarizer["num_train_epochs"], summarizer["learning_rate"]) == (2, 1e-5)
    with pytest.raises(ValueError, match="starts from the backbone"):
        stage_recipe("glpft_offline", "planner")


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
    ]
    assert main(argv) == 0
    assert (out / "model" / "config.json").is_file()
    assert json.loads((out / "config.json").read_text())["n_records"] == 4
