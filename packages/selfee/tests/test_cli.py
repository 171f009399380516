import dataclasses
import json
from pathlib import Path

import pytest

from chorus_selfee.cli import main
from chorus_selfee.recipes import SelfeeRecipe, available_recipes, load_recipe, verb_view
from chorus_shared.config import check_flag_table
from chorus_shared.runs import RunDir


def test_recipes_load_and_inherit() -> None:
    assert {"offline", "paper_llama7b", "paper_llama13b"} <= set(available_recipes())
    r13 = load_recipe("paper_llama13b")
    assert r13.train["model"].endswith("llama-13b") and r13.train["learning_rate"] == 2e-5
    assert r13.max_iterations == 5 and r13.judge == "openai:gpt-4"  # from the base recipe
    with pytest.raises(ValueError, match="unknown field 'bogus'"):
        load_recipe("offline", bogus=1)
    with pytest.raises(ValueError, match=r"1\.\.5"):
        load_recipe("offline", max_iterations=9)
    with pytest.raises(ValueError, match="did you mean 'teacher'"):
        load_recipe("offline", teachr="default")
    with pytest.raises(FileNotFoundError, match="did you mean 'offline'"):
        load_recipe("ofline")
    with pytest.raises(ValueError, match="did you mean 'answer-only'"):
        load_recipe("offline", objective="answer_only")
    with pytest.raises(ValueError, match="must be int"):
        load_recipe("offline", max_num_revision="2")


def test_recipe_yaml_path_with_base(tmp_path) -> None:
    child = tmp_path / "mine.yaml"
    child.write_text("base: offline\nmax_num_revision: 2\n")
    r = load_recipe(str(child))
    assert r.max_num_revision == 2 and r.limit == load_recipe("offline").limit


def test_readme_flag_table_matches_the_recipe() -> None:
    check_flag_table(SelfeeRecipe, Path(__file__).parents[1] / "README.md")


def test_each_verb_takes_only_its_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--data", "d", "--out", "o", "--teacher", "x"])  # generate's flag
    assert "unrecognized arguments: --teacher" in capsys.readouterr().err
    for verb in ("generate", "infer", "evaluate"):
        view = {f.name for f in dataclasses.fields(verb_view(verb))}
        assert {"limit", "seed", "window"} <= view
    assert "max_num_revision" in {f.name for f in dataclasses.fields(verb_view("infer"))}


def test_pipeline_end_to_end_tiny(tmp_path, tiny_model_dir, capsys) -> None:
    spec = f"hf:{tiny_model_dir}"
    gen = tmp_path / "gen"
    args = [
        "generate",
        "--teacher",
        spec,
        "--instructions",
        "vicuna80",
        "--split",
        "test",
        "--limit",
        "3",
        "--max-iterations",
        "2",
        "--max-new-tokens",
        "6",
        "--window",
        "2",
        "--out",
        str(gen),
    ]
    assert main(args) == 0
    recs = RunDir.open(gen).records()
    assert len(recs) == 3 and all("outputs" in r for r in recs)
    # A random teacher writes no verdict: counted, loop ended, nothing guessed.
    assert json.loads(capsys.readouterr().out)["missing_verdicts"] == 3
    assert main(args) == 0  # resume: nothing redone
    assert len(RunDir.open(gen).records()) == 3

    train_dir = tmp_path / "train"
    assert main(["train", "--data", str(gen), "--out", str(train_dir), "--records-only"]) == 0
    lines = (train_dir / "train_records.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["segments"][0]["weight"] == 0.0

    infer = tmp_path / "infer"
    assert (
        main(
            [
                "infer",
                "--model",
                spec,
                "--limit",
                "3",
                "--max-num-revision",
                "2",
                "--infer-max-new-tokens",
                "6",
                "--out",
                str(infer),
            ]
        )
        == 0
    )
    inf = RunDir.open(infer).records()
    assert [r["id"] for r in inf] == ["vicuna80-1", "vicuna80-2", "vicuna80-3"]

    ev = tmp_path / "eval"
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--answers",
                str(infer),
                "--reference",
                str(tmp_path / "missing.jsonl"),
                "--judge",
                spec,
            ]
        )
        == 2
    )
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        "".join(json.dumps({"question_id": i, "text": f"ref {i}"}) + "\n" for i in (1, 2, 3))
    )
    assert (
        main(
            [
                "evaluate",
                "--answers",
                str(infer),
                "--reference",
                str(ref),
                "--judge",
                spec,
                "--out",
                str(ev),
            ]
        )
        == 0
    )
    m = RunDir.open(ev).read_metrics()
    assert m["parsed"] + m["unparsed"] == 6  # 3 questions x 2 orders, each counted
    assert "| all |" in capsys.readouterr().out
    assert main(["report", str(ev)]) == 0
    # Constrained judge scores: every review is a parseable "a b" line (both orders).
    ev_c = tmp_path / "eval-constrained"
    base = ["evaluate", "--answers", str(infer), "--reference", str(ref), "--judge", spec]
    assert main([*base, "--judge-scores", "constrained", "--out", str(ev_c)]) == 0
    mc = RunDir.open(ev_c).read_metrics()
    assert (mc["parsed"], mc["unparsed"], mc["answers_k"]) == (6, 0, 2)
    assert mc["per_group"]["general"]["parsed"] == 6
    # Likelihood judge: "1" vs "2" preference, both orders, reported as a win rate.
    ev_l = tmp_path / "eval-likelihood"
    assert main([*base, "--judge-scores", "likelihood", "--out", str(ev_l)]) == 0
    ml = RunDir.open(ev_l).read_metrics()
    assert ml["judge_kind"] == "pairwise" and ml["wins"] + ml["losses"] + ml["ties"] == 3
    rep = tmp_path / "rep"
    assert main(["report", str(ev), str(ev_c), str(ev_l), "--out", str(rep)]) == 0
    assert "Pairwise judges" in (rep / "report.md").read_text()


def test_bad_spec_fails_before_run_dir(tmp_path) -> None:
    out = tmp_path / "g"
    assert main(["generate", "--teacher", "nope:x", "--out", str(out)]) == 2
    assert not out.exists()
