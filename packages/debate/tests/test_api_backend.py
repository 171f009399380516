"""Debate through the real OpenAI client against a local OpenAI-compatible server."""

import json
from pathlib import Path

import pytest

from chorus_debate import pipeline
from chorus_debate.cli import main
from chorus_debate.recipes import load_recipe
from chorus_debate.tasks import load_arithmetic
from chorus_shared.models import load_chat_model
from chorus_shared.models.openai_api import DEFAULT_TIMEOUT_S
from chorus_shared.testing import FakeOpenAIServer


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI uses the backend's default backoff (seconds); tests only need the logic.
    def quick(spec: str, **options):
        if spec.startswith("openai:"):
            options.update(backoff_s=0.001, max_retries=2)
        return load_chat_model(spec, **options)

    monkeypatch.setattr(pipeline, "load_chat_model", quick)


def gsm_responder(body: dict) -> str:
    last = body["messages"][-1]["content"]
    if "updated answer" in last:
        return "After checking the others, the answer is \\boxed{18}."
    return "Step by step: 16 - 3 - 4 = 9 eggs, 9 * 2 = \\boxed{18}."


def test_debate_over_openai_api_batches_concurrently(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    with FakeOpenAIServer(gsm_responder, delay_s=0.05) as server:
        code = main(
            [
                "generate", "--task", "gsm", "--method", "debate", "--limit", "3",
                "--model", f"openai:fake@{server.base_url}", "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
        n_requests = len(server.requests)
        peak = server.max_in_flight
    assert code == 0
    assert n_requests == 3 * 3 * 2  # items x agents x rounds
    assert peak > 1
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(r["agents"][0]["model"].startswith("openai:fake@") for r in records)
    config_text = (tmp_path / "run" / "config.json").read_text()
    assert "sk-test-secret" not in config_text
    assert "sk-test-secret" not in (tmp_path / "run" / "records.jsonl").read_text()


def test_per_item_api_failures_are_recorded_not_done_and_retried(tmp_path: Path) -> None:
    # The first question's requests are refused with a 400; the others succeed.
    bad = load_arithmetic(4, 0)[0]["question"]
    refuse = [True]

    def responder(body: dict) -> str:
        if refuse[0] and bad in body["messages"][0]["content"]:
            raise ValueError("prompt rejected by the server")
        return "The final answer is 7"

    with FakeOpenAIServer(responder) as server:
        argv = [
            "generate", "--task", "arithmetic", "--method", "majority", "--limit", "4",
            "--model", f"openai:fake@{server.base_url}", "--out", str(tmp_path / "run"),
        ]  # fmt: skip
        code = main(argv)
        url = server.base_url
        assert code == 0
        metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
        lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
        records = [json.loads(x) for x in lines]
        failed = [r for r in records if r.get("error")]
        assert [r["id"] for r in failed] == ["arithmetic-0-0"]
        # The reason is stored, naming the server.
        assert "HTTP 400" in failed[0]["error"] and url in failed[0]["error"]
        assert metrics["errors"] == 1 and metrics["items"] == 3

        # The errored item is not done: the same command retries it, and only it.
        refuse[0] = False
        n_before = len(server.requests)
        assert main(argv) == 0
        assert len(server.requests) - n_before == 3  # one item x three agents
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["errors"] == 0 and metrics["items"] == 4


def test_a_server_that_refuses_everything_stops_the_run(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(always_fail_status=400) as server:
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "single", "--limit", "4",
                "--window", "2", "--model", f"openai:fake@{server.base_url}",
                "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
        url = server.base_url
        n_requests = len(server.requests)
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("chorus-debate: error:") == 1
    assert url in err and "HTTP 400" in err and "all 2 items of a window failed" in err
    assert n_requests == 2  # stopped after the first window
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert all(r["error"] for r in records) and len(records) == 2


def test_request_timeout_flag_reaches_the_client(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(delay_s=2.0) as server:
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "single", "--limit", "1",
                "--request-timeout", "0.2", "--model", f"openai:fake@{server.base_url}",
                "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
    assert code == 2
    assert "timed out after 0.2s" in capsys.readouterr().err


def test_api_that_keeps_failing_is_one_clear_error(tmp_path: Path, capsys) -> None:
    with FakeOpenAIServer(always_fail_status=503) as server:
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "single", "--limit", "2",
                "--model", f"openai:fake@{server.base_url}", "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
        url = server.base_url
    err = capsys.readouterr().err
    assert code == 2
    assert url in err
    assert err.count("chorus-debate: error:") == 1
    assert (
        not (tmp_path / "run" / "records.jsonl").exists()
        or not (tmp_path / "run" / "records.jsonl").read_text().strip()
    )


def test_rejected_key_names_the_variable(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
    with FakeOpenAIServer(required_key="sk-right") as server:
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "single", "--limit", "1",
                "--model", f"openai:fake@{server.base_url}", "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "OPENAI_API_KEY" in err
    assert "sk-wrong" not in err


def test_default_request_timeout_is_far_below_ten_minutes() -> None:
    # The openai client's own default is 10 minutes: a hung server would stall a window.
    recipe = load_recipe("gsm_default")
    assert 0 < recipe.request_timeout <= 120 and 0 < DEFAULT_TIMEOUT_S <= 120
