"""CLI: rank a JSONL file with bad lines (counted, the rest ranked), resume, compare, fuse."""

from __future__ import annotations

import json

from chorus_blender.best_of_n import best_of_n_generate
from chorus_blender.cli import main
from chorus_blender.fuser import fuse, fuser_prompt
from chorus_blender.ranker import PairRanker
from chorus_blender.recipes import available_recipes, load_recipe
from chorus_shared.models import Completion, SamplingParams


def test_rank_file_skips_bad_lines_and_resumes(tiny_bert, tmp_path, capsys):
    ranker = PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path / "ranker")
    lines = [
        json.dumps({"id": "a", "source": "2+2?", "candidates": ["4", "5", "four"]}),
        "{not json",
        json.dumps({"id": "b", "source": "hi", "candidates": []}),
        json.dumps({"id": "c", "instruction": "name one", "candidates": [{"text": "x"}]}),
    ]
    data = tmp_path / "items.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ranked"
    args = ["rank", "--ranker", str(ranker), "--input", str(data), "--out", str(out)]
    assert main(args) == 0
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "c"]
    assert sorted(records[0]["ranks"]) == [1, 2, 3]
    assert records[0]["chosen"] == records[0]["candidates"][records[0]["best_index"]]
    assert records[1]["ranks"] == [1]
    err = capsys.readouterr().err
    assert "items.jsonl:2: not JSON" in err and "non-empty list" in err
    assert main(args) == 0  # resume: nothing is ranked twice
    assert len((out / "records.jsonl").read_text().splitlines()) == 2


def test_compare_prints_a_logit(tiny_bert, tmp_path, capsys):
    ranker = PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path / "ranker")
    argv = ["compare", "--ranker", str(ranker), "--source", "s", "--a", "x", "--b", "y"]
    assert main(argv) == 0
    assert "logit" in json.loads(capsys.readouterr().out)


def test_missing_input_is_one_error_line(tmp_path, capsys):
    argv = ["rank", "--ranker", str(tmp_path), "--input", str(tmp_path / "no.jsonl"), "--out", "x"]
    assert main(argv) == 2
    assert "no such file" in capsys.readouterr().err


def test_best_of_n_line_without_prompt_is_one_clear_error(tmp_path, capsys):
    data = tmp_path / "prompts.jsonl"
    data.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n" + json.dumps({"id": "b"}) + "\n")
    argv = ["best-of-n", "--model", "default", "--ranker", str(tmp_path), "--prompts", str(data)]
    assert main([*argv, "--out", str(tmp_path / "runs" / "bon")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-blender best-of-n: error: ") and "prompts.jsonl:2" in err
    assert "every line needs a 'prompt'" in err and not (tmp_path / "runs").exists()


class _Chat:
    spec = "fake"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def chat(self, conversations, params):
        self.calls.append(len(conversations))
        out = []
        for k in range(len(conversations)):
            if k == 1:
                out.append(Completion(text="", finish_reason="error", error="boom"))
            else:
                out.append(Completion(text=f"good {k}" if k % 2 == 0 else f"bad {k}"))
        return out


def test_best_of_n_one_call_errors_counted_best_kept(order_scorer):
    model = _Chat()
    scorer = order_scorer({f"good {k}": 1.0 + k for k in range(8)} | {"bad 3": -1.0, "bad 5": -2.0})
    results = best_of_n_generate(
        model, scorer, ["p1", "p2"], n=3, params=SamplingParams(temperature=1.0)
    )
    assert model.calls == [6]  # all samples of all prompts in one batched call
    assert results[0].errors == 1 and results[0].samples == ["good 0", "good 2"]
    assert results[0].best == "good 2"
    assert results[1].samples == ["bad 3", "good 4", "bad 5"] and results[1].best == "good 4"


def test_fuser_prompt_and_batched_fuse():
    text = fuser_prompt("Explain X", ["a " * 200, "b"], max_words=10)
    assert text.startswith("Instruction: Explain X")
    assert "Candidate 1: " + "a " * 9 + "a ..." in text and "Candidate 2: b" in text
    model = _Chat()
    assert fuse(model, ["q1", "q2", "q3"], [["x"], ["y"], ["z"]]) == ["good 0", "", "good 2"]
    assert model.calls == [3]


def test_shipped_recipes_load():
    assert {"ranker_minilm_offline", "ranker_deberta_v3_large"} <= set(available_recipes())
    assert load_recipe("ranker_deberta_v3_large").source_max_length == 1224
