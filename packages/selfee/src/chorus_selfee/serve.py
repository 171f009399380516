"""``chorus-selfee serve``: a SelFee model behind FastChat, with revision-enforce.

Three processes, as FastChat deploys a model (fschat 0.2.36):

- FastChat's **controller** (``python -m fastchat.serve.controller``), unchanged;
- a **custom model worker** (this module's ``worker`` command): FastChat's worker base class
  and HTTP app (``fastchat.serve.base_model_worker``) with our generation behind it. Requests
  that arrive together are merged into one batched ``enforce_prompts`` call on the raw
  prompt, with the original demo's limits: at least ``min_revisions`` (1) enforced revisions,
  and a reply ends after ``max_revisions`` (3) revisions;
- FastChat's **OpenAI-compatible API server** (``fastchat.serve.openai_api_server``'s app,
  started by this module's ``api`` command so that API keys come from the environment
  variable ``CHORUS_SELFEE_API_KEYS`` rather than from argv).

A client asking for model ``<name>`` gets the final answer (as the demo shows it: the last
revision); ``<name>-chain`` returns the whole chain (answer, feedback, revisions). The model
spec reaches the worker through the environment (``CHORUS_SELFEE_MODEL``), never argv, so a
password in an ``openai:...@http://user:pass@host`` spec is not visible in ``ps``; httpx's
request log lines (which print URLs) are silenced, and error bodies never carry Python file
paths. Ports already taken are refused at once, before anything starts. Streaming requests
get the reply in one chunk when it is finished; fschat 0.2.36's streaming needs a small
pydantic-2 shim (``patch_fastchat_streaming``). Client ``stop`` strings are not applied.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from chorus_selfee.chain import PROMPT_NO_INPUT, final_answer
from chorus_selfee.enforce import HFContinuer, InferResult, enforce_prompts, load_continuer

_SERVE_MODULES = ("fastchat", "fastapi", "uvicorn", "aiohttp", "shortuuid", "tiktoken")
API_KEYS_ENV = "CHORUS_SELFEE_API_KEYS"  # comma-separated; unset = no key required
MODEL_ENV = "CHORUS_SELFEE_MODEL"  # the worker's model spec (may hold a password: never argv)
CHAIN_SUFFIX = "-chain"  # model name suffix that returns the whole chain
_PY_PATH = re.compile(
    r"""(?:File ")?(?:[A-Za-z]:)?(?:[\\/][^\s\\/"':,]+)+\.pyc?"?(?:, line \d+|:\d+)?"""
)
_SERVE_HINT = (
    "FastChat serving needs the serve extra: pip install -c constraints.txt "
    "'chorus-selfee[serve]' (fschat==0.2.36, fastapi, uvicorn, aiohttp, shortuuid, tiktoken)"
)


def selfee_conversation() -> Any:
    """Return a FastChat ``Conversation`` whose prompt for one user message is exactly
    ``build_prompt(message)``: the header as system message, ``### Instruction:`` and
    ``### Answer:`` as the two roles."""
    from fastchat.conversation import Conversation, SeparatorStyle

    header, _ = PROMPT_NO_INPUT.split("### Instruction:", 1)
    return Conversation(
        name="selfee",
        system_message=header,
        roles=("### Instruction:\n", "### Answer:\n"),
        messages=[],
        sep_style=SeparatorStyle.NO_COLON_SINGLE,
        sep="\n\n",
    )


class MicroBatcher:
    """Collect requests for up to ``wait_s`` (at most ``max_batch``) and run them together.

    ``run(prompts, budgets, temperature)`` is called from one thread only, so the model is
    never used by two threads at once; requests with different temperatures run in separate
    calls of the same batch.
    """

    def __init__(
        self,
        run: Callable[[list[str], list[int], float], list[InferResult]],
        max_batch: int = 16,
        wait_s: float = 0.05,
    ) -> None:
        self.run, self.max_batch, self.wait_s = run, max_batch, wait_s
        self.queue: queue.Queue[tuple[str, int, float, Future]] = queue.Queue()
        self.batches: list[int] = []  # size of every batch run; tests read it
        threading.Thread(target=self._loop, daemon=True, name="selfee-batcher").start()

    def submit(self, prompt: str, budget: int, temperature: float) -> Future:
        """Return a future of the request's InferResult."""
        fut: Future = Future()
        self.queue.put((prompt, budget, temperature, fut))
        return fut

    def _loop(self) -> None:
        while True:
            batch = [self.queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=max(left, 0.0)))
                except queue.Empty:
                    break
            self.batches.append(len(batch))
            by_temp: dict[float, list[tuple[str, int, float, Future]]] = {}
            for req in batch:
                by_temp.setdefault(req[2], []).append(req)
            for temp, reqs in by_temp.items():
                try:
                    results = self.run([r[0] for r in reqs], [r[1] for r in reqs], temp)
                except Exception as exc:  # every waiting request gets the error
                    for r in reqs:
                        r[3].set_exception(exc)
                    continue
                for r, res in zip(reqs, results, strict=True):
                    r[3].set_result(res)


