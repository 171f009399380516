"""make-candidates: offline MixInstruct-format set, scored by the libraries, resumable."""

from __future__ import annotations

import json

import pytest

from chorus_blender.candidates import (
    _mixinstruct_from_hub,
    gsm8k_instruction,
    load_candidates_recipe,
    offline_instructions,
)
from chorus_blender.cli import main
from chorus_blender.metrics import METRICS, ReferenceScorer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    (root / "gsm8k").mkdir()
    rows = [
        {
            "question": f"What is {k} + {k}?",
            "answer": f"{k} + {k} = <<{k}+{k}={2 * k}>>{2 * k}\n#### {2 * k}",
        }
        for k in range(6)
    ]
    (root / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "biography").mkdir()
    people = {
        f"Person {k}": f"- Person {k} was born in {1900 + k}.\n- They wrote books."
        for k in range(4)
    }
    (root / "biography" / "article.json").write_text(json.dumps(people))
    return root


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory):
    from chorus_shared.testing import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


def test_gsm8k_reference_drops_calculator_notes():
    item = gsm8k_instruction(
        {"id": "gsm8k-train-0", "question": "q", "answer": "2*3 = <<2*3=6>>6 eggs\n#### 6"}
    )
    assert item["output"] == "2*3 = 6 eggs\nThe answer is 6."


def test_offline_splits_are_disjoint_and_prefix_stable(data_dir):
    small = offline_instructions(
        ["gsm8k", "biography"], test_size=2, train_size=3, data_dir=str(data_dir)
    )
    large = offline_instructions(
        ["gsm8k", "biography"], test_size=2, train_size=6, data_dir=str(data_dir)
    )
    assert [r["split"] for r in small] == ["test"] * 2 + ["train"] * 3
    assert large[:5] == small  # a larger train split only appends
    assert {r["source_dataset"] for r in small} == {"gsm8k", "biography"}
    with pytest.raises(ValueError, match="unknown instruction sources"):
        offline_instructions(["mmlu"], test_size=1, train_size=1, data_dir=str(data_dir))
    with pytest.raises(ValueError, match="fewer than"):
        offline_instructions(["gsm8k"], test_size=5, train_size=5, data_dir=str(data_dir))


def test_reference_scorer_uses_the_libraries(tiny_bert):
    scorer = ReferenceScorer(str(tiny_bert), 2)
    same, other, empty = scorer.score(
        ["the cat sat on the mat", "a dog ran far away today", ""],
        ["the cat sat on the mat"] * 3,
    )
    assert set(same) == set(METRICS)
    assert same["bleu"] == pytest.approx(100.0) and same["rougeL"] == pytest.approx(100.0)
    assert same["bertscore"] == pytest.approx(100.0, abs=1e-3)
    assert other["bleu"] < 10 and other["rougeL"] < same["rougeL"]
    assert other["bertscore"] < same["bertscore"]
    assert empty == dict.fromkeys(METRICS, 0.0)


def test_make_candidates_writes_scored_splits_and_resumes(data_dir, tiny_chat, tiny_bert, tmp_path):
    recipe = tmp_path / "cands.yaml"
    recipe.write_text(
        "sources: [gsm8k, biography]\ntest_size: 2\ntrain_size: 3\n"
        f"bertscore_model: {tiny_bert}\nbertscore_layers: 2\ngenerators:\n"
        f"  - {{name: greedy, model: 'hf:{tiny_chat}', max_new_tokens: 6}}\n"
        f"  - {{name: hot, model: 'hf:{tiny_chat}', temperature: 1.0, max_new_tokens: 6}}\n"
    )
    out = tmp_path / "run"
    argv = ["make-candidates", "--recipe", str(recipe), "--out", str(out)]
    argv += ["--data-dir", str(data_dir), "--window", "2"]
    assert main(argv) == 0
    train = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert len(train) == 3 and len(test) == 2
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    for r in train + test:
        assert [c["generator"] for c in r["candidates"]] == ["greedy", "hot"]
        assert all(set(c["scores"]) == set(METRICS) for c in r["candidates"])
        assert r["output"] and r["instruction"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == {"train": 3, "test": 2} and metrics["errored_items"] == 0
    assert set(metrics["generator_means"]["train"]) == {"greedy", "hot"}
    lines = (out / "records.jsonl").read_text()
    assert main(argv) == 0  # resume: nothing generated twice
    assert (out / "records.jsonl").read_text() == lines


def test_candidates_recipe_checks():
    assert len(load_candidates_recipe("candidates_offline").generators) >= 2
    with pytest.raises(ValueError, match="at least 2 generators"):
        load_candidates_recipe("candidates_offline", generators=[{"name": "only"}])


def test_hub_rows_convert_to_records():
    rows = [
        {
            "id": "unified_chip2/1",
            "instruction": "Say hi",
            "input": "",
            "output": "Hi!",
            "candidates": [
                {
                    "model": "oasst",
                    "decoding_method": "top_p_sampling",
                    "text": "Hello",
                    "scores": {"bleu": 10.0, "bertscore": 0.8, "note": "x"},
                },
            ],
        }
    ]
    [record] = _mixinstruct_from_hub(rows, "test")
    assert record["candidates"][0]["scores"] == {"bleu": 10.0, "bertscore": 0.8}
    assert "cmp_results" not in record
    # ChatGPT's pairwise labels are kept (the hub stores them as a JSON string).
    labelled = {**rows[0], "cmp_results": '{"oasst,vicuna": "A is better"}'}
    [kept] = _mixinstruct_from_hub([labelled], "test")
    assert kept["cmp_results"] == {"oasst,vicuna": "A is better"}
    from chorus_blender.records import MixInstructRecord

    assert MixInstructRecord.from_json(kept).cmp_results == {"oasst,vicuna": "A is better"}
    with pytest.raises(ValueError, match="missing field 'output'"):
        _mixinstruct_from_hub([{"id": "x", "instruction": "y", "candidates": []}], "test")
