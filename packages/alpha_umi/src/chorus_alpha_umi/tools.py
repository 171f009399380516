"""Tool environments: calls are data, checked against the tool's schema, never run as code.

``ToolEnvironment.call_many`` answers a batch of calls (one per episode in flight) with
observation strings. ``ToyTools`` holds deterministic Python functions for tests;
``SimulatedTools`` answers from a cache of recorded responses and otherwise lets an LLM play
the API from its documentation (as StableToolBench does), caching what it answered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol

from chorus_alpha_umi.dialog import cut_tool
from chorus_shared.models import ChatModel, Message, SamplingParams

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def validate_arguments(parameters: dict[str, Any], arguments: Any) -> str | None:
    """Return None when ``arguments`` fit the tool's ``parameters``, else what is wrong.

    ``parameters`` is a JSON schema (``properties``/``required``) or the test file's flat
    ``{name: "type, description"}`` mapping (every key optional there).
    """
    if not isinstance(arguments, dict):
        return "arguments must be a JSON object"
    if "properties" in parameters or parameters.get("type") == "object":
        props = parameters.get("properties") or {}
        required = parameters.get("required") or []
        types = {k: (v or {}).get("type") for k, v in props.items() if isinstance(v, dict)}
    else:
        props = parameters
        required = []
        types = {k: str(v).split(",")[0].strip() for k, v in parameters.items()}
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        return f"unknown argument(s) {unknown}; allowed: {sorted(props)}"
    missing = sorted(set(required) - set(arguments))
    if missing:
        return f"missing required argument(s) {missing}"
    for key, value in arguments.items():
        expected = _JSON_TYPES.get(str(types.get(key)))
        if expected and not (
            isinstance(value, expected) and not (isinstance(value, bool) and bool not in expected)
        ):
            return f"argument {key!r} must be {types[key]}, got {type(value).__name__}"
    return None


def _error(message: str) -> str:
    return json.dumps({"error": message})


class ToolEnvironment(Protocol):
    """Answers batches of tool calls; returns one observation string per call."""

    def call_many(self, calls: list[tuple[list[dict[str, Any]], str | None, Any]]) -> list[str]: ...


NO_ACTION = "the caller wrote no 'Action:' line"


def _check(tools: list[dict[str, Any]], api: str, arguments: Any) -> str | None:
    by_name = {cut_tool(t)["name"]: cut_tool(t) for t in tools}
    if api not in by_name:
        return f"unknown tool {api!r}; available: {sorted(by_name)}"
    if arguments is None:
        return "Action Input is not a JSON object"
    return validate_arguments(by_name[api]["parameters"], arguments)


class ToyTools:
    """Deterministic tools for tests: ``functions[name](arguments) -> JSON-able result``.

    A function that raises, returns something that is not JSON-serialisable, or runs longer
    than ``timeout_s`` gives an ``{"error": ...}`` observation instead of ending the episode.
    (A timed-out call's thread cannot be stopped; it is abandoned, its result ignored.)
    """

    def __init__(
        self,
        functions: dict[str, Callable[[dict[str, Any]], Any]],
        *,
        timeout_s: float | None = None,
    ) -> None:
        self.functions = functions
        self.timeout_s = timeout_s
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors = 0

    def _invoke(self, api: str, arguments: dict[str, Any]) -> str:
        if self.timeout_s is None:
            result = self.functions[api](arguments)
        else:
            pool = ThreadPoolExecutor(max_workers=1)
            try:
                result = pool.submit(self.functions[api], arguments).result(self.timeout_s)
            finally:
                pool.shutdown(wait=False)
        return json.dumps(result, sort_keys=True)

    def call_many(self, calls: list[tuple[list[dict[str, Any]], str | None, Any]]) -> list[str]:
        """Return the observation of every call (an ``{"error": ...}`` JSON for a bad one)."""
        out = []
        for tools, api, arguments in calls:
            if api is None:
                out.append(_error(NO_ACTION))
                continue
            problem = _check(tools, api, arguments)
            if problem is None and api not in self.functions:
                problem = f"tool {api!r} has no implementation here"
            if problem is not None:
                out.append(_error(problem))
                continue
            self.calls.append((api, arguments))
            try:
                out.append(self._invoke(api, arguments))
            except FutureTimeout:
                self.errors += 1
                out.append(_error(f"tool {api!r} timed out after {self.timeout_s} s"))
            except Exception as err:  # a broken tool is an observation, not a crash
                self.errors += 1
                out.append(_error(f"tool {api!r} failed: {type(err).__name__}: {err}"))
        return out


def read_cache(path: Path) -> dict[str, str]:
    """Return ``{key: response}`` of a simulator cache file (empty when there is none).

    Like records.jsonl: a last line without its newline (a write cut short) is dropped and
    cut off the file, so later appends start on a clean line; any other bad line is one
    ValueError naming the file and the line.
    """
    if not path.is_file():
        return {}
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        with path.open("r+b") as handle:  # drop the torn tail
            handle.truncate(complete)
            handle.flush()
            os.fsync(handle.fileno())
    cache: dict[str, str] = {}
    for lineno, raw in enumerate(data[:complete].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{path}:{lineno}: not a simulator cache line ({err}); fix or delete the line"
            ) from None
        if not (
            isinstance(row, dict)
            and isinstance(row.get("key"), str)
            and isinstance(row.get("response"), str)
        ):
            raise ValueError(
                f"{path}:{lineno}: a simulator cache line needs string 'key' and 'response'"
            )
        cache[row["key"]] = row["response"]
    return cache


def append_cache(path: Path, rows: list[tuple[str, str]]) -> None:
    """Append ``(key, response)`` lines to the cache file, flushed and fsynced (a crash loses
    at most the line being written, which :func:`read_cache` then drops)."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"key": k, "response": v}) + "\n" for k, v in rows)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


SIMULATOR_PROMPT = (
    "You play a REST API for testing. Documentation:\n{doc}\n"
    "Reply with the API's JSON response to this call and nothing else.\n"
    "Arguments: {arguments}"
)


class SimulatedTools:
    """Cache first, then an LLM playing the API from its documentation; answers are cached.

    The cache is a JSONL file of ``{"key", "response"}`` lines, appended as answers come.
    A model answer that is not JSON is wrapped as ``{"response": text}`` so the caller side
    always sees JSON, and counted in ``non_json``. A model call that failed (a timeout or an
    error completion of the backend) gives an ``{"error": ...}`` observation, is counted in
    ``errors`` and is not cached, so a later run asks again.
    """

    def __init__(
        self, model: ChatModel, cache_path: str | Path, params: SamplingParams | None = None
    ) -> None:
        self.model = model
        self.params = params or SamplingParams(max_new_tokens=256)
        self.cache_path = Path(cache_path)
        self.cache: dict[str, str] = {}
        self.non_json = 0
        self.errors = 0
        self.cache = read_cache(self.cache_path)

    @staticmethod
    def key(api: str, arguments: dict[str, Any]) -> str:
        """Return the cache key of a call (API name + canonical JSON arguments)."""
        return f"{api} {json.dumps(arguments, sort_keys=True)}"

    def call_many(self, calls: list[tuple[list[dict[str, Any]], str | None, Any]]) -> list[str]:
        """Return the observation of every call; one batched ``chat`` for all cache misses."""
        out: list[str | None] = [None] * len(calls)
        misses: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        miss_at: dict[int, str] = {}  # position in ``calls`` -> cache key, for every miss
        for k, (tools, api, arguments) in enumerate(calls):
            if api is None:
                out[k] = _error(NO_ACTION)
                continue
            problem = _check(tools, api, arguments)
            if problem is not None:
                out[k] = _error(problem)
                continue
            key = self.key(api, arguments)
            if key in self.cache:
                out[k] = self.cache[key]
            else:
                doc = next(cut_tool(t) for t in tools if cut_tool(t)["name"] == api)
                misses[key] = (doc, arguments)
                miss_at[k] = key
        failed: dict[str, str] = {}
        if misses:
            prompts: list[list[Message]] = [
                [
                    {
                        "role": "user",
                        "content": SIMULATOR_PROMPT.format(
                            doc=json.dumps(doc), arguments=json.dumps(arguments)
                        ),
                    }
                ]
                for doc, arguments in misses.values()
            ]
            fresh: list[tuple[str, str]] = []
            for key, completion in zip(misses, self.model.chat(prompts, self.params), strict=True):
                if completion.error is not None or completion.finish_reason == "error":
                    self.errors += 1
                    failed[key] = _error(f"the API simulator failed: {completion.error}")
                    continue
                text = completion.text.strip()
                try:
                    json.loads(text)
                except json.JSONDecodeError:
                    self.non_json += 1
                    text = json.dumps({"response": text})
                self.cache[key] = text
                fresh.append((key, text))
            append_cache(self.cache_path, fresh)
        for k, key in miss_at.items():
            out[k] = failed[key] if key in failed else self.cache[key]
        return [o for o in out if o is not None]