def scrub_paths(text: str) -> str:
    """Return ``text`` without Python source file paths (``File "/x/y.py", line 3``,
    ``/x/y.py:3``): error bodies sent to clients never show where our code lives."""
    return _PY_PATH.sub("<source>", text)


def quiet_http_logs() -> None:
    """Silence httpx/httpcore request logging (its lines print full URLs, which may hold a
    password) in a serving process; returns ``None``."""
    for name in ("httpx", "httpcore", "openai"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _load_generator(spec: str, window: int) -> tuple[Any, int, Callable[[float], Any]]:
    """Return (tokenizer or None, context length, temperature -> Continuer) for a model spec
    (raw prompts: a SelFee model needs no chat template)."""
    base = load_continuer(spec, window=window)
    if isinstance(base, HFContinuer):
        hf = base
        ctx = getattr(hf.model.config, "max_position_embeddings", None) or 2048
        return hf.tokenizer, ctx, lambda t: HFContinuer(hf.model, hf.tokenizer, temperature=t)

    def at(t: float) -> Any:
        base.temperature = t  # one batch at a time (MicroBatcher): safe to set per call
        return base

    return None, 1 << 20, at


def make_worker(
    *,
    controller_addr: str,
    worker_addr: str,
    model: str,
    model_name: str,
    min_revisions: int,
    max_revisions: int,
    max_new_tokens: int,
    temperature: float = 0.7,
    batch_size: int = 16,
    concurrency: int = 64,
) -> Any:
    """Return a FastChat model worker (a ``BaseModelWorker``) serving ``model`` with
    revision-enforce as ``model_name`` (final answers) and ``model_name``-chain (whole
    chains); it registers with the controller and is the module app's worker."""
    from fastchat.serve import base_model_worker

    class SelfeeWorker(base_model_worker.BaseModelWorker):
        def make_conv_template(
            self, conv_template: str | None = None, model_path: str | None = None
        ):
            return selfee_conversation()

        def generate_gate(self, params: dict) -> dict:
            self.call_ct += 1
            try:
                budget = min(int(params.get("max_new_tokens") or max_new_tokens), max_new_tokens)
                given = params.get("temperature")
                temp = float(temperature if given is None else given)
                res = self.batcher.submit(params["prompt"], max(budget, 1), temp).result()
                if res.error is not None:
                    raise RuntimeError(res.error)
            except Exception as exc:  # reported to the client as an API error
                from fastchat.constants import ErrorCode

                return {
                    "text": scrub_paths(f"selfee worker error: {type(exc).__name__}: {exc}"),
                    "error_code": ErrorCode.INTERNAL_ERROR,
                }
            prompt_tokens = self.count_token({"prompt": params["prompt"]})["count"]
            chain = str(params.get("model", "")).endswith(CHAIN_SUFFIX)
            # The demo's last bubble is the last revision: a chain the revision cap ended is
            # complete; otherwise the original's parse() rule gives the answer.
            answer = _served_answer(res)
            return {
                "text": res.text if chain else answer,
                "error_code": 0,
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": res.tokens,
                    "total_tokens": prompt_tokens + res.tokens,
                },
                "finish_reason": "length" if res.finish == "length" else "stop",
            }

        def count_token(self, params: dict) -> dict:
            if self.tokenizer is None:  # API backend: whitespace words, an estimate
                return {"count": len(params["prompt"].split()), "error_code": 0}
            ids = self.tokenizer(params["prompt"], add_special_tokens=False)["input_ids"]
            return {"count": len(ids), "error_code": 0}

        def generate_stream_gate(self, params: dict):
            yield json.dumps(self.generate_gate(params)).encode() + b"\0"

    worker = SelfeeWorker(
        controller_addr,
        worker_addr,
        uuid.uuid4().hex[:8],
        model,
        [model_name, model_name + CHAIN_SUFFIX],
        concurrency,
    )
    tokenizer, ctx, continuer_for = _load_generator(model, batch_size)
    worker.tokenizer, worker.context_len = tokenizer, ctx

    def run(prompts: list[str], budgets: list[int], temperature: float) -> list[InferResult]:
        return enforce_prompts(
            continuer_for(temperature),
            prompts,
            max_num_revision=min_revisions,
            max_new_tokens=budgets,
            max_revisions=max_revisions,
        )

    worker.batcher = MicroBatcher(run, max_batch=batch_size)
    base_model_worker.worker = worker
    worker.init_heart_beat()
    return worker


