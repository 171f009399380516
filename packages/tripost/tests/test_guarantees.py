"""Issue 20 for tripost: the shared run engine, errored items, the validated reader, bad input
and secrets. Each test names the case it covers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_shared.runs import RunDir
from chorus_shared.testing import FakeOpenAIServer
from chorus_tripost import tasks
from chorus_tripost.cli import main

SRC = Path(__file__).resolve().parents[1] / "src" / "chorus_tripost"


def _fewshot_argv(spec: str, out: Path, *extra: str) -> list[str]:
    return [
        "evaluate", "--recipe", "arithmetic_default", "--eval-method", "fewshot",
        "--model", spec, "--eval-limit", "1", "--eval-max-new-tokens", "1024",
        "--fewshot-k", "1", "--out", str(out), *extra,
    ]  # fmt: skip


def _gold_responder(body: dict) -> str:
    # Answers every test question with its ground-truth rationale.
    question = body["messages"][-1]["content"].split("\nAnswer:", 1)[0]
    for it in tasks.load_items("multistep_arithmetic", "test"):
        if question.strip().endswith(it["question"].strip().removeprefix("Q:").strip()):
            return it["rationale"]
    return "(1) no idea.\n(Final response) So the answer is 0."


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")


def test_evaluate_goes_through_the_engine_and_reads_k_of_n(tmp_path, capsys, api_key):
    out = tmp_path / "ev"
    with FakeOpenAIServer(_gold_responder) as server:
        spec = f"openai:fake-model@{server.base_url}"
        assert main(_fewshot_argv(spec, out)) == 0
        first = capsys.readouterr()
        assert main(_fewshot_argv(spec, out)) == 0  # resume: nothing generated again
        again = capsys.readouterr()
        n_requests = len(server.requests)
    assert "2 of 2 items" in first.out and "seen 100.0 ± 0.0 %" in first.out
    assert "2 of 2 items already done" in again.err and n_requests == 2
    config = json.loads((out / "config.json").read_text())
    assert len(config["item_ids"]) == 2 and config["data"]["items"].startswith("sha256:")
    # A duplicated line and another run's line: counted and skipped, accuracy unchanged.
    lines = (out / "records.jsonl").read_text().splitlines()
    foreign = json.loads(lines[0]) | {"id": "not-an-item-of-this-run"}
    with (out / "records.jsonl").open("a") as f:
        f.write(lines[0] + "\n" + json.dumps(foreign) + "\n")
    assert main(["report", str(out)]) == 0
    shown = capsys.readouterr()
    assert "100.0 ± 0.0" in shown.out and "2 of 2 items" in shown.out
    assert "duplicate id" in shown.err and "not-an-item-of-this-run" in shown.err


def test_an_errored_reply_is_an_errored_item_never_graded(tmp_path, capsys, api_key):
    seen_items = []

    def fail_one(body: dict) -> str:
        seen_items.append(body)
        if len(seen_items) == 1:
            raise ValueError("refused")  # HTTP 400 for the first request
        return _gold_responder(body)

    out = tmp_path / "ev"
    with FakeOpenAIServer(fail_one) as server:
        spec = f"openai:fake-model@{server.base_url}"
        assert main(_fewshot_argv(spec, out)) == 0  # one window of 2, one reply failed
        shown = capsys.readouterr()
        assert "1 of 2 items" in shown.out and "errored items 1" in shown.out
        assert "only 1 of 2 items are finished" in shown.err
        records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
        assert [("error" in r) for r in records].count(True) == 1
        # The resume retries the errored item only.
        assert main(_fewshot_argv(spec, out)) == 0
        assert "2 of 2 items" in capsys.readouterr().out


def test_a_run_of_nothing_but_errors_exits_non_zero(tmp_path, capsys, api_key):
    out = tmp_path / "ev"
    with FakeOpenAIServer(always_fail_status=400) as server:
        assert main(_fewshot_argv(f"openai:fake-model@{server.base_url}", out)) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("chorus-tripost: error: ") and "all 2 items of a window" in last
    assert "Traceback" not in err and not (out / "metrics.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["make-data", "--task", "multistep_arithmetic", "--split", "generated", "--n", "-5"],
        ["make-data", "--task", "multistep_arithmetic", "--split", "generated", "--depth", "2000"],
        ["make-data", "--task", "multistep_arithmetic", "--limit", "-1"],
        ["evaluate", "--recipe", "arithmetic_default", "--eval-limit", "-1"],
        ["check-helper", "--recipe", "logical_default", "--n", "-5"],
        ["train", "--recipe", "arithmetic_default", "--num-iterations", "-1"],
    ],
    ids=["n", "depth", "limit", "eval-limit", "check-n", "iterations"],
)
def test_bad_values_are_one_line_and_leave_no_folder(argv, tmp_path, capsys):
    out = tmp_path / "runs" / "x"
    takes_out = argv[0] != "make-data"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-tripost: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() or (not takes_out and not out.exists())


def test_report_on_a_folder_that_is_not_a_tripost_evaluation(tmp_path, capsys):
    with RunDir.create(tmp_path / "other", {"recipe": {"task": "gsm"}, "item_ids": ["1"]}):
        pass
    assert main(["report", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-tripost: error: ") and "not a chorus-tripost evaluation" in err


def test_evaluate_never_prints_or_stores_a_password(tmp_path, capsys, api_key):
    out = tmp_path / "ev"
    with FakeOpenAIServer(_gold_responder) as server:
        url = server.base_url.replace("http://", "http://alice:s3cret-pw@")
        assert main(_fewshot_argv(f"openai:fake-model@{url}", out)) == 0
    shown = capsys.readouterr()
    assert "s3cret-pw" not in shown.out + shown.err
    for file in out.rglob("*"):
        if file.is_file():
            assert "s3cret-pw" not in file.read_text(errors="replace"), file


def test_no_home_made_ray_or_wandb():
    """Ray fan-out goes through the engine's RayOptions, wandb through the training core."""
    for path in SRC.glob("*.py"):
        text = path.read_text()
        assert "ray.remote" not in text and "wandb.init" not in text, path


def test_ray_flag_reaches_the_engine(tmp_path, monkeypatch, api_key):
    from chorus_shared.engine import RayOptions
    from chorus_tripost import pipeline

    seen = {}

    def fake_run_windows(run, items, build_worker, *, window, desc, ray):
        seen["ray"] = ray
        raise RuntimeError("stop here")

    monkeypatch.setattr(pipeline, "run_windows", fake_run_windows)
    argv = _fewshot_argv("openai:fake-model@http://127.0.0.1:9/v1", tmp_path / "ev")
    assert main([*argv, "--ray", "--ray-workers", "2", "--ray-gpus-per-worker", "1"]) == 2
    assert seen["ray"] == RayOptions(None, 2, 1.0)
