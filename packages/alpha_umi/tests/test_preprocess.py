"""Preprocessing on hand-written ToolBench-shaped fixtures: exact records per role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.dialog import backbone_prompt, role_prompt
from chorus_alpha_umi.preprocess import PreprocessError, preprocess, role_records, tree_to_dialog

TREES = Path(__file__).parent / "fixtures" / "trees"


def _tree(name: str) -> dict:
    return json.loads((TREES / f"{name}.json").read_text())


def test_tree_to_dialog_exact() -> None:
    # Issue 25 point 6: as ToolBench / prepro_raw_stage_1-2.py.
    dialog = tree_to_dialog(_tree("paris"), "paris")
    assert dialog["conversations"] == [
        {"from": "user", "value": "How warm is Paris?"},
        {"from": "assistant", "value": "I will ask the weather API.\n Next: caller."},
        {
            "from": "caller",
            "value": 'Action: get_weather_for_weatherapi\nAction Input: {"city": "Paris"}',
        },
        {"from": "observation", "value": '{"temp_c": 18}'},  # the `response` field
        {"from": "assistant", "value": "I know the answer.\n Next: conclusion."},
        {"from": "conclusion", "value": "18 C in Paris."},
    ]
    names = [t["Name"] for t in dialog["tools"]]
    assert names == ["get_weather_for_weatherapi", "x" * 64]  # Finish dropped, the last 64
    assert len(dialog["tools"][0]["function"]) == 256
    assert dialog["tools"][0]["input"] == {"city": "string, the city"}  # flattened
    assert tree_to_dialog(_tree("broken"), "broken") is None


def test_last_64_characters_of_a_name_and_observation_without_response() -> None:
    tree = _tree("paris")
    tree["answer_generation"]["function"][1]["name"] = "a" * 10 + "b" * 64
    for chain in tree["answer_generation"]["train_messages"]:
        for message in chain:
            if message.get("role") == "function":
                message["content"] = "not json at all"
    dialog = tree_to_dialog(tree, "t")
    assert dialog["tools"][1]["Name"] == "b" * 64
    assert dialog["conversations"][3] == {"from": "observation", "value": ""}


def test_role_records_exact() -> None:
    dialog = tree_to_dialog(_tree("paris"), "paris")
    turns = dialog["conversations"]
    records = role_records(dialog)
    assert [r["id"] for r in records["planner"]] == ["paris-planner-t1", "paris-planner-t4"]
    assert [r["id"] for r in records["caller"]] == ["paris-caller-t2"]
    assert [r["id"] for r in records["summarizer"]] == ["paris-summarizer-t5"]
    # The single-LLM baseline is the original's backbone format (prepro_backbone.py).
    assert [r["target"] for r in records["backbone"]] == [
        "I will ask the weather API.\n" + turns[2]["value"],
        "I know the answer.\nconclusion: 18 C in Paris.",
    ]
    planner = records["planner"][1]
    assert planner["history"] == turns[:4] and planner["target"] == turns[4]["value"]
    caller = records["caller"][0]
    # The caller sees the planner's thought without its marker, as at inference.
    assert caller["history"] == [
        turns[0],
        {"from": "assistant", "value": "I will ask the weather API."},
    ]
    summarizer = records["summarizer"][0]
    # Training format: loss on the target only; raw "system: " text for template-less models.
    assert [(m["role"], m["weight"]) for m in summarizer["messages"]] == [
        ("system", 0.0),
        ("user", 0.0),
        ("assistant", 1.0),
    ]
    expected = role_prompt("summarizer", dialog["tools"], summarizer["history"])
    assert [m["content"] for m in summarizer["messages"][:2]] == [m["content"] for m in expected]
    prompt, target = summarizer["segments"]
    assert prompt["text"].startswith("system: ") and prompt["text"].endswith(" conclusion: ")
    assert (prompt["weight"], target) == (0.0, {"text": "18 C in Paris.", "weight": 1.0})


def test_give_up_branch_has_its_own_prompt() -> None:
    dialog = tree_to_dialog(_tree("mars"), "mars")
    records = role_records(dialog)
    (record,) = records["backbone"]
    assert record["target"] == "No tool covers Mars.\nconclusion: give up."
    expected = backbone_prompt(dialog["tools"], [dialog["conversations"][0]])
    assert [m["content"] for m in record["messages"][:2]] == [m["content"] for m in expected]


def test_calls_to_the_hallucination_marker_give_no_planner_or_caller_record() -> None:
    dialog = tree_to_dialog(_tree("paris"), "paris")
    dialog["conversations"][2]["value"] = (
        "Action: invalid_hallucination_function_name\nAction Input: {}"
    )
    records = role_records(dialog)
    assert [r["id"] for r in records["planner"]] == ["paris-planner-t4"]
    assert records["caller"] == []


def test_preprocess_keeps_every_record(tmp_path: Path) -> None:
    # 25 copies: the original kept only the first 20 (a debug leftover).
    for k in range(25):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / f"q{k:02d}.json").write_text(json.dumps(_tree("paris")))
    stats = preprocess([str(tmp_path / "in"), str(TREES / "broken.json")], tmp_path / "out")
    assert stats["records"] == {"backbone": 50, "planner": 50, "caller": 25, "summarizer": 25}
    assert stats["dropped_invalid"] == 1
    lines = (tmp_path / "out" / "caller.jsonl").read_text().splitlines()
    assert len(lines) == 25 and json.loads(lines[-1])["id"] == "q24-caller-t2"


def test_cli_preprocess_conversations_and_bad_input(tmp_path: Path, capsys) -> None:
    fixture = Path(__file__).parent / "fixtures" / "toolbench_alpha_umi" / "out_of_domain.json"
    assert main(["preprocess", str(fixture), "--out", str(tmp_path / "o")]) == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["records"] == {"backbone": 4, "planner": 4, "caller": 2, "summarizer": 1}
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
    assert held["records"] == {"backbone": 3, "planner": 3, "caller": 2, "summarizer": 1}
    fixture = fixtures / "toolbench_alpha_umi" / "out_of_domain.json"
    assert main(["preprocess", str(fixture), *argv[1:], "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err
