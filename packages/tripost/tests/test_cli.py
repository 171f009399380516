import json

import pytest

from chorus_tripost.cli import main


def test_generate_writes_items_with_seen_unseen(tmp_path, capsys):
    out = tmp_path / "items.jsonl"
    assert main(["generate", "--task", "word_sort", "--split", "test", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 379 and sum(r["eval_split"] == "seen" for r in rows) == 127
    assert (
        main(["generate", "--task", "multistep_arithmetic", "--split", "generated", "--n", "3"])
        == 0
    )
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_collect_with_tiny_model_then_resume(tmp_path, capsys):
    from chorus_shared.testing import build_tiny_chat_model

    path = build_tiny_chat_model(tmp_path / "tiny")
    run = tmp_path / "run"
    argv = [
        "collect",
        "--task",
        "multistep_arithmetic",
        "--model",
        f"hf:{path}",
        "--recipe",
        "arithmetic_default",
        "--collect-train-data-window",
        "2",
        "--max-new-tokens",
        "8",
        "--run-dir",
        str(run),
    ]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["attempts"] == 2 and metrics["corrected"] == 2
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert len(records) == metrics["records"] == 2 + 2  # two improvement turns + two gold
    assert main(argv) == 0
    assert "already collected" in capsys.readouterr().out
    assert len((run / "records.jsonl").read_text().splitlines()) == 4


def test_collect_rejects_bad_spec_before_making_a_run(tmp_path, capsys):
    argv = ["collect", "--task", "word_sort", "--model", "nope:x", "--run-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_recipes_load_and_inherit():
    from chorus_tripost.recipes import available_recipes, load_recipe

    assert {"arithmetic_default", "wordsort_default"} <= set(available_recipes())
    ws = load_recipe("wordsort_default")
    assert ws.task == "word_sort" and ws.collect_train_data_window == 32
    assert load_recipe("arithmetic_default", improve_data_ratio=2.0).improve_data_ratio == 2.0
    with pytest.raises(ValueError, match="improve_data_ratio"):
        load_recipe(None, improve_data_ratio=0.0)


def test_multiple_choice_tasks_through_the_cli(tmp_path, tiny_model_dir):
    out = tmp_path / "ld.jsonl"
    argv = ["generate", "--task", "logical_deduction", "--split", "test", "--out", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 752 and sum(r["eval_split"] == "unseen" for r in rows) == 700
    assert all("\nOptions:\n(A) " in r["question"] for r in rows)
    # a random model writes no readable option letter: wrong, and counted as unreadable
    ev_dir = tmp_path / "ev"
    argv = ["evaluate", "--recipe", "date_default", "--model", f"hf:{tiny_model_dir}",
            "--eval-limit", "1", "--eval-max-new-tokens", "4", "--out", str(ev_dir)]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((ev_dir / "metrics.json").read_text())
    assert metrics["all"]["n"] == 2 and metrics["all"]["no_si"]["mean"] == 0.0
    assert metrics["all"]["unreadable_first"] == 2
    assert main(["report", str(ev_dir), "--out", str(tmp_path / "t.md")]) == 0
    assert "| 1/1 |" in (tmp_path / "t.md").read_text()
