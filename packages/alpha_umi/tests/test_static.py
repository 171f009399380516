"""Static evaluation: gold steps, one batched chat call per role, resumable run dir, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.static import gold_steps, load_dialogs, run_static, score_run
from chorus_shared.models import SamplingParams
from chorus_shared.runs import RunDir

FIXTURES = Path(__file__).parent / "fixtures"

PARAMS = {r: SamplingParams(max_new_tokens=8) for r in ("planner", "caller", "summarizer")}


def _dialogs() -> list[dict]:
    return load_dialogs("out_of_domain", str(FIXTURES))


def test_gold_steps_of_fixture() -> None:
    dialogs = _dialogs()
    first = gold_steps(dialogs[0])
    assert [s["gold_route"] for s in first] == ["caller", "caller", "conclusion"]
    assert first[1]["gold_call"].startswith("Action: get_weather_for_weatherapi")
    assert [t["from"] for t in first[1]["history"]] == [
        "user",
        "assistant",
        "caller",
        "observation",
    ]
    # The unmarked assistant turn stays in the history but is not a step.
    second = gold_steps(dialogs[1])
    assert [s["gold_route"] for s in second] == ["give up"]
    assert len(second[0]["history"]) == 2
    assert gold_steps(dialogs[2]) == []


def test_real_test_file_step_counts() -> None:
    try:
        dialogs = load_dialogs("out_of_domain")
    except FileNotFoundError:
        pytest.skip("the shared ToolBench test file is not on this machine")
    routes = [s["gold_route"] for d in dialogs for s in gold_steps(d)]
    assert (routes.count("caller"), routes.count("conclusion"), routes.count("give up")) == (
        1146,
        294,
        107,
    )


def _oracle(role_text: dict[str, str]):
    def reply(conversation: list[dict]) -> str:
        return role_text["text"]

    return reply


def test_one_chat_call_per_role_and_caller_sees_predicted_thought(
    tmp_path: Path, fake_chat_model
) -> None:
    steps = [s for d in _dialogs() for s in gold_steps(d)]
    planner = fake_chat_model(lambda c: "PLANNED-THOUGHT Next: caller.")
    caller = fake_chat_model(
        lambda c: 'Action: get_weather_for_weatherapi\nAction Input: {"city": "Paris"}'
    )
    summarizer = fake_chat_model(lambda c: "It is 18 degrees and clear in Paris.")
    models = {"planner": planner, "caller": caller, "summarizer": summarizer}
    with RunDir.create(tmp_path / "run", {"recipe": {"x": 1}}) as run:
        assert run_static(run, steps, models.__getitem__, PARAMS, window=64) == 4
        records = run.read_records().finished
    assert [len(c) for c in planner.calls] == [4]
    assert [len(c) for c in caller.calls] == [2]
    assert [len(c) for c in summarizer.calls] == [1]
    # The caller's last history turn is the planner's predicted thought, marker stripped.
    assert caller.calls[0][0][1]["content"].endswith(
        "Assistant: PLANNED-THOUGHT\n\nWrite the caller's tool call."
    )
    m = score_run(records)
    assert m["plan_acc"] == pytest.approx(50.0)  # caller right twice, wrong on conclusion/give up
    assert m["act_em"] == pytest.approx(50.0)
    assert m["arg_f1_hard"] == pytest.approx(100.0) and m["arg_f1_easy"] == 0.0
    assert m["rouge_l"] == pytest.approx(100.0)


def test_resume_does_not_redo_finished_steps(tmp_path: Path, fake_chat_model) -> None:
    steps = [s for d in _dialogs() for s in gold_steps(d)]
    model = fake_chat_model(lambda c: "Next: give up.")
    get = lambda role: model  # noqa: E731
    with RunDir.create(tmp_path / "run", {"recipe": {"x": 1}}) as run:
        run_static(run, steps[:2], get, PARAMS, window=1)
    with RunDir.create(tmp_path / "run", {"recipe": {"x": 1}}) as run:
        assert run_static(run, steps, get, PARAMS, window=1) == 2
        assert len(run.read_records().finished) == 4


def test_cli_evaluate_with_tiny_model(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    out = tmp_path / "static"
    argv = [
        "evaluate",
        "--model",
        f"hf:{tiny_model_dir}",
        "--data-dir",
        str(FIXTURES),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["dialogs_without_steps"] == 1
    assert 0.0 <= metrics["plan_acc"] <= 100.0
    report = (out / "report.md").read_text()
    assert "Plan ACC" in report and "Dialogs: part `all` of the file. Roles:" in report
    assert main(["report", str(out)]) == 0
    assert "| static |" in capsys.readouterr().out


def test_cli_bad_spec_fails_before_run_dir(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["evaluate", "--planner", "nonsense:x", "--out", str(out)]) == 2
    assert not out.exists()
    assert "error:" in capsys.readouterr().err


def test_non_json_observation_in_the_gold_history_is_kept_as_text() -> None:
    from chorus_alpha_umi.dialog import role_prompt

    dialog = {
        "id": "d",
        "tools": [{"name": "f", "description": "x", "parameters": {}}],
        "conversations": [
            {"from": "user", "value": "q"},
            {"from": "assistant", "value": "call. Next: caller."},
            {"from": "caller", "value": "Action: f\nAction Input: {}"},
            {"from": "observation", "value": "<html>503 Service Unavailable</html>"},
            {"from": "assistant", "value": "failed. Next: give up."},
        ],
    }
    steps = gold_steps(dialog)
    assert [s["gold_route"] for s in steps] == ["caller", "give up"]
    prompt = role_prompt("planner", dialog["tools"], steps[1]["history"])
    assert "Observation: <html>503 Service Unavailable</html>" in prompt[1]["content"]
