import dataclasses
from pathlib import Path

import pytest

from chorus_selfee.cli import main
from chorus_selfee.recipes import SelfeeRecipe, available_recipes, load_recipe, verb_view
from chorus_shared.config import check_flag_table


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


def test_paper_recipes_sample_at_the_originals_settings() -> None:
    r7 = load_recipe("paper_llama7b")
    assert (r7.infer_temperature, r7.infer_max_new_tokens, r7.judge_max_new_tokens) == (
        0.7,
        2048,
        1024,
    )
    assert (r7.answer_tokens, r7.critique_tokens, r7.revision_tokens) == (512, 128, 512)
    assert r7.train_data and r7.train_data.endswith("merged_whole.json")  # the released mixture
    default = SelfeeRecipe()
    assert (default.serve_min_revisions, default.serve_max_revisions) == (1, 3)
