"""chorus_shared.config: flags from a dataclass, YAML recipes with base:, the README table."""

from __future__ import annotations

import argparse
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chorus_shared.config import (
    add_recipe_arguments,
    available_recipes,
    build_recipe,
    check_flag_table,
    cli_overrides,
    load_recipe,
    render_flag_table,
    update_flag_table,
)


@dataclass
class Demo:
    task: str = field(default="gsm", metadata={"help": "task name", "choices": ["gsm", "mmlu"]})
    model: list[str] = field(default_factory=lambda: ["default"], metadata={"help": "specs"})
    rounds: int = field(default=2, metadata={"help": "rounds", "aliases": ["--num-rounds"]})
    summarize: bool = field(default=False, metadata={"help": "summarize | not"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    system: str | None = field(
        default=None, metadata={"flags": ["--sys"], "nargs": "?", "const": "BE NICE", "help": "s"}
    )
    note: str = field(default="", metadata={"cli": False, "help": "recipe only"})

    RUNTIME = ("rounds",)

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")


def _parse(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser, Demo)
    return cli_overrides(parser.parse_args(argv), Demo)


def test_flags_from_fields_only_given_ones_override() -> None:
    assert _parse([]) == {}
    got = _parse(
        [
            "--num-rounds",
            "4",
            "--model",
            "a",
            "--model",
            "b",
            "--summarize",
            "--sys",
            "--temperature",
            "0.5",
        ]
    )
    assert got == {
        "rounds": 4,
        "model": ["a", "b"],
        "summarize": True,
        "system": "BE NICE",
        "temperature": 0.5,
    }
    assert _parse(["--no-summarize", "--sys", "hi"]) == {"summarize": False, "system": "hi"}
    with pytest.raises(SystemExit):
        _parse(["--task", "nope"])
    with pytest.raises(SystemExit):
        _parse(["--note", "x"])  # cli: False keeps the field out of the command line


def test_help_text_comes_from_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser, Demo)
    parser.print_help()
    out = capsys.readouterr().out
    assert "sampling temperature" in out and "--num-rounds" in out and "--no-summarize" in out


def test_build_recipe_checks_names_and_types() -> None:
    assert build_recipe(Demo, {"model": "x", "temperature": 1}).model == ["x"]
    assert isinstance(build_recipe(Demo, {"temperature": 1}).temperature, float)
    with pytest.raises(ValueError, match="did you mean 'rounds'"):
        build_recipe(Demo, {"round": 3})
    with pytest.raises(ValueError, match="rounds must be int"):
        build_recipe(Demo, {"rounds": "3"})
    with pytest.raises(ValueError, match="rounds must be int"):
        build_recipe(Demo, {"rounds": True})
    with pytest.raises(ValueError, match="must not be null"):
        build_recipe(Demo, {"task": None})
    with pytest.raises(ValueError, match=">= 1"):
        build_recipe(Demo, {"rounds": 0})


@pytest.fixture
def recipe_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    pkg = tmp_path / "demo_recipes_pkg"
    (pkg / "recipes").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "recipes" / "gsm_default.yaml").write_text("task: gsm\nrounds: 3\nsummarize: true\n")
    (pkg / "recipes" / "gsm_more.yaml").write_text("base: gsm_default\nrounds: 5\n")
    (pkg / "recipes" / "loop_a.yaml").write_text("base: loop_b\n")
    (pkg / "recipes" / "loop_b.yaml").write_text("base: loop_a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("demo_recipes_pkg", None)
    return "demo_recipes_pkg"


def test_shipped_recipes_inherit_and_flags_win(recipe_pkg: str, tmp_path: Path) -> None:
    assert available_recipes(recipe_pkg) == ["gsm_default", "gsm_more", "loop_a", "loop_b"]
    more = load_recipe(Demo, "gsm_more", recipe_pkg)
    assert (more.rounds, more.summarize, more.task) == (5, True, "gsm")
    flagged = load_recipe(Demo, "gsm_more.yaml", recipe_pkg, {"rounds": 7, "task": None})
    assert (flagged.rounds, flagged.task) == (7, "gsm")
    # A recipe file outside the package may inherit a shipped recipe or a sibling file.
    (tmp_path / "mine.yaml").write_text("base: gsm_default\ntemperature: 0.2\n")
    (tmp_path / "child.yaml").write_text("base: mine.yaml\nrounds: 9\n")
    child = load_recipe(Demo, str(tmp_path / "child.yaml"), recipe_pkg)
    assert (child.rounds, child.temperature, child.summarize) == (9, 0.2, True)
    assert load_recipe(Demo, None, recipe_pkg, {"rounds": 4}).rounds == 4


def test_recipe_errors_say_how_to_fix(recipe_pkg: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did you mean 'gsm_default'"):
        load_recipe(Demo, "gsm_defualt", recipe_pkg)
    with pytest.raises(ValueError, match="cycle"):
        load_recipe(Demo, "loop_a", recipe_pkg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: gsm_default\nsumarize: true\n")
    with pytest.raises(ValueError, match="did you mean 'summarize'"):
        load_recipe(Demo, str(bad), recipe_pkg)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(Demo, str(bad), recipe_pkg)


def test_flag_table_render_check_update(tmp_path: Path) -> None:
    table = render_flag_table(Demo)
    assert "| `--rounds`, `--num-rounds` | `rounds` | int | `2` | rounds |" in table
    assert "| (recipe only) | `note` |" in table
    assert "summarize \\| not" in table  # a pipe in help text does not break the row
    readme = tmp_path / "README.md"
    readme.write_text(
        textwrap.dedent("""\
        # Demo
        <!-- flags:start -->
        | stale |
        <!-- flags:end -->
        after
        """)
    )
    with pytest.raises(ValueError, match=r"out of date(.|\n)*update_flag_table"):
        check_flag_table(Demo, readme)
    assert update_flag_table(Demo, readme) is True
    check_flag_table(Demo, readme)
    assert update_flag_table(Demo, readme) is False
    assert readme.read_text().endswith("<!-- flags:end -->\nafter\n")
    (tmp_path / "none.md").write_text("no table")
    with pytest.raises(ValueError, match="flags:start"):
        check_flag_table(Demo, tmp_path / "none.md")
