"""`chorus-debate generate --model vllm:default` on the real vLLM engine (``make test-vllm``)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip(
    "vllm",
    reason="vLLM is not installed in this environment: run `make setup-vllm`, then "
    "`make test-vllm`",
)

from chorus_debate.cli import main  # noqa: E402

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


def test_gsm_default_recipe_runs_on_vllm_offline(tmp_path, capsys) -> None:
    out = tmp_path / "gsm-vllm"
    argv = ["generate", "--recipe", "gsm_default", "--model", "vllm:default", "--limit", "2"]
    argv += ["--max-new-tokens", "48", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err

    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 2 and len({r["id"] for r in records}) == 2
    for rec in records:
        assert rec["errors"] == 0
        assert len(rec["agents"]) == 3
        for agent in rec["agents"]:
            assert agent["model"] == "vllm:default"
            replies = [m["content"] for m in agent["messages"] if m["role"] == "assistant"]
            assert len(replies) == 2 and any(r.strip() for r in replies)
        assert 0 < rec["usage"]["completion_tokens"] <= 3 * 2 * 48
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"] == ["vllm:default"] and metrics["items"] == 2