def _served_answer(res: InferResult) -> str:
    """Return the answer a client gets: the last revision of a chain the revision cap ended
    (it is complete), else the original's final answer."""
    if res.capped:
        last = res.text.rsplit("### Revision ", 1)
        if len(last) == 2:
            return re.sub(r"^\d+:\n?", "", last[1]).strip()
    return final_answer(res.text).text.strip()


def worker_argv(
    controller: str,
    host: str,
    port: int,
    name: str,
    *,
    min_revisions: int,
    max_revisions: int,
    max_new_tokens: int,
    temperature: float,
    batch_size: int,
) -> list[str]:
    """Return the worker process's command line. It never holds the model spec (which may
    carry a password, and argv is visible to every user in ``ps``): the worker reads the
    spec from ``CHORUS_SELFEE_MODEL`` in its environment."""
    return [
        sys.executable,
        "-m",
        "chorus_selfee.serve",
        "worker",
        "--controller-address",
        controller,
        "--host",
        host,
        "--port",
        str(port),
        "--model-name",
        name,
        "--min-revisions",
        str(min_revisions),
        "--max-revisions",
        str(max_revisions),
        "--max-new-tokens",
        str(max_new_tokens),
        "--temperature",
        str(temperature),
        "--batch-size",
        str(batch_size),
    ]


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Raise ``RuntimeError`` naming the first port another service already holds (so serve
    fails at once instead of talking to that service); returns ``None``."""
    for what, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError as exc:
                flag = {"controller": "--controller-port", "worker": "--worker-port"}.get(
                    what, "--port"
                )
                raise RuntimeError(
                    f"the {what} port {host}:{port} is already in use ({exc.strerror}); stop "
                    f"the service holding it or pass another {flag}"
                ) from None


def _post_json(
    url: str, data: dict | None = None, timeout: float = 5.0, key: str | None = None
) -> Any:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers=headers,
        method="GET" if data is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _wait(
    what: str, check: Callable[[], bool], procs: Sequence[subprocess.Popen], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: a serving process exited with code {p.returncode}")
        try:
            if check():
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def default_model_name(spec: str) -> str:
    """Return the served model name for a spec: the model folder's name, the API model's name
    (never its URL, which may hold a password), or the spec."""
    backend, _, rest = spec.partition(":")
    if backend == "openai":
        rest = rest.partition("@")[0]
    return Path(rest.rstrip("/")).name if rest else spec


def _check_model_spec(model: str) -> None:
    """Raise one clear ``ModelSpecError`` for a spec that cannot work, before any server starts:
    a typo in the backend, or an ``hf:`` local folder that does not exist (the worker would
    otherwise die in its own process with a traceback). Returns ``None`` otherwise."""
    from chorus_shared.models import parse_spec
    from chorus_shared.models.base import looks_like_path, model_load_error

    backend, target = parse_spec(model)
    if backend == "hf" and looks_like_path(target) and not Path(target).expanduser().exists():
        raise model_load_error(target, FileNotFoundError(target))


def serve(
    model: str,
    *,
    min_revisions: int = 1,
    max_revisions: int = 3,
    max_new_tokens: int = 2048,
    temperature: float = 0.7,
    host: str = "127.0.0.1",
    port: int = 8000,
    controller_port: int = 21001,
    worker_port: int = 21002,
    model_name: str | None = None,
    batch_size: int = 16,
    log_dir: str | None = None,
    ready_timeout: float = 600.0,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Start controller, SelFee worker and OpenAI API server; block until one exits or a
    SIGTERM/SIGINT arrives, then stop all three. Return the exit code."""
    _check_model_spec(model)
    # Checked without importing: importing FastChat's serve modules here would redirect this
    # process's stdout into a log file in the working directory (fastchat.utils.build_logger).
    missing = [m for m in _SERVE_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(f"{_SERVE_HINT} (missing: {', '.join(missing)})")
    name = model_name or default_model_name(model)
    if len({port, controller_port, worker_port}) != 3:
        raise ValueError("--port, --controller-port and --worker-port must differ")
    check_ports_free(host, {"controller": controller_port, "worker": worker_port, "API": port})
    env = dict(
        os.environ,
        LOGDIR=log_dir or tempfile.mkdtemp(prefix="selfee-serve-"),
        **{MODEL_ENV: model},
    )
    Path(env["LOGDIR"]).mkdir(parents=True, exist_ok=True)
    ctrl = f"http://{host}:{controller_port}"
    py = sys.executable
    procs: list[subprocess.Popen] = []

    def stop(*_: Any) -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()

    old = signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too
    try:
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "fastchat.serve.controller",
                    "--host",
                    host,
                    "--port",
                    str(controller_port),
                ],
                env=env,
            )
        )
        _wait(
            "controller",
            lambda: _post_json(f"{ctrl}/list_models", {}) is not None,
            procs,
            ready_timeout,
        )
        worker_url = f"http://{host}:{worker_port}"
        procs.append(
            subprocess.Popen(
                worker_argv(
                    ctrl,
                    host,
                    worker_port,
                    name,
                    min_revisions=min_revisions,
                    max_revisions=max_revisions,
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    batch_size=batch_size,
                ),
                env=env,
            )
        )
        _wait(
            "worker",
            lambda: name in _post_json(f"{worker_url}/worker_get_status", {})["model_names"],
            procs,
            ready_timeout,
        )
        procs.append(
            subprocess.Popen(
                [
                    py,
                    "-m",
                    "chorus_selfee.serve",
                    "api",
                    "--controller-address",
                    ctrl,
                    "--host",
                    host,
                    "--port",
                    str(port),
                ],
                env=env,
            )
        )
        api = f"http://{host}:{port}/v1"
        key = next((k for k in os.environ.get(API_KEYS_ENV, "").split(",") if k), None)
        _wait(
            "API server",
            lambda: name in {m["id"] for m in _post_json(f"{api}/models", key=key)["data"]},
            procs,
            ready_timeout,
        )
        print(
            f"chorus-selfee serve: ready at {api} (model {name!r}: final answers, "
            f"{name + CHAIN_SUFFIX!r}: whole chains; revisions {min_revisions}..{max_revisions}, "
            f"logs {env['LOGDIR']})",
            flush=True,
        )
        if on_ready:
            on_ready(api)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        return next(p.returncode for p in procs if p.poll() is not None) or 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop()
        signal.signal(signal.SIGTERM, old)


