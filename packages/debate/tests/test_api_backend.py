"""Debate through the real OpenAI client against a local OpenAI-compatible server."""

import json
from pathlib import Path

import pytest

from chorus_debate import pipeline
from chorus_debate.cli import main
from chorus_debate.tasks import load_arithmetic
from chorus_shared.models import load_chat_model
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


def test_per_item_api_failures_are_recorded_counted_and_wrong(tmp_path: Path) -> None:
    # The first question's requests are refused with a 400; the others succeed.
    bad = load_arithmetic(4, 0)[0]["question"]

    def responder(body: dict) -> str:
        if bad in body["messages"][0]["content"]:
            raise ValueError("prompt rejected by the server")
        return "The final answer is 7"

    with FakeOpenAIServer(responder) as server:
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "majority", "--limit", "4",
                "--model", f"openai:fake@{server.base_url}", "--out", str(tmp_path / "run"),
            ]
        )  # fmt: skip
    assert code == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    records = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    failed = [r for r in records if r["errors"]]
    assert [r["id"] for r in failed] == ["arithmetic-0-0"]
    assert failed[0]["errors"] == 3  # all three agents of that question
    assert failed[0]["unparseable"] == [3]
    assert failed[0]["correct"] is False
    assert metrics["errors"] == 3
    assert metrics["unparseable"] >= 3


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
