"""Smoke test on the real embedded SmolLM2-135M-Instruct (offline): a tiny GSM8K debate."""

from __future__ import annotations

import json

import pytest

from chorus_debate.cli import main
from chorus_debate.tasks import load_gsm


@pytest.mark.smoke
def test_gsm_debate_on_the_embedded_model(tmp_path, capsys) -> None:
    out = tmp_path / "gsm"
    argv = ["generate", "--task", "gsm", "--model", "default", "--limit", "2", "--agents", "2"]
    argv += ["--rounds", "2", "--max-new-tokens", "24", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err

    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [i["id"] for i in load_gsm(2, 0)]
    for rec in records:
        assert len(rec["agents"]) == 2
        for agent in rec["agents"]:
            assert agent["model"] == "default"
            replies = [m["content"] for m in agent["messages"] if m["role"] == "assistant"]
            assert len(replies) == 2
            assert any(r.strip() for r in replies)  # a real model writes something
        assert len(rec["finish_reasons"]) == 2
        assert rec["errors"] == 0
        assert rec["usage"]["completion_tokens"] > 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"] == ["default"]
    assert metrics["items"] == 2
    assert len(metrics["accuracy_by_round"]) == 2
    assert all(0.0 <= s["mean"] <= 1.0 for s in metrics["accuracy_by_round"])
    assert (out / "report.md").is_file()