def _worker_main(argv: Sequence[str]) -> None:
    import uvicorn
    from fastchat.serve import base_model_worker

    p = argparse.ArgumentParser(prog="python -m chorus_selfee.serve worker")
    p.add_argument("--controller-address", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--min-revisions", type=int, default=1)
    p.add_argument("--max-revisions", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args(argv)
    model = os.environ.get(MODEL_ENV)
    if not model:
        sys.exit(f"{MODEL_ENV} is not set: start the worker through `chorus-selfee serve`")
    quiet_http_logs()
    make_worker(
        controller_addr=a.controller_address,
        worker_addr=f"http://{a.host}:{a.port}",
        model=model,
        model_name=a.model_name,
        min_revisions=a.min_revisions,
        max_revisions=a.max_revisions,
        max_new_tokens=a.max_new_tokens,
        temperature=a.temperature,
        batch_size=a.batch_size,
    )
    uvicorn.run(base_model_worker.app, host=a.host, port=a.port, log_level="warning")


def patch_fastchat_streaming() -> None:
    """Let fschat 0.2.36's streaming endpoints run on pydantic 2.

    Its stream generators call ``chunk.json(exclude_unset=True, ensure_ascii=False)``, the
    pydantic-1 signature; pydantic 2 raises "`dumps_kwargs` keyword arguments are no longer
    supported" and every ``stream=True`` request dies mid-response. The stream chunk classes
    get a ``json`` that maps those arguments onto ``model_dump_json`` (which writes UTF-8
    as it is, i.e. ``ensure_ascii=False``).
    """
    from fastchat.protocol import openai_api_protocol as proto

    def _json(self: Any, *, ensure_ascii: bool = False, **kwargs: Any) -> str:
        return self.model_dump_json(**kwargs)

    for cls in (proto.ChatCompletionStreamResponse, proto.CompletionStreamResponse):
        cls.json = _json


def scrub_error_bodies(oas: Any) -> None:
    """Make every error body of FastChat's API server path-free: its handlers build them
    with the module's ``create_error_response``, which is wrapped here; returns ``None``."""
    original = oas.create_error_response

    def create_error_response(code: int, message: str) -> Any:
        return original(code, scrub_paths(str(message)))

    oas.create_error_response = create_error_response


def _api_main(argv: Sequence[str]) -> None:
    import uvicorn
    from fastchat.serve import openai_api_server as oas

    p = argparse.ArgumentParser(prog="python -m chorus_selfee.serve api")
    p.add_argument("--controller-address", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    quiet_http_logs()
    patch_fastchat_streaming()
    scrub_error_bodies(oas)
    oas.app_settings.controller_address = a.controller_address
    keys = [k for k in os.environ.get(API_KEYS_ENV, "").split(",") if k]
    oas.app_settings.api_keys = keys or None
    uvicorn.run(oas.app, host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "worker":
        _worker_main(rest)
    elif cmd == "api":
        _api_main(rest)
    else:
        sys.exit(
            "usage: python -m chorus_selfee.serve {worker|api} ... (use `chorus-selfee serve`)"
        )
