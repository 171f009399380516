"""A small OpenAI-compatible HTTP server on 127.0.0.1 for tests.

It speaks just enough of ``POST /v1/chat/completions``, ``POST /v1/completions`` (raw-prompt
continuation; the responder sees the body with its ``prompt``) and ``GET /v1/models`` for the
real ``openai`` client, and can be told to fail, demand a key, or answer slowly so that retries,
error handling and concurrency can be tested without a network or a model::

    with FakeOpenAIServer(fail_first=2) as server:
        model = OpenAIChatModel("fake-model", base_url=server.base_url, backoff_s=0.001)
        ...
        assert server.requests[0]["max_tokens"] == 16

Token counts are whitespace word counts, which keeps ``max_tokens`` behaviour predictable.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "echo_responder"]

Responder = Callable[[dict], str]


def echo_responder(request: dict) -> str:
    """Return ``"echo: <content of the last user message>"`` for a chat request body."""
    for message in reversed(request.get("messages") or []):
        if message.get("role") == "user":
            return f"echo: {message.get('content', '')}"
    return "echo:"


class FakeOpenAIServer:
    """An OpenAI-compatible server in a background thread, used as a context manager.

    ``responder`` maps the request JSON to the reply text; if it raises, that request gets
    HTTP 400 with the exception text. ``fail_first`` answers the first N chat requests with
    HTTP 500; ``always_fail_status`` answers every chat request with that status;
    ``required_key`` answers 401 unless ``Authorization: Bearer <required_key>`` is sent;
    ``delay_s`` holds each chat request that long so concurrent requests overlap.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        fail_first: int = 0,
        always_fail_status: int | None = None,
        required_key: str | None = None,
        delay_s: float = 0.0,
        model_ids: Sequence[str] = ("fake-model",),
    ) -> None:
        self.responder: Responder = responder or echo_responder
        self.fail_first = fail_first
        self.always_fail_status = always_fail_status
        self.required_key = required_key
        self.delay_s = delay_s
        self.model_ids = tuple(model_ids)

        self._lock = threading.Lock()
        self._requests: list[dict] = []
        self._chat_count = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("FakeOpenAIServer is already running")
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; returns None. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests look at ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """Return the URL to give the OpenAI client, ``http://127.0.0.1:<port>/v1``."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def requests(self) -> list[dict]:
        """Return a copy of every chat request body received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def max_in_flight(self) -> int:
        """Return the largest number of chat requests that were being handled at once."""
        with self._lock:
            return self._max_in_flight

    # -- request handling (called from handler threads) ----------------------------------

    def _handle_chat(self, body: dict, authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self._requests.append(body)
            self._chat_count += 1
            number = self._chat_count
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            return self._answer(body, authorization, number)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, body: dict, authorization: str | None, number: int) -> tuple[int, dict]:
        if self.required_key is not None and authorization != f"Bearer {self.required_key}":
            # Like the real API, the message quotes the key: clients must not echo it further.
            sent = (authorization or "").removeprefix("Bearer ")
            return 401, _error(f"Incorrect API key provided: {sent}", "invalid_api_key")
        if self.always_fail_status is not None:
            return self.always_fail_status, _error("configured to fail", "server_error")
        if number <= self.fail_first:
            return 500, _error(f"failing request {number} of {self.fail_first}", "server_error")
        try:
            reply = self.responder(body)
        except Exception as exc:
            return 400, _error(f"{type(exc).__name__}: {exc}", "invalid_request_error")
        text, finish_reason = _apply_limits(str(reply), body)
        prompt_words = sum(
            len(str(m.get("content", "")).split()) for m in body.get("messages") or []
        ) + len(str(body.get("prompt") or "").split())
        completion_words = len(text.split())
        usage = {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        }
        if "prompt" in body and "messages" not in body:  # POST /v1/completions
            return 200, {
                "id": f"cmpl-fake-{number}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}
                ],
                "usage": usage,
            }
        return 200, {
            "id": f"chatcmpl-fake-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_words,
                "completion_tokens": completion_words,
                "total_tokens": prompt_words + completion_words,
            },
        }

    def _models(self) -> dict:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "chorus"}
                for m in self.model_ids
            ],
        }


def _apply_limits(text: str, body: dict) -> tuple[str, str]:
    """Cut ``text`` at the earliest stop string, then at ``max_tokens`` words."""
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
    words = text.split()
    if isinstance(max_tokens, int) and len(words) > max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return text, "stop"


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "ChorusFakeOpenAI/1.0"

    @property
    def fake(self) -> FakeOpenAIServer:
        return self.server.fake  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, self.fake._models())
        else:
            self._send(404, _error(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        route = self.path.rstrip("/")
        if route not in ("/v1/chat/completions", "/v1/completions"):
            self._send(404, _error(f"no route POST {self.path}", "not_found"))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, _error(f"request body is not JSON: {exc}", "invalid_request_error"))
            return
        if not isinstance(body, dict):
            self._send(400, _error("request body must be a JSON object", "invalid_request_error"))
            return
        if route == "/v1/completions":
            # A completion request is told apart by its "prompt" (and has no "messages").
            body.pop("messages", None)
            body.setdefault("prompt", "")
        status, payload = self.fake._handle_chat(body, self.headers.get("Authorization"))
        self._send(status, payload)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines on stderr would drown pytest output.
        return
