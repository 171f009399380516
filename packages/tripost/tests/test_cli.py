"""The CLI end to end on tiny random models: make-data, collect, train (+ resume), evaluate,
the recipes and the README's flag table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_shared.config import check_flag_table
from chorus_shared.testing import FakeOpenAIServer
from chorus_tripost import tasks
from chorus_tripost.cli import main
from chorus_tripost.recipes import Recipe, available_recipes, load_recipe

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("verb", ["make-data", "generate"])
def test_make_data_writes_items_with_seen_unseen(verb, tmp_path, capsys):
    out = tmp_path / "items.jsonl"
    argv = [verb, "--task", "word_sort", "--split", "test", "--limit", "3", "--out", str(out)]
    assert main(argv) == 0
    items = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(items) == 3 and all(it["eval_split"] in ("seen", "unseen") for it in items)
    assert main(["make-data", "--task", "multistep_arithmetic", "--split", "generated",
                 "--n", "2", "--depth", "3"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["meta"]["depth_levels"] == [2, 2]


def test_recipes_load_and_the_paper_recipes_take_the_originals_values():
    """Issue 23, points 5 and 6: the *_llama7b recipes use the original's values and the LLM
    improver; the offline recipes keep the scripted improver (labelled)."""
    for name in available_recipes():
        load_recipe(name)
    expected = {"arithmetic_llama7b": (550, 150, 60), "wordsort_llama7b": (433, 120, 60)}
    for name, (window, max_len, min_len) in expected.items():
        r = load_recipe(name)
        assert (r.collect_train_data_window, r.max_data_length, r.min_data_length) == (
            window, max_len, min_len,
        )  # fmt: skip
        assert r.improve_data_ratio == 1.5 and r.iteration_epochs == 4
        assert r.per_device_train_batch_size * r.gradient_accumulation_steps == 4
        assert (r.warmup_ratio, r.weight_decay, r.learning_rate) == (0.2, 0.01, 1e-6)
        assert r.self_improve_section_weight == 1.5 and r.mask_before_att_start_text is False
        assert r.verifier_use_scripted and not r.improver_use_scripted
        assert r.improver_temperature == 0.7 and r.collect_temperature == 1.0
        assert r.max_data_itr == 5 and r.test_time_calls == 10 and r.demo_source == "llm"
    assert load_recipe("arithmetic_offline").improver_use_scripted  # our offline option
    assert load_recipe("arithmetic_offline").demo_source == "planted"


def test_readme_flag_table_matches_the_recipe():
    check_flag_table(Recipe, README)


def _gold_improver(body: dict) -> str:
    # The LLM improver of a scripted task, scripted: writes the ground truth.
    user = body["messages"][-1]["content"]
    for it in tasks.load_items("multistep_arithmetic", "train")[:4]:
        if it["question"].strip().removeprefix("Q:").strip() in user:
            return it["rationale"]
    raise ValueError("unknown question")


def test_train_with_an_llm_improver_then_resume_and_no_password_anywhere(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    """Baseline + one iteration (scripted verifier, LLM improver), wandb offline; the
    improver's URL carries a password that no file (wandb's included) and no output holds."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    with FakeOpenAIServer(_gold_improver) as server:
        url = server.base_url.replace("http://", "http://alice:s3cret-pw@")
        argv = [
            "train", "--recipe", "arithmetic_default", "--model", f"hf:{tiny_model_dir}",
            "--no-improver-use-scripted", "--improver-model", f"openai:fake-model@{url}",
            "--train-items", "2", "--collect-train-data-window", "2", "--max-data-itr", "1",
            "--max-new-tokens", "8", "--baseline-epochs", "1", "--iteration-epochs", "1",
            "--max-steps", "1", "--max-length", "512", "--per-device-train-batch-size", "2",
            "--learning-rate", "1e-4", "--bf16", "false", "--report-to", "wandb",
            "--num-iterations", "1", "--out", str(out),
        ]  # fmt: skip
        assert main(argv) == 0
        first = capsys.readouterr()
        assert main(argv) == 0  # resume: every step finished earlier
        again = capsys.readouterr()
    assert '"iterations_done": 1' in first.out
    assert "finished earlier" in again.out
    stats = json.loads((out / "iter-1" / "stats.json").read_text())
    assert stats["attempts"] == 2 and stats["corrected"] == 2 and stats["samples"] >= 2
    assert (out / "iter-1" / "train" / "model" / "config.json").is_file()
    assert list(out.rglob("wandb/**/*")), "wandb wrote nothing"
    assert "s3cret-pw" not in first.out + first.err + again.out + again.err
    for file in out.rglob("*"):
        if file.is_file() and file.stat().st_size < 5_000_000:
            assert b"s3cret-pw" not in file.read_bytes(), file


def test_collect_and_evaluate_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    col = tmp_path / "col"
    argv = ["collect", "--recipe", "arithmetic_default", "--model", f"hf:{tiny_model_dir}",
            "--collect-train-data-window", "2", "--max-data-itr", "1", "--max-new-tokens", "8",
            "--out", str(col)]  # fmt: skip
    assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["attempts"] == 2 and stats["records"] == len(
        (col / "train.jsonl").read_text().splitlines()
    )
    assert json.loads((col / "collect-r0" / "config.json").read_text())["item_ids"]
    ev = tmp_path / "ev"
    argv = ["evaluate", "--recipe", "arithmetic_default", "--model", f"hf:{tiny_model_dir}",
            "--eval-limit", "1", "--eval-max-new-tokens", "4", "--test-time-calls", "2",
            "--label", "tiny", "--out", str(ev)]  # fmt: skip
    assert main(argv) == 0
    assert "tiny on multistep_arithmetic" in capsys.readouterr().out
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["coverage"] == "2 of 2 items" and metrics["all"]["calls"] <= 4
    assert (ev / "report.md").read_text().startswith("# tiny")
