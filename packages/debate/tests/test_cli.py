"""The real command line, end to end on a tiny random chat model (milliseconds per reply)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from chorus_debate.cli import main
from chorus_debate.evaluate import declined_replies, score_record
from chorus_debate.judge import biography_score
from chorus_debate.recipes import DebateRecipe, available_recipes, load_recipe
from chorus_debate.records import DebateRecord
from chorus_debate.tasks import ARITHMETIC, BIOGRAPHY, load_arithmetic, load_biography
from chorus_shared.config import check_flag_table


@pytest.fixture
def generate(tiny_model_dir: Path):
    """Run ``chorus-debate generate`` on arithmetic with the tiny model; return the exit code."""

    def run(out: Path, *extra: str, limit: int = 4, method: str = "debate") -> int:
        argv = [
            "generate",
            "--task",
            "arithmetic",
            "--method",
            method,
            "--limit",
            str(limit),
            "--max-new-tokens",
            "8",
            "--out",
            str(out),
            *extra,
        ]
        if "--model" not in extra:
            argv += ["--model", f"hf:{tiny_model_dir}"]
        return main(argv)

    return run


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in _lines(run / "records.jsonl")]


def test_generate_writes_a_complete_run(generate, tmp_path, tiny_model_dir, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out) == 0
    for name in ("config.json", "records.jsonl", "metrics.json", "report.md"):
        assert (out / name).is_file(), name
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["accuracy_vs_agents.png", "accuracy_vs_round.png"]
    assert all((out / p).read_bytes().startswith(b"\x89PNG") for p in pngs)

    records = _records(out)
    assert len(records) == 4
    assert [r["id"] for r in records] == [i["id"] for i in load_arithmetic(4, 0)]
    for rec in records:
        assert len(rec["agents"]) == 3
        assert all(a["model"] == f"hf:{tiny_model_dir}" for a in rec["agents"])
        assert [m["role"] for m in rec["agents"][0]["messages"]] == ["user", "assistant"] * 2
        assert len(rec["finish_reasons"]) == 2
        assert "answers" not in rec and "correct" not in rec  # grading is evaluate's job

    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["limit"] == 4
    assert config["task"] == {"name": "arithmetic", "version": 2}
    assert config["recipe"]["model"] == [f"hf:{tiny_model_dir}"]
    assert config["recipe"]["seed"] == 0  # the task's paper seed, written down
    assert config["runtime"]["window"] == 32

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == 4 and metrics["agents"] == 3 and metrics["rounds"] == 2
    assert len(metrics["accuracy_by_round"]) == 2
    graded = [score_record(ARITHMETIC, DebateRecord.from_json(r)) for r in records]
    assert metrics["accuracy"]["mean"] == pytest.approx(
        sum(g.correct for g in graded) / len(records)
    )
    assert metrics["unparseable"] == sum(g.unparseable_last for g in graded)
    report = (out / "report.md").read_text()
    assert "accuracy_vs_round.png" in report and "## Accuracy per round" in report
    assert "arithmetic debate: accuracy" in capsys.readouterr().out


def test_rerun_resumes_without_duplicates(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out) == 0
    before = (out / "records.jsonl").read_bytes()
    capsys.readouterr()
    assert generate(out) == 0
    assert "4 of 4 items already done" in capsys.readouterr().err
    assert (out / "records.jsonl").read_bytes() == before


def test_rerun_completes_a_partial_run(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out) == 0
    lines = _lines(out / "records.jsonl")
    (out / "records.jsonl").write_text("\n".join(lines[:2]) + "\n")
    capsys.readouterr()
    assert generate(out) == 0
    assert "2 of 4 items already done" in capsys.readouterr().err
    final = _lines(out / "records.jsonl")
    assert final[:2] == lines[:2]
    assert sorted(json.loads(x)["id"] for x in final) == sorted(json.loads(x)["id"] for x in lines)


def test_different_limit_is_refused_then_overwrite_restarts(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out) == 0
    before = (out / "records.jsonl").read_bytes()
    capsys.readouterr()
    assert generate(out, limit=2) == 2
    err = capsys.readouterr().err
    assert "recipe.limit" in err
    assert "--overwrite" in err
    assert (out / "records.jsonl").read_bytes() == before  # nothing touched

    assert generate(out, "--overwrite", limit=2) == 0
    assert len(_lines(out / "records.jsonl")) == 2
    assert json.loads((out / "config.json").read_text())["recipe"]["limit"] == 2


def test_runtime_knobs_may_change_on_resume(generate, tmp_path) -> None:
    out = tmp_path / "run"
    assert generate(out, limit=2) == 0
    assert generate(out, "--window", "1", "--batch-size", "2", limit=2) == 0
    assert len(_lines(out / "records.jsonl")) == 2


def test_evaluate_export_writes_the_original_format(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out) == 0
    (out / "metrics.json").unlink()
    export = tmp_path / "export.json"
    assert main(["evaluate", str(out), "--export", str(export)]) == 0
    assert "over 4 of 4 items" in capsys.readouterr().out
    assert (out / "metrics.json").is_file()

    data = json.loads(export.read_text())
    records = _records(out)
    assert set(data) == {r["question"] for r in records}
    for rec in records:
        contexts, answer = data[rec["question"]]
        assert answer == rec["target"]
        assert len(contexts) == 3
        assert contexts == [a["messages"] for a in rec["agents"]]
        for context in contexts:
            assert [m["role"] for m in context] == ["user", "assistant", "user", "assistant"]


def test_report_compares_single_majority_debate(generate, tmp_path, capsys) -> None:
    runs = {m: tmp_path / m for m in ("single", "majority", "debate")}
    for method, out in runs.items():
        assert generate(out, method=method, limit=3) == 0
    capsys.readouterr()
    table = tmp_path / "cmp" / "compare.md"
    assert main(["report", *map(str, runs.values()), "--out", str(table)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert printed == table.read_text() + "\n"  # print() adds one newline
    rows = [ln for ln in printed.splitlines() if ln.startswith("|")]
    assert "method" in rows[0] and "accuracy (%)" in rows[0]
    body = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[1:-1]] for ln in rows[2:]}
    assert set(body) == {"single", "majority", "debate"}
    header = [c.strip() for c in rows[0].split("|")[1:-1]]
    agents, rounds = header.index("agents"), header.index("rounds")
    assert (body["single"][agents], body["single"][rounds]) == ("1", "1")
    assert (body["majority"][agents], body["majority"][rounds]) == ("3", "1")
    assert (body["debate"][agents], body["debate"][rounds]) == ("3", "2")
    # The cut rate is a column: replies cut at the token budget out of all replies.
    cut = header.index("cut at budget")
    replies = {"single": 3, "majority": 9, "debate": 18}  # 3 items x agents x rounds
    for method, n in replies.items():
        match = re.fullmatch(r"(\d+)/(\d+) \((\d+) %\)", body[method][cut])
        assert match, body[method][cut]
        assert int(match.group(2)) == n
        warned = f"replies ({match.group(3)} %) in {runs[method]}" in captured.err
        assert warned == (int(match.group(1)) / n > 0.10)


def test_report_draws_accuracy_vs_agents_across_runs(generate, tmp_path, capsys) -> None:
    runs = [tmp_path / f"debate{n}" for n in (2, 3)]
    for n, out in zip((2, 3), runs, strict=True):
        assert generate(out, "--agents", str(n), "--rounds", "1", limit=2) == 0
    table = tmp_path / "cmp.md"
    assert main(["report", *map(str, runs), "--out", str(table)]) == 0
    plot = tmp_path / "cmp_accuracy_vs_agents.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert plot.name in table.read_text()


def test_heterogeneous_agents_record_their_specs(
    generate, tmp_path, tiny_model_dir, tiny_nosys_dir
) -> None:
    specs = [f"hf:{tiny_model_dir}", f"hf:{tiny_model_dir}/", f"hf:{tiny_nosys_dir}"]
    out = tmp_path / "run"
    extra = [x for spec in specs for x in ("--model", spec)]
    assert generate(out, *extra, limit=2) == 0
    for rec in _records(out):
        assert [a["model"] for a in rec["agents"]] == specs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"] == sorted(specs)
    assert json.loads((out / "config.json").read_text())["recipe"]["model"] == specs


def test_wrong_number_of_model_specs(generate, tmp_path, tiny_model_dir, capsys) -> None:
    spec = f"hf:{tiny_model_dir}"
    assert generate(tmp_path / "run", "--model", spec, "--model", spec, "--agents", "3") == 2
    err = capsys.readouterr().err
    assert "2 model specs given for 3 agents" in err
    assert not (tmp_path / "run" / "records.jsonl").exists()


def test_sys_with_a_template_that_refuses_it(generate, tmp_path, tiny_nosys_dir, capsys) -> None:
    code = generate(tmp_path / "run", "--model", f"hf:{tiny_nosys_dir}", "--sys", limit=1)
    assert code == 2
    err = capsys.readouterr().err
    assert "drop --sys" in err
    assert "Traceback" not in err


def test_sys_with_a_template_that_accepts_it(generate, tmp_path) -> None:
    out = tmp_path / "run"
    assert generate(out, "--sys", "Think hard.", limit=1) == 0
    messages = _records(out)[0]["agents"][0]["messages"]
    assert messages[0] == {"role": "system", "content": "Think hard."}


def test_unknown_model_spec(generate, tmp_path, capsys) -> None:
    assert generate(tmp_path / "run", "--model", "gpt4", limit=1) == 2
    err = capsys.readouterr().err
    assert "gpt4" in err
    for form in ("'default'", "'hf:<hub id or local path>'", "'openai:<model>[@<base url>]'"):
        assert form in err
    # The spec is checked before anything is written, so fixing the typo just works.
    assert not (tmp_path / "run" / "config.json").exists()


def test_invalid_sampling_value_leaves_no_run_folder(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out, "--temperature", "-1", limit=1) == 2
    assert "temperature must be >= 0" in capsys.readouterr().err
    assert not (out / "config.json").exists()
    # The corrected command then starts cleanly in the same folder.
    assert generate(out, "--temperature", "0.5", limit=1) == 0


@pytest.mark.parametrize(
    ("field", "bad", "error", "value"),
    [
        ("repetition_penalty", "0", "repetition_penalty must be > 0", 1.3),
        ("min_p", "1.5", "min_p must be in [0, 1)", 0.1),
    ],
)
def test_sampling_extras_are_validated_and_recorded(
    generate, tmp_path, capsys, field, bad, error, value
) -> None:
    flag = "--" + field.replace("_", "-")
    out = tmp_path / "run"
    assert generate(out, flag, bad, limit=1) == 2
    assert error in capsys.readouterr().err
    assert not (out / "config.json").exists()
    assert generate(out, flag, str(value), limit=1) == 0
    assert json.loads((out / "config.json").read_text())["recipe"][field] == value
    # Off, the field is left out of the identity, so runs made before it existed resume.
    plain = tmp_path / "plain"
    assert generate(plain, limit=1) == 0
    assert field not in json.loads((plain / "config.json").read_text())["recipe"]


def test_out_that_is_a_file_is_a_clean_error(generate, tmp_path, capsys) -> None:
    out = tmp_path / "not_a_dir"
    out.write_text("x")
    assert generate(out, limit=1) == 2
    err = capsys.readouterr().err
    assert "not a directory" in err
    assert "Traceback" not in err


def test_unknown_recipe_field(tmp_path, capsys) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("task: arithmetic\nnum_agents: 3\n")
    assert main(["generate", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "num_agents" in err
    assert "known fields" in err
    assert "agents" in err.split("known fields")[1]
    assert not (tmp_path / "run").exists()


def test_unknown_recipe_name(tmp_path, capsys) -> None:
    assert main(["generate", "--recipe", "nope", "--out", str(tmp_path / "run")]) == 2
    assert "math_default" in capsys.readouterr().err
    assert main(["generate", "--recipe", "gsm_defualt", "--out", str(tmp_path / "run")]) == 2
    assert "did you mean 'gsm_default'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_method_or_field_suggests_the_name(tmp_path, capsys) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("base: gsm_default\nsumarize: true\n")
    assert main(["generate", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "did you mean 'summarize'" in capsys.readouterr().err
    recipe.write_text("base: gsm_default\nmethod: debat\n")
    assert main(["generate", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    assert "did you mean 'debate'" in capsys.readouterr().err


def test_every_paper_row_is_a_recipe_with_its_method() -> None:
    # The Makefile runs recipes, never overrides method: each table row is a shipped recipe.
    for task, rows in {
        "gsm": ("single", "majority"),
        "math": ("single", "majority"),
        "mmlu": ("single", "majority"),
        "bio": ("single", "reflection"),
    }.items():
        for model in ("default", "mistral7b"):
            base = load_recipe(f"{task}_{model}")
            assert base.method == "debate"
            for method in rows:
                row = load_recipe(f"{task}_{model}_{method}")
                assert row.method == method
                # Only the method differs from the debate row.
                assert replace(row, method="debate") == base


def test_readme_flag_table_matches_the_recipe() -> None:
    check_flag_table(DebateRecipe, Path(__file__).parents[1] / "README.md")


def test_shipped_recipes_load() -> None:
    names = available_recipes()
    assert {"math_default", "gsm_default", "mmlu_default", "bio_default"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert isinstance(recipe, DebateRecipe)
        assert recipe.agents == 3 and recipe.rounds == 2
    assert load_recipe("gsm_mistral7b").limit == 100
    assert load_recipe("bio_mistral7b").limit == 40
    # The paper did not cap replies: the 7B recipes' budget must not bind.
    for name in names:
        if name.endswith("_mistral7b"):
            assert load_recipe(name).max_new_tokens >= 2048
    # Inherited through base: gsm_default; stated only where it differs (biographies: longer).
    assert load_recipe("math_default").max_new_tokens == load_recipe("gsm_default").max_new_tokens
    assert (load_recipe("bio_default").max_new_tokens, load_recipe("bio_default").limit) == (768, 2)
    assert load_recipe("bio_default_single").max_new_tokens == 768
    assert load_recipe("mmlu_mistral7b").model == ["hf:mistralai/Mistral-7B-Instruct-v0.2"]


def test_recipe_fields_are_overridden_by_flags(generate, tmp_path) -> None:
    out = tmp_path / "run"
    assert generate(out, "--recipe", "math_default", "--rounds", "1", limit=2) == 0
    recipe = json.loads((out / "config.json").read_text())["recipe"]
    runtime = json.loads((out / "config.json").read_text())["runtime"]
    assert runtime["batch_size"] == 48  # from the recipe (gsm_default, through base)
    assert recipe["rounds"] == 1 and recipe["limit"] == 2 and recipe["max_new_tokens"] == 8
    assert all(len(r["finish_reasons"]) == 1 for r in _records(out))


def test_biography_end_to_end_with_the_tiny_model_as_judge(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "bio"
    argv = ["generate", "--task", "bio", "--limit", "2", "--agents", "2", "--rounds", "1"]
    argv += ["--model", f"hf:{tiny_model_dir}", "--max-new-tokens", "8", "--out", str(out)]
    assert main(argv) == 0
    people = load_biography(2, 1)
    records = _records(out)
    assert [r["id"] for r in records] == [p["id"] for p in people]
    for rec, person in zip(records, people, strict=True):
        score, c = biography_score(rec["judge"]["verdicts"])
        assert score is None or 0.0 <= score <= 1.0
        assert rec["judge"]["model"] == f"hf:{tiny_model_dir}"
        # Every fact of every agent's biography got a verdict, unless the agent declined.
        declined = declined_replies(BIOGRAPHY, DebateRecord.from_json(rec))
        verdicts = c["yes"] + c["no"] + c["uncertain"] + c["unparseable"]
        assert verdicts + declined * len(person["facts"]) == 2 * len(person["facts"])
        assert [len(v) for v in rec["judge"]["verdicts"]] == [len(person["facts"])] * (2 - declined)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "biography"
    assert metrics["accuracy_by_round"] is None
    counts = metrics["judge_counts"]
    yes, no = counts["yes"], counts["no"]
    # The headline is the paper's pooled yes / (yes + no) over every verdict.
    if yes + no:
        assert metrics["accuracy"]["mean"] == pytest.approx(yes / (yes + no))
    else:
        assert metrics["accuracy"] is None
    assert "Judge:" in (out / "report.md").read_text()


def test_report_with_a_run_that_has_no_accuracy(generate, tmp_path, monkeypatch) -> None:
    # A biography run whose judge verdicts are all unparseable has accuracy None: the
    # comparison must still print (a "–" cell), and the plot skips that run.
    import chorus_debate.compare as compare

    runs = [tmp_path / f"debate{n}" for n in (2, 3)]
    for n, out in zip((2, 3), runs, strict=True):
        assert generate(out, "--agents", str(n), "--rounds", "1", limit=1) == 0
    real = compare.evaluate_run

    def no_accuracy_for_two_agents(run, write=False):
        metrics = real(run, write=write)
        if metrics["agents"] == 2:
            metrics["accuracy"] = None
        return metrics

    monkeypatch.setattr(compare, "evaluate_run", no_accuracy_for_two_agents)
    text = compare.compare_runs(runs, tmp_path / "cmp.md")
    row = next(ln for ln in text.splitlines() if ln.startswith("| debate") and "| 2 |" in ln)
    assert "| – |" in row
    assert (tmp_path / "cmp.md").exists()


def test_evaluate_names_a_corrupted_line(generate, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert generate(out, limit=3) == 0
    lines = _lines(out / "records.jsonl")
    lines[1] = lines[1][: len(lines[1]) // 2]
    (out / "records.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    # A counted, reported skip: never graded, never a traceback.
    assert main(["evaluate", str(out)]) == 0
    captured = capsys.readouterr()
    assert "records.jsonl:2: skipped: not a JSON line" in captured.err
    assert "over 2 of 3 items" in captured.out and "skipped records 1" in captured.out
    assert "only 2 of 3 items are finished" in captured.err


def test_evaluate_missing_run(tmp_path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- issue 20: bad input is one line; --help is plain text ---------------------------------


def test_a_recipe_with_a_yaml_syntax_error_is_one_line(tmp_path, capsys) -> None:
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("base: gsm_default\nagents: [3\nrounds: 2\n")
    assert main(["generate", "--recipe", str(recipe), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("chorus-debate: error: recipe ")
    assert f"{recipe}:3: not valid YAML" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--limit", "-1"], "limit must be >= 1, got -1"),
        (["--window", "0"], "window must be >= 1, got 0"),
        (["--judge-max-new-tokens", "-3"], "judge_max_new_tokens must be >= 1"),
    ],
)
def test_negative_limits_and_windows_are_one_line(tmp_path, capsys, flags, message) -> None:
    argv = ["generate", "--task", "arithmetic", "--out", str(tmp_path / "run"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_ray_workers_below_one_is_refused_by_the_parser(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["generate", "--ray", "--ray-workers", "0", "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert "argument --ray-workers: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [[], ["generate"], ["evaluate"], ["report"]])
def test_help_shows_no_rest_markup(capsys, verb) -> None:
    with pytest.raises(SystemExit):
        main([*verb, "--help"])
    out = capsys.readouterr().out
    assert "usage: chorus-debate" in out
    for markup in ("``", ":class:", ":func:", ":meth:", ":mod:", "~chorus"):
        assert markup not in out, markup
