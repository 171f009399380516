"""OpenAIChatModel against the in-package FakeOpenAIServer (127.0.0.1 only)."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest

from chorus_shared.models import SamplingParams, load_chat_model
from chorus_shared.models.openai_api import (
    BackendAuthError,
    BackendUnavailableError,
    OpenAIChatModel,
)
from chorus_shared.testing import FakeOpenAIServer

SECRET = "sk-chorus-test-secret-0123456789"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def fast_model(server: FakeOpenAIServer, **kwargs) -> OpenAIChatModel:
    kwargs.setdefault("backoff_s", 0.001)
    kwargs.setdefault("timeout_s", 10.0)
    return OpenAIChatModel("fake-model", base_url=server.base_url, **kwargs)


def test_batch_comes_back_in_input_order_with_usage() -> None:
    prompts = [f"question number {i}" for i in range(12)]
    # Later items answer faster, so completion order differs from input order.
    with FakeOpenAIServer(delay_s=0.01) as server:
        out = fast_model(server).chat([user(p) for p in prompts], SamplingParams())
    assert [c.text for c in out] == [f"echo: {p}" for p in prompts]
    assert all(c.finish_reason == "stop" and c.error is None for c in out)
    assert out[0].prompt_tokens == 3
    assert out[0].completion_tokens == 4


def test_sampling_params_are_mapped_onto_the_request() -> None:
    params = SamplingParams(max_new_tokens=3, temperature=0.7, top_p=0.9, stop=["END"], seed=11)
    with FakeOpenAIServer(lambda body: "one two three four five") as server:
        out = fast_model(server).chat([user("hi")], params)
        body = server.requests[0]
    assert body["model"] == "fake-model"
    assert body["max_tokens"] == 3
    assert body["temperature"] == 0.7
    assert body["top_p"] == 0.9
    assert body["stop"] == ["END"]
    assert body["seed"] == 11
    assert body["messages"] == user("hi")
    assert out[0].text == "one two three"
    assert out[0].finish_reason == "length"


def test_repetition_penalty_is_sent_only_when_set() -> None:
    with FakeOpenAIServer() as server:
        model = fast_model(server)
        model.chat([user("a")], SamplingParams())
        model.chat([user("b")], SamplingParams(repetition_penalty=1.3))
        plain, penalised = server.requests
    assert "repetition_penalty" not in plain
    assert penalised["repetition_penalty"] == 1.3


def test_min_p_is_sent_only_when_set_beside_the_penalty() -> None:
    with FakeOpenAIServer() as server:
        model = fast_model(server)
        model.chat([user("a")], SamplingParams())
        model.chat([user("b")], SamplingParams(min_p=0.1, repetition_penalty=1.2))
        plain, both = server.requests
    assert "min_p" not in plain
    # Both extension fields travel in one extra_body, neither overwriting the other.
    assert (both["min_p"], both["repetition_penalty"]) == (0.1, 1.2)


def test_seed_is_offset_per_request_so_identical_prompts_differ() -> None:
    with FakeOpenAIServer() as server:
        fast_model(server).chat([user("same")] * 3, SamplingParams(seed=5, temperature=1.0))
        seeds = sorted(body["seed"] for body in server.requests)
    assert seeds == [5, 6, 7]


def test_defaults_leave_out_stop_and_seed_and_stop_strings_cut() -> None:
    with FakeOpenAIServer(lambda body: "answer 42 END trailing") as server:
        model = fast_model(server)
        model.chat([user("a")], SamplingParams())
        out = model.chat([user("b")], SamplingParams(stop=("END",)))
        first = server.requests[0]
    assert "stop" not in first and "seed" not in first
    assert out[0].text.strip() == "answer 42"
    assert out[0].finish_reason == "stop"


def test_more_than_four_stop_strings_is_an_error() -> None:
    with FakeOpenAIServer() as server:
        model = fast_model(server)
        with pytest.raises(ValueError, match="at most 4 stop"):
            model.chat([user("x")], SamplingParams(stop=("a", "b", "c", "d", "e")))
        assert server.requests == []


def test_requests_run_concurrently() -> None:
    with FakeOpenAIServer(delay_s=0.2) as server:
        model = fast_model(server, max_concurrency=4)
        start = time.perf_counter()
        out = model.chat([user(str(i)) for i in range(8)], SamplingParams())
        elapsed = time.perf_counter() - start
        assert server.max_in_flight == 4
    assert len(out) == 8
    assert elapsed < 8 * 0.2 * 0.75


def test_retries_recover_from_transient_500s() -> None:
    with FakeOpenAIServer(fail_first=2) as server:
        out = fast_model(server, max_retries=4).chat([user("ping")], SamplingParams())
        assert len(server.requests) == 3
    assert out[0].text == "echo: ping"
    assert out[0].error is None


def test_an_api_that_keeps_failing_raises_one_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer(always_fail_status=500) as server:
        model = fast_model(server, max_retries=2)
        with pytest.raises(BackendUnavailableError) as info:
            model.chat([user("a"), user("b")], SamplingParams())
        assert len(server.requests) == 2 * 3
        url = server.base_url
    message = str(info.value)
    assert url in message
    assert "500" in message
    assert "3 attempt" in message
    assert "OPENAI_BASE_URL" in message
    assert SECRET not in message


def test_unreachable_server_raises_backend_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    model = OpenAIChatModel("m", base_url=url, max_retries=1, backoff_s=0.001, timeout_s=5)
    with pytest.raises(BackendUnavailableError, match="connection error") as info:
        model.chat([user("a")], SamplingParams())
    assert url in str(info.value)


def test_one_bad_item_becomes_an_error_completion() -> None:
    def responder(body: dict) -> str:
        content = body["messages"][-1]["content"]
        if content == "poison":
            raise ValueError("context length exceeded")
        return f"ok {content}"

    with FakeOpenAIServer(responder) as server:
        out = fast_model(server).chat([user("a"), user("poison"), user("c")], SamplingParams())
        # A 400 is not retried.
        assert sum(r["messages"][-1]["content"] == "poison" for r in server.requests) == 1
    assert [c.text for c in out] == ["ok a", "", "ok c"]
    bad = out[1]
    assert bad.finish_reason == "error"
    assert "400" in bad.error and "context length exceeded" in bad.error


def test_every_item_failing_on_a_client_error_is_not_an_outage() -> None:
    def responder(body: dict) -> str:
        raise ValueError("prompt too long")

    with FakeOpenAIServer(responder) as server:
        out = fast_model(server).chat([user("a"), user("b")], SamplingParams())
    assert all(c.finish_reason == "error" for c in out)


def test_rejected_key_raises_naming_the_env_var(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer(required_key="the-right-key") as server:
        model = fast_model(server, max_concurrency=2)
        with pytest.raises(BackendAuthError) as info:
            model.chat([user(str(i)) for i in range(20)], SamplingParams())
        # Auth failures are not retried and stop the batch early.
        assert len(server.requests) < 20
    message = str(info.value)
    assert "401" in message
    assert "OPENAI_API_KEY" in message
    assert SECRET not in message


def test_missing_key_for_a_server_that_wants_one(monkeypatch) -> None:
    with (
        FakeOpenAIServer(required_key=SECRET) as server,
        pytest.raises(BackendAuthError, match="OPENAI_API_KEY is not set"),
    ):
        fast_model(server).chat([user("a")], SamplingParams())


def test_key_is_read_from_env_and_sent_as_bearer(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer(required_key=SECRET) as server:
        model = fast_model(server)
        assert model.chat([user("a")], SamplingParams())[0].text == "echo: a"
    assert SECRET not in repr(model)
    assert SECRET not in model.spec
    assert SECRET not in str(vars(model).get("spec"))


def test_custom_key_env_var(monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVER_KEY", SECRET)
    with FakeOpenAIServer(required_key=SECRET) as server:
        model = fast_model(server, api_key_env="MY_SERVER_KEY")
        assert model.chat([user("a")], SamplingParams())[0].text == "echo: a"


def test_public_api_without_key_fails_at_construction() -> None:
    with pytest.raises(BackendAuthError, match="export OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o-mini")


def test_base_url_falls_back_to_env(monkeypatch) -> None:
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        model = OpenAIChatModel("fake-model", backoff_s=0.001)
        assert model.base_url == server.base_url
        assert model.chat([user("z")], SamplingParams())[0].text == "echo: z"


def test_load_chat_model_spec_with_base_url(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with FakeOpenAIServer() as server:
        model = load_chat_model(f"openai:fake-model@{server.base_url}", backoff_s=0.001)
        assert isinstance(model, OpenAIChatModel)
        assert model.spec == f"openai:fake-model@{server.base_url}"
        assert model.chat([user("hello")], SamplingParams())[0].text == "echo: hello"
        assert server.requests[0]["model"] == "fake-model"
    assert SECRET not in repr(model) and SECRET not in model.spec


def test_spec_without_base_url_and_empty_batch(monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    model = OpenAIChatModel("gpt-4o-mini")
    assert model.spec == "openai:gpt-4o-mini"
    assert model.chat([], SamplingParams()) == []


def test_malformed_conversation_is_rejected_before_sending() -> None:
    with FakeOpenAIServer() as server:
        with pytest.raises(ValueError, match="role"):
            fast_model(server).chat([[{"role": "robot", "content": "x"}]], SamplingParams())
        assert server.requests == []


def test_fake_server_lists_models() -> None:
    with (
        FakeOpenAIServer(model_ids=["a", "b"]) as server,
        urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as resp,
    ):
        listing = json.load(resp)
    assert [m["id"] for m in listing["data"]] == ["a", "b"]


# -- issue 5: malformed bodies, server-named reasons, credentials in URLs ---------------------


class _MalformedThenGood:
    """A server that answers 200 with a broken JSON body to the first ``bad`` requests."""

    def __init__(self, bad: int) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self
        self.bad, self.seen = bad, 0
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    owner.seen += 1
                    broken = owner.seen <= owner.bad
                body = (
                    b"{not json"
                    if broken
                    else json.dumps(
                        {
                            "id": "x",
                            "object": "chat.completion",
                            "created": 0,
                            "model": "m",
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": "fine"},
                                    "finish_reason": "stop",
                                }
                            ],
                        }
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_malformed_200_body_is_retried_then_succeeds() -> None:
    server = _MalformedThenGood(bad=1)
    try:
        model = OpenAIChatModel("m", base_url=server.base_url, backoff_s=0.001, timeout_s=5)
        out = model.chat([user("a")], SamplingParams())
    finally:
        server.close()
    assert out[0].text == "fine" and out[0].error is None
    assert server.seen == 2


def test_malformed_200_body_everywhere_names_the_server() -> None:
    server = _MalformedThenGood(bad=10**6)
    try:
        model = OpenAIChatModel(
            "m", base_url=server.base_url, max_retries=1, backoff_s=0.001, timeout_s=5
        )
        with pytest.raises(BackendUnavailableError) as info:
            model.chat([user("a")], SamplingParams())
    finally:
        server.close()
    message = str(info.value)
    assert server.base_url in message and "malformed response body" in message


def test_a_400_error_completion_names_the_server() -> None:
    with FakeOpenAIServer(always_fail_status=400) as server:
        out = fast_model(server).chat([user("a")], SamplingParams())
        url = server.base_url
    assert out[0].finish_reason == "error"
    assert "HTTP 400" in out[0].error and url in out[0].error


def test_credentials_in_the_base_url_never_reach_spec_errors_or_reasons() -> None:
    password = "hunter2-very-secret"
    with FakeOpenAIServer(always_fail_status=400) as server:
        url = server.base_url.replace("http://", f"http://bob:{password}@")
        model = load_chat_model(f"openai:fake-model@{url}", backoff_s=0.001, timeout_s=5)
        out = model.chat([user("a")], SamplingParams())
    for text in (model.spec, repr(model), out[0].error):
        assert password not in text and "bob" not in text
    from chorus_shared.models import ModelSpecError, parse_spec

    with pytest.raises(ModelSpecError) as info:
        parse_spec(f"nope:m@{url}")
    assert password not in str(info.value)
