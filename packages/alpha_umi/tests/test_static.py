"""Static evaluation: gold steps, routing as the original, one batched chat call per role,
the run engine (resume, errored items, fingerprints), the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.evaluate import prediction_text
from chorus_alpha_umi.metrics import parse_output
from chorus_alpha_umi.records import StepRecord
from chorus_alpha_umi.static import gold_steps, load_dialogs, predict_window
from chorus_shared.models import SamplingParams
from chorus_shared.testing import FakeOpenAIServer

FIXTURES = Path(__file__).parent / "fixtures"
PARAMS = {r: SamplingParams(max_new_tokens=8) for r in ("planner", "caller", "summarizer")}
WEATHER = 'Action: get_weather_for_weatherapi\nAction Input: {"city": "Paris"}'


def _steps(mode: str = "multi") -> list[dict]:
    return [s for d in load_dialogs("out_of_domain", str(FIXTURES)) for s in gold_steps(d, mode)[0]]


def test_gold_steps_and_references_of_fixture() -> None:
    dialogs = load_dialogs("out_of_domain", str(FIXTURES))
    first, defects = gold_steps(dialogs[0])
    assert defects == 0
    assert [s["gold_route"] for s in first] == ["caller", "caller", "conclusion"]
    # The original's reference string: the planner turn, "</s>", the call, "</s>".
    assert first[1]["reference"] == (
        "assistant: Paris is supported; get its weather. Next: caller.</s>caller: "
        + WEATHER
        + "</s>"
    )
    assert [t["from"] for t in first[1]["history"]] == [
        "user",
        "assistant",
        "caller",
        "observation",
    ]
    second, _ = gold_steps(dialogs[1])
    assert [s["gold_route"] for s in second] == ["give up"] and len(second[0]["history"]) == 2
    assert gold_steps(dialogs[2]) == ([], 0)
    backbone, _ = gold_steps(dialogs[0], "backbone")
    assert backbone[1]["reference"] == "Paris is supported; get its weather.\n" + WEATHER


def test_real_test_file_step_counts() -> None:
    try:
        dialogs = load_dialogs("out_of_domain")
    except FileNotFoundError:
        pytest.skip("the shared ToolBench test file is not on this machine")
    plans = [parse_output(s["reference"]).plan for d in dialogs for s in gold_steps(d)[0]]
    assert (plans.count("call"), plans.count("finish"), plans.count("give up")) == (1146, 294, 107)


def test_a_misrouted_step_scores_zero_on_its_call(fake_chat_model) -> None:
    # Issue 25 point 1: the caller is asked only when the planner routed to it.
    steps = _steps()  # caller, caller, conclusion, give up
    routes = iter(["Next: caller.", "Next: conclusion.", "Next: conclusion.", "Next: give up."])
    planner = fake_chat_model(lambda c: "thought " + next(routes))
    caller = fake_chat_model(lambda c: WEATHER)
    summarizer = fake_chat_model(lambda c: "It is 18 degrees and clear in Paris.")
    models = {"planner": planner, "caller": caller, "summarizer": summarizer}
    records = [StepRecord.from_json(r) for r in predict_window(steps, models.__getitem__, PARAMS)]
    assert [len(c) for c in planner.calls] == [4]
    assert [len(c) for c in caller.calls] == [1]  # only the step routed to the caller
    assert [len(c) for c in summarizer.calls] == [2]
    # The caller's last history turn is the planner's predicted thought, marker stripped.
    assert caller.calls[0][0][1]["content"].endswith(
        "Assistant: thought\n\nWrite the caller's tool call."
    )
    misrouted = parse_output(prediction_text(records[1]))
    gold = parse_output(records[1].reference)
    assert gold.plan == "call" and misrouted.plan == "finish" and misrouted.action is None
    assert "caller" not in records[1].replies


def test_gold_routed_diagnostic_is_stored_apart(fake_chat_model, tmp_path: Path) -> None:
    steps = _steps()[:2]
    planner = fake_chat_model(lambda c: "t Next: conclusion.")
    caller = fake_chat_model(lambda c: WEATHER)
    models = {"planner": planner, "caller": caller, "summarizer": fake_chat_model(lambda c: "a")}
    out = predict_window(steps, models.__getitem__, PARAMS, gold_routed_diagnostic=True)
    assert all("diagnostic_caller" in r["replies"] and "caller" not in r["replies"] for r in out)


def _evaluate(tmp_path: Path, *extra: str) -> list[str]:
    return ["evaluate", "--data-dir", str(FIXTURES), "--out", str(tmp_path / "run"), *extra]


def _responder(request: dict) -> str:
    system = request["messages"][0]["content"]
    if system.startswith("You are the planner"):
        return "I should call. Next: caller."
    if system.startswith("You are the caller"):
        return WEATHER
    return "It is 18 degrees and clear in Paris."


def test_cli_static_through_the_engine_resumes_and_rescoring(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(_responder) as server:
        argv = _evaluate(tmp_path, "--model", f"openai:m@{server.base_url}", "--window", "2")
        assert main([*argv, "--limit", "1"]) == 0
        config = json.loads((tmp_path / "run" / "config.json").read_text())
        assert len(config["item_ids"]) == 3 and "out_of_domain.json" in str(config["data"])
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        # Steps: call (right), call (right API, hard args match), conclusion (routed to caller).
        assert metrics["plan_acc"] == pytest.approx(200 / 3)
        assert metrics["act_em"] == 50.0  # the first gold call is list_cities, the second right
        assert metrics["rouge_l"] == 0.0  # the planner never routed to the summarizer
        assert metrics["coverage"] == "3 of 3 items"
    report = (tmp_path / "run" / "report.md").read_text()
    assert "Plan ACC" in report and "R-L rouge-score (ours)" in report
    # Re-scoring a run reads only its records; --out writes elsewhere.
    assert main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "scores")]) == 0
    assert json.loads((tmp_path / "scores" / "metrics.json").read_text())["steps"] == 3


def test_a_server_that_refuses_everything_is_errored_never_scored(tmp_path: Path, capsys) -> None:
    # Issue 20: HTTP 400 on every request gave Plan ACC 75 and exit 0.
    with FakeOpenAIServer(always_fail_status=400) as server:
        code = main(_evaluate(tmp_path, "--model", f"openai:m@{server.base_url}", "--window", "2"))
    err = capsys.readouterr().err
    assert code != 0 and err.count("chorus-alpha-umi: error:") == 1 and "HTTP 400" in err
    lines = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert lines and all(r["error"] for r in lines)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert main(["evaluate", str(tmp_path / "run")]) == 2
    assert "no finished records" in capsys.readouterr().err


def test_readers_count_duplicates_and_foreign_lines_once(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(_responder) as server:
        argv = _evaluate(tmp_path, "--model", f"openai:m@{server.base_url}", "--limit", "1")
        assert main(argv) == 0
    records = tmp_path / "run" / "records.jsonl"
    lines = records.read_text().splitlines()
    foreign = json.loads(lines[0]) | {"id": "toolbench-other-9-s1"}
    records.write_text("\n".join([*lines, lines[0], json.dumps(foreign)]) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["skipped_records"] >= 1
    assert metrics["plan_acc"] == pytest.approx(200 / 3)
    assert "note:" in captured.err


def test_resume_on_changed_data_is_refused(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data" / "toolbench_alpha_umi"
    data.mkdir(parents=True)
    source = (FIXTURES / "toolbench_alpha_umi" / "out_of_domain.json").read_text()
    (data / "out_of_domain.json").write_text(source)
    with FakeOpenAIServer(_responder) as server:
        argv = ["evaluate", "--model", f"openai:m@{server.base_url}", "--limit", "1"]
        argv += ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
        assert main(argv) == 0
        (data / "out_of_domain.json").write_text(source.replace("Paris", "Lyon"))
        capsys.readouterr()
        assert main(argv) == 2
    assert "data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[{", "out_of_domain.json is not valid JSON"),
        ('[{"tools": []}]', "dialog 0: no 'conversations' key"),
        ('[{"tools": [], "conversations": [{"from": "user"}]}]', "no string 'value'"),
    ],
    ids=["bad-json", "missing-conversations", "missing-value"],
)
def test_bad_data_file_names_the_file_and_key(
    content: str, expected: str, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data" / "toolbench_alpha_umi"
    data.mkdir(parents=True)
    (data / "out_of_domain.json").write_text(content)
    argv = ["evaluate", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-alpha-umi: error: ") and expected in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_cli_backbone_mode_with_tiny_model(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    argv = _evaluate(tmp_path, "--mode", "backbone", "--model", f"hf:{tiny_model_dir}")
    assert main([*argv, "--planner-max-new-tokens", "4"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["mode"] == "backbone" and metrics["steps"] == 4
    assert metrics["dialogs_without_steps"] == 1
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "single-LLM backbone" in capsys.readouterr().out


def test_cli_bad_spec_fails_before_run_dir(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["evaluate", "--planner", "nonsense:x", "--out", str(out)]) == 2
    assert not out.exists()
    assert "error:" in capsys.readouterr().err


def test_rescoring_into_another_run_folder_is_refused(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(_responder) as server:
        base = ["evaluate", "--data-dir", str(FIXTURES), "--limit", "1"]
        base += ["--model", f"openai:m@{server.base_url}"]
        assert main([*base, "--out", str(tmp_path / "a")]) == 0
        assert main([*base, "--out", str(tmp_path / "b")]) == 0
    before = (tmp_path / "b" / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    assert "is another run folder" in capsys.readouterr().err
    assert (tmp_path / "b" / "metrics.json").read_text() == before
