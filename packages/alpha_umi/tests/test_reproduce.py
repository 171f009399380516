"""The `make reproduce-alpha-umi` sequence end to end on a tiny model: GLPFT stage 1 and 2, the
single- vs multi-model static evaluation, one table and one chart."""

from __future__ import annotations

import json
from pathlib import Path

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.glpft import load_glpft_recipe, stage_recipe

FIXTURES = Path(__file__).parent / "fixtures"


def test_reproduce_recipe_budget_and_paper_learning_rates() -> None:
    budget = load_glpft_recipe("glpft_reproduce")
    backbone = stage_recipe(budget, "backbone", world_size=1)
    assert backbone["model"] == "default" and backbone["learning_rate"] == 2e-4
    assert backbone["truncation"] == "left" and backbone["bf16"] is True
    assert backbone["extra_args"]["save_strategy"] == "no" and backbone["max_steps"] == 20
    offline = load_glpft_recipe("glpft_offline", model="hf:x")
    for role in ("planner", "caller", "summarizer"):
        stage = stage_recipe(load_glpft_recipe("glpft_reproduce", model="hf:x"), role, 1)
        # The budget run's scaled-up rate is below the backbone's, as in the paper.
        assert stage["learning_rate"] == 1e-4 and stage["max_steps"] >= 1
        # The paper's rates stay in the full-schedule recipe.
        assert stage_recipe(offline, role, world_size=1)["learning_rate"] == 1e-5
    assert stage_recipe(load_glpft_recipe("glpft_offline"), "backbone", 1)["learning_rate"] == 5e-5


def test_reproduce_sequence_with_tiny_model(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    # The shipped budget recipe's training settings (bf16 on CPU included), tiny model, 1 step.
    recipe = tmp_path / "glpft_tiny.yaml"
    recipe.write_text(f"base: glpft_reproduce\nbase_model: 'hf:{tiny_model_dir}'\nmax_steps: 1\n")
    for stage in ("backbone", "planner", "caller", "summarizer"):
        recipe.write_text(recipe.read_text() + f"{stage}_max_steps: 1\n")
    data = tmp_path / "data"
    split = ["--split", "out_of_domain", "--data-dir", str(FIXTURES)]
    assert main(["preprocess", *split, "--out", str(data)]) == 0
    train = ["train", "--recipe", str(recipe), "--data", str(data)]
    assert main([*train, "--stage", "backbone", "--out", str(tmp_path / "backbone")]) == 0
    backbone = f"hf:{tmp_path / 'backbone' / 'model'}"
    for role in ("planner", "caller", "summarizer"):
        out = tmp_path / role
        assert main([*train, "--stage", role, "--model", backbone, "--out", str(out)]) == 0
        assert (out / "model" / "config.json").is_file()
    evaluate = ["evaluate", "--data-dir", str(FIXTURES), "--part", "all"]
    short = ["--planner-max-new-tokens", "4", "--caller-max-new-tokens", "4"]
    single, multi = tmp_path / "static-single", tmp_path / "static-multi"
    assert (
        main(
            [
                *evaluate,
                "--recipe",
                "reproduce_single",
                *short,
                "--model",
                backbone,
                "--out",
                str(single),
            ]
        )
        == 0
    )
    roles = [
        x
        for r in ("planner", "caller", "summarizer")
        for x in (f"--{r}", f"hf:{tmp_path / r / 'model'}")
    ]
    assert (
        main([*evaluate, "--recipe", "reproduce_multi", *short, *roles, "--out", str(multi)]) == 0
    )
    capsys.readouterr()
    report = tmp_path / "report.md"
    assert main(["report", str(single), str(multi), "--out", str(report)]) == 0
    table = capsys.readouterr().out
    assert "| static-single | 1 model, 3 role prompts:" in table
    assert "| static-multi | 3 models: planner" in table
    assert (tmp_path / "report_metrics.png").stat().st_size > 0
    assert "![report metrics](report_metrics.png)" in report.read_text()
    for run in (single, multi):
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["steps"] == 4 and metrics["dialogs"] == 3

    # Real-time part: both agents in whole episodes on one shared simulator cache, then pass
    # rate of each and win rate of multi over single (the tiny model plays API and judge here;
    # the shipped recipes use the embedded model for both).
    tiny = f"hf:{tiny_model_dir}"
    cache = tmp_path / "simulator_cache.jsonl"
    common = ["--data-dir", str(FIXTURES), "--part", "all", *short, "--simulator", tiny]
    common += ["--summarizer-max-new-tokens", "4", "--simulator-cache", str(cache)]
    episodes = {}
    for side, extra in (("single", ["--model", backbone]), ("multi", roles)):
        episodes[side] = tmp_path / f"episodes-{side}"
        argv = ["run", "--recipe", f"realtime_{side}", *common, *extra]
        assert main([*argv, "--out", str(episodes[side])]) == 0
        config = json.loads((episodes[side] / "config.json").read_text())
        assert config["recipe"]["max_turns"] == 2 and config["recipe"]["simulator"] == tiny
    realtime = tmp_path / "realtime"
    argv = ["evaluate", "--episodes", str(episodes["multi"]), "--reference"]
    argv += [str(episodes["single"]), "--judge", tiny, "--out", str(realtime)]
    assert main(argv) == 0
    metrics = json.loads((realtime / "metrics.json").read_text())
    assert metrics["queries"] == metrics["pairs"] == 2  # the recipe's limit
    assert sum(metrics["outcomes"].values()) == 2
    capsys.readouterr()
    assert main(["report", str(single), str(multi), str(realtime)]) == 0
    text = capsys.readouterr().out
    assert "| static-multi |" in text
    assert "| realtime | `episodes-multi` vs `episodes-single` |" in text
