"""chorus_shared.config: flags from a dataclass, YAML recipes with base:, the README table."""

from __future__ import annotations

import argparse
import re
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
    count_type,
    load_recipe,
    load_yaml_mapping,
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


# -- issue 20: bad recipe files and counts are one clear line, for every package ----------


@pytest.mark.parametrize(
    "text, line",
    [
        ("task: gsm\nrounds: [3\nsummarize: true\n", 3),  # an unclosed list
        ("task: gsm\n  rounds: 3\n", 2),  # a stray indent
        ('task: "gsm\n', 2),  # an unclosed quote
    ],
)
def test_a_recipe_with_a_yaml_syntax_error_is_one_line_naming_file_and_line(
    recipe_pkg: str, tmp_path: Path, text: str, line: int
) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text(text)
    with pytest.raises(ValueError) as caught:
        load_recipe(Demo, str(bad), recipe_pkg)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{bad}:{line}: not valid YAML" in message


def test_a_broken_base_recipe_is_named_too(recipe_pkg: str, tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("rounds: 3\n: oops: [\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nrounds: 4\n")
    with pytest.raises(ValueError, match=r"base\.yaml:2: not valid YAML"):
        load_recipe(Demo, str(tmp_path / "child.yaml"), recipe_pkg)


@dataclass
class Counts:
    limit: int | None = field(default=None, metadata={"help": "first N items"})
    window: int = field(default=8, metadata={"help": "items in flight"})
    batch_size: int = field(default=4, metadata={"help": "micro-batch"})
    eval_limit: int | None = field(default=None, metadata={"help": "evaluate: first N"})
    judge_max_new_tokens: int = field(default=8, metadata={"help": "judge budget"})
    n: int = field(default=3, metadata={"help": "a count that may be 0"})
    max_steps: int = field(default=-1, metadata={"help": "-1: no cap"})
    offset: int = field(default=0, metadata={"help": "signed", "min": None})
    depth: int = field(default=2, metadata={"help": "nesting", "min": 1})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"limit": -1}, "limit must be >= 1, got -1 (flag --limit)"),
        ({"limit": 0}, "limit must be >= 1, got 0"),
        ({"window": 0}, "window must be >= 1, got 0 (flag --window)"),
        ({"batch_size": -2}, "batch_size must be >= 1"),
        ({"eval_limit": -1}, "eval_limit must be >= 1, got -1 (flag --eval-limit)"),
        ({"judge_max_new_tokens": 0}, "judge_max_new_tokens must be >= 1"),
        ({"n": -5}, "n must be >= 0, got -5 (flag --n)"),
        ({"max_steps": -2}, "max_steps must be >= -1"),
        ({"depth": 0}, "depth must be >= 1"),
    ],
)
def test_counts_are_checked_once_in_the_shared_recipe_layer(data: dict, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        build_recipe(Counts, data)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_valid_counts_and_unbounded_fields_pass() -> None:
    recipe = build_recipe(Counts, {"limit": 1, "n": 0, "max_steps": -1, "offset": -7})
    assert (recipe.limit, recipe.n, recipe.max_steps, recipe.offset) == (1, 0, -1, -7)
    assert build_recipe(Counts, {"limit": None}).limit is None


def test_bad_counts_from_flags_are_one_cli_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_recipe_arguments(parser, Counts)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        load_recipe(
            Counts, None, "unused", cli_overrides(parser.parse_args(["--window", "0"]), Counts)
        )


def test_count_type_for_flags_outside_a_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="chorus-demo")
    parser.add_argument("--window", type=count_type(1), default=4)
    parser.add_argument("--workers", type=count_type(0))
    assert parser.parse_args(["--window", "2", "--workers", "0"]).window == 2
    for argv in (["--window", "0"], ["--workers", "-1"], ["--window", "x"]):
        with pytest.raises(SystemExit) as exited:
            parser.parse_args(argv)
        assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --window: must be >= 1, got 0" in err
    assert "argument --workers: must be >= 0, got -1" in err
    assert "Traceback" not in err


def test_load_yaml_mapping_for_other_loaders(tmp_path: Path) -> None:
    good = tmp_path / "train.yaml"
    good.write_text("model: default\nmax_steps: 3\n")
    assert load_yaml_mapping(good) == {"model": "default", "max_steps": 3}
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: default\nlora: {r: 8\n")
    with pytest.raises(ValueError, match=rf"training recipe {re.escape(str(bad))}:\d+: not valid"):
        load_yaml_mapping(bad, what="training recipe")
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_yaml_mapping(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_yaml_mapping(tmp_path / "nope.yaml")
