"""Agent recipes: package data through chorus_shared.config, flags, README table, GLPFT split."""

from __future__ import annotations

from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.glpft import load_glpft_recipe, stage_recipe
from chorus_alpha_umi.recipes import AgentRecipe, available_recipes, load_recipe
from chorus_alpha_umi.static import gold_steps, load_dialogs, select_part
from chorus_shared.config import check_flag_table

README = Path(__file__).parents[1] / "README.md"


def test_readme_flag_table_matches_the_recipe() -> None:
    check_flag_table(AgentRecipe, README)


def test_shipped_recipes_load_and_glpft_recipes_are_not_agent_recipes() -> None:
    names = available_recipes()
    assert {"static_default", "multi_toolllama7b"} <= set(names)
    assert not [n for n in names if n.startswith("glpft")]
    for name in names:
        assert isinstance(load_recipe(name), AgentRecipe)
    static = load_recipe("static_default")
    assert (static.limit, static.params("caller").max_new_tokens) == (20, 64)
    multi = load_recipe("multi_toolllama7b")
    assert multi.spec("planner") != multi.spec("caller")
    assert multi.params("summarizer").max_new_tokens == 512


def test_recipe_errors_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did you mean 'static_default'"):
        load_recipe("static_defualt")
    with pytest.raises(ValueError, match="did you mean 'max_turns'"):
        load_recipe(None, max_turn=3)
    with pytest.raises(ValueError, match="did you mean 'heldout'"):
        load_recipe(None, part="held_out")
    with pytest.raises(ValueError, match="caller_max_new_tokens must be >= 1"):
        load_recipe(None, caller_max_new_tokens=0)


def test_base_inheritance_and_flag_overrides(tmp_path: Path) -> None:
    child = tmp_path / "child.yaml"
    child.write_text("base: static_default\nlimit: 3\n")
    recipe = load_recipe(str(child), temperature=0.5)
    assert (recipe.limit, recipe.temperature, recipe.planner_max_new_tokens) == (3, 0.5, 96)
    # GLPFT recipes are shipped package data too (their own dataclass); base: works there too.
    glpft = tmp_path / "glpft_mine.yaml"
    glpft.write_text("base: glpft_offline\nmax_length: 256\n")
    assert stage_recipe(load_glpft_recipe(str(glpft)), "backbone")["max_length"] == 256


def test_every_field_is_a_flag(tmp_path: Path, capsys) -> None:
    # An unknown spec in a generated flag fails before any run folder is made.
    out = tmp_path / "never"
    assert main(["evaluate", "--caller-max-new-tokens", "0", "--out", str(out)]) == 2
    assert "caller_max_new_tokens" in capsys.readouterr().err
    assert not out.exists()


def test_glpft_split_is_disjoint_and_deterministic() -> None:
    dialogs = [{"id": f"d{k}"} for k in range(12)]
    held = [d["id"] for d in select_part(dialogs, "heldout")]
    train = [d["id"] for d in select_part(dialogs, "train")]
    assert held == ["d0", "d5", "d10"]
    assert not set(held) & set(train) and len(held) + len(train) == 12
    assert select_part(dialogs, "all") == dialogs
    with pytest.raises(ValueError, match="unknown part"):
        select_part(dialogs, "test")


def test_glpft_split_counts_of_the_real_test_file() -> None:
    try:
        dialogs = load_dialogs("out_of_domain")
    except FileNotFoundError:
        pytest.skip("the shared ToolBench test file is not on this machine")
    counts = {}
    for part in ("train", "heldout"):
        chosen = select_part(dialogs, part)
        routes = [s["gold_route"] for d in chosen for s in gold_steps(d)[0]]
        counts[part] = (
            len(chosen),
            routes.count("caller"),
            routes.count("conclusion"),
            routes.count("give up"),
        )
    assert counts == {"train": (320, 923, 233, 88), "heldout": (80, 223, 61, 19)}


def test_readme_glpft_flag_table_matches_the_recipe() -> None:
    from chorus_alpha_umi.glpft import GlpftRecipe
    from chorus_shared.config import render_flag_table

    text = README.read_text()
    start, end = "<!-- glpft-flags:start -->\n", "<!-- glpft-flags:end -->"
    table = text[text.index(start) + len(start) : text.index(end)]
    assert table.strip() == render_flag_table(GlpftRecipe).strip()
