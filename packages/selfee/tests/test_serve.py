"""FastChat serving round trip: controller + SelFee worker + OpenAI API server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Not imported here: FastChat's serve modules redirect stdout into log files when imported.
pytest.importorskip("fastchat", reason="needs the serve extra")
openai = pytest.importorskip("openai")

from chorus_selfee.chain import NOT_NEEDED, build_prompt, parse_chain  # noqa: E402
from chorus_selfee.serve import MicroBatcher, selfee_conversation  # noqa: E402
from chorus_shared.testing import FakeOpenAIServer  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tmp_path: Path, model: str, k: int, name: str = "selfee-test") -> Iterator[str]:
    """Run ``chorus-selfee serve`` in a child process; yield the API base URL; stop it."""
    port, cport, wport = _free_port(), _free_port(), _free_port()
    log = tmp_path / "serve.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chorus_selfee.cli",
                "serve",
                "--model",
                model,
                "--model-name",
                name,
                "--serve-min-revisions",
                str(k),
                "--serve-max-revisions",
                str(max(k, 3)),
                "--infer-max-new-tokens",
                "64",
                "--batch-size",
                "4",
                "--port",
                str(port),
                "--controller-port",
                str(cport),
                "--worker-port",
                str(wport),
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine: model loading is slow
        while "ready at" not in log.read_text():
            assert proc.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.3)
        yield f"http://127.0.0.1:{port}/v1"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        for p in (port, cport, wport):  # all three servers are gone
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", p)) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_conversation_template_renders_the_training_prompt() -> None:
    conv = selfee_conversation()
    conv.append_message(conv.roles[0], "Name a colour.")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == build_prompt("Name a colour.")


def test_micro_batcher_merges_concurrent_requests() -> None:
    calls: list[tuple[list[str], list[int], float]] = []

    def run(prompts, budgets, temperature):
        calls.append((prompts, budgets, temperature))
        time.sleep(0.05)
        return [f"out:{p}" for p in prompts]

    b = MicroBatcher(run, max_batch=8, wait_s=0.2)
    futs = [b.submit(f"p{i}", 10 + i, 0.0 if i < 3 else 0.7) for i in range(5)]
    assert [f.result(timeout=10) for f in futs] == [f"out:p{i}" for i in range(5)]
    assert b.batches == [5]  # one batch, split by temperature into two calls
    assert sorted(c[2] for c in calls) == [0.0, 0.7]
    assert calls[0][1] == [10, 11, 12] or calls[1][1] == [10, 11, 12]


def test_serve_tiny_model_round_trip_through_openai_client(tmp_path, tiny_model_dir) -> None:
    with serving(tmp_path, f"hf:{tiny_model_dir}", k=1) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["selfee-test", "selfee-test-chain"]
        msgs = [{"role": "user", "content": "Name a colour."}]
        r = client.chat.completions.create(
            model="selfee-test", messages=msgs, max_tokens=8, temperature=0
        )
        text = r.choices[0].message.content
        assert isinstance(text, str) and 1 <= r.usage.completion_tokens <= 8
        assert "### Feedback" not in text  # the final answer, not the chain
        assert r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens > len(build_prompt("Name a colour.").split())
        # Streaming gets the same (greedy) chain, in one chunk once it is finished.
        chunks = client.chat.completions.create(
            model="selfee-test", messages=msgs, max_tokens=8, temperature=0, stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert streamed == text.replace("\ufffd", "")  # FastChat drops partial UTF-8 marks


def _scripted_chain(body: dict) -> str:
    # The worker's model is this fake completions endpoint: it continues the raw SelFee prompt
    # and always says no revision is needed, so only revision-enforce makes revisions.
    prefix = body["prompt"]
    n = prefix.count("### Revision ")
    head = "Blue." if n == 0 and prefix.endswith("### Answer:\n") else ""
    if prefix.endswith("needed"):  # forced: it writes the next revision itself
        head = f".\n\n### Revision {n + 1}:\nBlue, revised {n + 1}."
        n += 1
    return f"{head}\n\n### Feedback {n + 1}:\nScore: {5 + n}/10. {NOT_NEEDED}."


def test_serve_enforces_k_revisions_and_checks_api_keys(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "fake-backend-key")
    monkeypatch.setenv("CHORUS_SELFEE_API_KEYS", "sk-serve-test")
    with FakeOpenAIServer(_scripted_chain) as backend:
        spec = f"openai:fake-model@{backend.base_url}"
        with serving(tmp_path, spec, k=2, name="selfee-k2") as base_url:
            bad = openai.OpenAI(base_url=base_url, api_key="wrong", max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                bad.chat.completions.create(
                    model="selfee-k2", messages=[{"role": "user", "content": "x"}]
                )
            client = openai.OpenAI(base_url=base_url, api_key="sk-serve-test", max_retries=0)
            msgs = [{"role": "user", "content": "Name a colour."}]
            r = client.chat.completions.create(
                model="selfee-k2", messages=msgs, max_tokens=60, temperature=0
            )
            whole = client.chat.completions.create(
                model="selfee-k2-chain", messages=msgs, max_tokens=60, temperature=0
            )
        first = backend.requests[0]["prompt"]
    assert first == build_prompt("Name a colour.")  # the conversation template, raw prompt
    assert r.choices[0].message.content == "Blue, revised 2."  # the final answer
    chain = parse_chain(whole.choices[0].message.content)  # the whole chain on request
    assert chain.revisions == ["Blue, revised 1.", "Blue, revised 2."]  # exactly K = 2
    assert len(chain.feedbacks) == 3 and chain.stopped
