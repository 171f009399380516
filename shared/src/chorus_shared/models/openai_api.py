"""Chat through any OpenAI-compatible server: OpenAI, ``vllm serve``, TGI, llama.cpp server.

Requests of one ``chat`` call go out concurrently and come back in input order. Retries are
ours, not the SDK's, so that every attempt is counted and the backoff is bounded: transient
failures (connection errors, timeouts, 408/409/429, 5xx) are retried with exponential backoff
and jitter; other 4xx answers fail only their own item. The API key is read from the
environment and never appears in ``spec``, ``repr`` or any error message.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import openai

from chorus_shared.models.base import Completion, Message, SamplingParams, validate_conversations
from chorus_shared.redact import redact_urls

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "BackendAuthError",
    "BackendUnavailableError",
    "OpenAIChatModel",
]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# OpenAI rejects more stop sequences than this; compatible servers follow the same limit.
MAX_STOP_SEQUENCES = 4
# Local servers ignore the key, but the SDK insists on a non-empty one.
PLACEHOLDER_KEY = "EMPTY"
# Per request; far below the SDK's 10 minutes so a hung server fails an item, not the evening.
DEFAULT_TIMEOUT_S = 120.0
_MAX_BACKOFF_S = 60.0
_MAX_REASON_CHARS = 300


class BackendUnavailableError(RuntimeError):
    """The backend cannot serve any request: server down, wrong URL or model, bad key."""


class BackendAuthError(BackendUnavailableError):
    """The server rejected the API key (HTTP 401/403), or no key is set for the public API."""


FailureKind = Literal["transient", "not_found", "client"]


@dataclass
class _ItemResult:
    completion: Completion
    failure: FailureKind | None = None
    attempts: int = 1


class _AuthFailure(Exception):
    """Raised inside a worker to abort the whole call on 401/403."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class OpenAIChatModel:
    """A ``ChatModel`` backed by an OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not model:
            raise ValueError("model name must be non-empty, e.g. OpenAIChatModel('gpt-4o-mini')")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be >= 0, got {backoff_s}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")

        self.model = model
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s

        self._display_url = _strip_userinfo(self.base_url)
        # Spelling out a non-default URL lets load_chat_model(model.spec) reach the same server.
        on_default = self.base_url == OPENAI_DEFAULT_BASE_URL
        self.spec = f"openai:{model}" if on_default else f"openai:{model}@{self._display_url}"

        key = os.environ.get(api_key_env, "").strip()
        self._key_was_set = bool(key)
        if not key:
            if _is_public_openai(self.base_url):
                raise BackendAuthError(
                    f"No API key for the OpenAI API at {self._display_url}: "
                    f"${api_key_env} is not set. Run `export {api_key_env}=<your key>`, "
                    "or point the model at a local server with OPENAI_BASE_URL or "
                    "'openai:<model>@http://127.0.0.1:8000/v1'."
                )
            key = PLACEHOLDER_KEY
        self._secret = key
        # SDK retries off: ours are counted, bounded and reported in one error message.
        self._client = openai.OpenAI(
            api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s
        )

    def __repr__(self) -> str:
        return f"OpenAIChatModel(spec={self.spec!r}, max_concurrency={self.max_concurrency})"

    def close(self) -> None:
        """Close the HTTP connection pool; returns None."""
        self._client.close()

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in input order.

        An item that still fails after retries (or gets a non-retryable 4xx) comes back as a
        ``Completion`` with ``finish_reason="error"``. Raises ``BackendAuthError`` on 401/403
        and ``BackendUnavailableError`` when every item failed because the server is
        unreachable, erroring, rate limiting or does not know the model.
        """
        validate_conversations(conversations)
        return self._run(list(conversations), params)

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Return one continuation per raw prompt (the server's ``/v1/completions``), in order.

        For plain (non-chat) models such as SelFee's: the prompt is sent as written, with no
        chat template around it. Errors behave as in :meth:`chat`.
        """
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        return self._run(list(prompts), params)

    def _run(self, inputs: list[Any], params: SamplingParams) -> list[Completion]:
        # One request per input (a conversation for chat, a string for completions), spread
        # over the worker pool; the reply order is the input order.
        request_kwargs = self._request_kwargs(params)
        if not inputs:
            return []

        stop = threading.Event()
        pool = ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, len(inputs)),
            thread_name_prefix="chorus-openai",
        )
        try:
            futures = [
                pool.submit(self._request_one, item, _seeded(request_kwargs, k), stop)
                for k, item in enumerate(inputs)
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for fut in done:
                if fut.exception() is not None:
                    fut.result()
            results = [fut.result() for fut in futures]
        except _AuthFailure as exc:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise BackendAuthError(self._auth_message(exc.status, exc.reason)) from None
        except BaseException:
            # Ctrl-C or a bug: do not wait for queued requests or sleeping retries.
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

        self._raise_if_unavailable(results)
        return [r.completion for r in results]

    def _request_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.stop:
            if len(params.stop) > MAX_STOP_SEQUENCES:
                raise ValueError(
                    f"OpenAI-compatible servers accept at most {MAX_STOP_SEQUENCES} stop "
                    f"sequences, got {len(params.stop)}: {list(params.stop)!r}"
                )
            kwargs["stop"] = list(params.stop)
        if params.seed is not None:
            kwargs["seed"] = params.seed
        # Not OpenAI fields: vLLM's (and other open servers') extensions, sent only when set.
        extra: dict[str, float] = {}
        if params.repetition_penalty != 1.0:
            extra["repetition_penalty"] = params.repetition_penalty
        if params.min_p != 0.0:
            extra["min_p"] = params.min_p
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _request_one(
        self, item: list[Message] | str, kwargs: dict[str, Any], stop: threading.Event
    ) -> _ItemResult:
        attempts = 0
        failure: FailureKind = "transient"
        reason = "not attempted"
        for attempt in range(self.max_retries + 1):
            if stop.is_set():
                break
            attempts += 1
            try:
                if isinstance(item, str):
                    response: Any = self._client.completions.create(prompt=item, **kwargs)
                else:
                    # Message has the shape of the client's message params; roles were
                    # checked by validate_conversations before any request.
                    messages = cast("list[ChatCompletionMessageParam]", item)
                    response = self._client.chat.completions.create(messages=messages, **kwargs)
            except openai.APIError as exc:
                try:
                    failure, reason, retry_after = self._classify(exc)
                except _AuthFailure:
                    # Tell sibling workers at once so queued items send nothing more.
                    stop.set()
                    raise
            except (ValueError, TypeError, AttributeError) as exc:
                # A 200 whose body is not the JSON the SDK expects (JSONDecodeError is a
                # ValueError): a proxy's HTML page or a truncated body, often transient.
                failure, retry_after = "transient", None
                reason = self._short(f"malformed response body ({type(exc).__name__}: {exc})")
            else:
                completion = _to_completion(response)
                if completion.error is None:
                    return _ItemResult(completion, None, attempts)
                failure, reason, retry_after = "transient", completion.error, None
            if failure != "transient" or attempt == self.max_retries:
                break
            stop.wait(self._backoff(attempt, retry_after))
        # The server is part of the reason, so a record or a stopped run names it.
        error = f"{reason} (server {self._display_url}, model {self.model})"
        return _ItemResult(
            Completion(text="", finish_reason="error", error=error), failure, attempts
        )

    def _classify(self, exc: openai.APIError) -> tuple[FailureKind, str, float | None]:
        """Sort an SDK error into transient/not_found/client; raise _AuthFailure on 401/403."""
        if isinstance(exc, openai.APITimeoutError):
            return "transient", f"request timed out after {self.timeout_s:g}s", None
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            return "transient", self._short(f"connection error: {cause}"), None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            reason = self._short(f"HTTP {status} {_status_text(exc)}")
            if status in (401, 403):
                raise _AuthFailure(status, reason)
            if status in (408, 409, 429) or status >= 500:
                return "transient", reason, _retry_after(exc)
            # A wrong model name or a base URL missing /v1 gives 404 for every item alike.
            if status == 404:
                return "not_found", reason, None
            return "client", reason, None
        # Malformed responses and other SDK errors concern this item only.
        return "client", self._short(f"{type(exc).__name__}: {exc}"), None

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = self.backoff_s * (2**attempt) * random.uniform(0.5, 1.5)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, _MAX_BACKOFF_S)

    def _raise_if_unavailable(self, results: list[_ItemResult]) -> None:
        if any(r.failure is None or r.failure == "client" for r in results):
            return
        reasons = Counter(
            (r.completion.error or "").split(f" (server {self._display_url}")[0] for r in results
        )
        reason, _ = reasons.most_common(1)[0]
        attempts = max(r.attempts for r in results)
        n = len(results)
        raise BackendUnavailableError(
            f"The OpenAI-compatible server at {self._display_url} keeps failing: all {n} "
            f"request(s) of this call failed ({reason}) after {attempts} attempt(s) each. "
            "Check that the server is running and reachable at that URL, that "
            "$OPENAI_BASE_URL or the '@<base url>' part of the model spec points at it "
            f"(usually ending in /v1), that it serves the model {self.model!r}, and that "
            f"${self.api_key_env} holds a valid key for it."
        )

    def _auth_message(self, status: int, reason: str) -> str:
        key_state = (
            f"the key in ${self.api_key_env} was refused"
            if self._key_was_set
            else f"${self.api_key_env} is not set, so the placeholder key was sent"
        )
        return (
            f"The server at {self._display_url} rejected the request ({reason}): {key_state}. "
            f"Run `export {self.api_key_env}=<a valid key for this server>` and try again."
        )

    def _short(self, text: str) -> str:
        """Redact the key and cap the length of a server-provided reason."""
        if self._secret and self._secret != PLACEHOLDER_KEY:
            text = text.replace(self._secret, "***")
        text = redact_urls(text)
        text = " ".join(text.split())
        if len(text) > _MAX_REASON_CHARS:
            text = text[: _MAX_REASON_CHARS - 3] + "..."
        return text


def _to_completion(response: Any) -> Completion:
    """Build a Completion from a ChatCompletion, tolerating servers that omit optional fields."""
    choices = getattr(response, "choices", None) or []
    if not choices:
        return Completion(text="", finish_reason="error", error="server returned no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is not None:
        text = getattr(message, "content", None) or ""
    else:  # a /v1/completions choice carries the continuation as ``text``
        text = getattr(choice, "text", None) or ""
    raw_reason = getattr(choice, "finish_reason", None)
    usage = getattr(response, "usage", None)
    extra = {} if raw_reason in (None, "stop", "length") else {"raw_finish_reason": raw_reason}
    return Completion(
        text=text,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason="length" if raw_reason == "length" else "stop",
        extra=extra,
    )


def _status_text(exc: openai.APIStatusError) -> str:
    phrase = getattr(exc.response, "reason_phrase", "") or ""
    body = exc.body
    message = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            message = str(inner.get("message") or "")
        elif isinstance(inner, str):
            message = inner
    elif isinstance(body, str):
        message = body
    return f"{phrase}: {message}" if message else phrase


def _retry_after(exc: openai.APIStatusError) -> float | None:
    value = exc.response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential backoff is good enough then


def _is_public_openai(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "api.openai.com" or host.endswith(".openai.com")


def _strip_userinfo(url: str) -> str:
    """Drop ``user:password@`` from a URL so credentials never reach logs or specs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _seeded(kwargs: dict[str, Any], index: int) -> dict[str, Any]:
    """Return ``kwargs`` with the seed offset by the request's index in the call.

    Servers make a seeded request deterministic, so one seed for every request would give
    identical agents identical samples; seed + index keeps a call reproducible and diverse.
    """
    if "seed" not in kwargs:
        return kwargs
    return {**kwargs, "seed": kwargs["seed"] + index}
