"""Preprocessing on hand-written ToolBench-shaped fixtures: exact records per role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.dialog import role_prompt
from chorus_alpha_umi.preprocess import PreprocessError, preprocess, role_records, tree_to_dialog

TREES = Path(__file__).parent / "fixtures" / "trees"


def _tree(name: str) -> dict:
    return json.loads((TREES / f"{name}.json").read_text())


def test_tree_to_dialog_exact() -> None:
    dialog = tree_to_dialog(_tree("paris"), "paris")
    assert dialog["conversations"] == [
        {"from": "user", "value": "How warm is Paris?"},
        {"from": "assistant", "value": "I will ask the weather API. Next: caller."},
        {
            "from": "caller",
            "value": 'Action: get_weather_for_weatherapi\nAction Input: {"city": "Paris"}',
        },
        {"from": "observation", "value": '{"temp_c": 18}'},
        {"from": "assistant", "value": "I know the answer. Next: conclusion."},
        {"from": "conclusion", "value": "18 C in Paris."},
    ]
    names = [t["name"] for t in dialog["tools"]]
    assert names == ["get_weather_for_weatherapi", "x" * 64]  # Finish dropped, name cut
    assert len(dialog["tools"][0]["description"]) == 256
    assert tree_to_dialog(_tree("broken"), "broken") is None


def test_role_records_exact() -> None:
    dialog = tree_to_dialog(_tree("paris"), "paris")
    turns = dialog["conversations"]
    records = role_records(dialog)
    assert [r["id"] for r in records["planner"]] == ["paris-planner-t1", "paris-planner-t4"]
    assert [r["id"] for r in records["caller"]] == ["paris-caller-t2"]
    assert [r["id"] for r in records["summarizer"]] == ["paris-summarizer-t5"]
    assert [r["id"] for r in records["backbone"]] == [
        "paris-planner-t1",
        "paris-caller-t2",
        "paris-planner-t4",
        "paris-summarizer-t5",
    ]
    planner = records["planner"][1]
    assert planner["history"] == turns[:4]
    assert planner["target"] == "I know the answer. Next: conclusion."
    caller = records["caller"][0]
    # The caller sees the planner's thought without its marker, as at inference.
    assert caller["history"] == [
        turns[0],
        {"from": "assistant", "value": "I will ask the weather API."},
    ]
    assert caller["target"] == turns[2]["value"]
    summarizer = records["summarizer"][0]
    assert summarizer["target"] == "18 C in Paris."
    # Training format: loss on the target only.
    assert [(m["role"], m["weight"]) for m in summarizer["messages"]] == [
        ("system", 0.0),
        ("user", 0.0),
        ("assistant", 1.0),
    ]
    assert summarizer["messages"][-1]["content"] == "18 C in Paris."
    expected = role_prompt("summarizer", dialog["tools"], summarizer["history"])
    assert [m["content"] for m in summarizer["messages"][:2]] == [m["content"] for m in expected]


def test_give_up_branch_has_its_own_prompt() -> None:
    dialog = tree_to_dialog(_tree("mars"), "mars")
    records = role_records(dialog)
    (record,) = records["backbone"]
    assert record["target"] == "No tool covers Mars. Next: give up."
    expected = role_prompt("planner", dialog["tools"], [dialog["conversations"][0]])
    assert [m["content"] for m in record["messages"][:2]] == [m["content"] for m in expected]


def test_preprocess_keeps_every_record(tmp_path: Path) -> None:
    # 25 copies: the original kept only the first 20 (a debug leftover).
    for k in range(25):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"q{k:02d}.json").write_text(json.dumps(_tree("paris")))
    stats = preprocess([str(tmp_path / "in"), str(TREES / "broken.json")], tmp_path / "out")
    assert stats["records"] == {"backbone": 100, "planner": 50, "caller": 25, "summarizer": 25}
    assert stats["dropped_invalid"] == 1
    lines = (tmp_path / "out" / "caller.jsonl").read_text().splitlines()
    assert len(lines) == 25 and json.loads(lines[-1])["id"] == "q24-caller-t2"


def test_cli_preprocess_conversations_and_bad_input(tmp_path: Path, capsys) -> None:
    fixture = Path(__file__).parent / "fixtures" / "toolbench_alpha_umi" / "out_of_domain.json"
    assert main(["preprocess", str(fixture), "--out", str(tmp_path / "o")]) == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["records"] == {"backbone": 7, "planner": 4, "caller": 2, "summarizer": 1}
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    assert main(["preprocess", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "neither a ToolBench answer tree" in capsys.readouterr().err
    with pytest.raises(PreprocessError):
        tree_to_dialog({"nope": 1}, "x")


def test_cli_preprocess_split_part_through_the_loader(tmp_path: Path, capsys) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    argv = ["preprocess", "--split", "out_of_domain", "--data-dir", str(fixtures)]
    assert main([*argv, "--part", "train", "--out", str(tmp_path / "t")]) == 0
    train = json.loads((tmp_path / "t" / "stats.json").read_text())
    # Dialog 0 is held out; dialog 1 (one give-up step) and 2 (no steps) are the train part.
    assert train["records"] == {"backbone": 1, "planner": 1, "caller": 0, "summarizer": 0}
    assert (train["dialogs"], train["part"]) == (2, "train")
    assert main([*argv, "--part", "heldout", "--out", str(tmp_path / "h")]) == 0
    held = json.loads((tmp_path / "h" / "stats.json").read_text())
    assert held["records"] == {"backbone": 6, "planner": 3, "caller": 2, "summarizer": 1}
    fixture = fixtures / "toolbench_alpha_umi" / "out_of_domain.json"
    assert main(["preprocess", str(fixture), *argv[1:], "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
