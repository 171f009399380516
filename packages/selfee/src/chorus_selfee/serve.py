"""``chorus-selfee serve``: a SelFee model behind FastChat, with revision-enforce.

Three processes, as FastChat deploys a model (fschat 0.2.36):

- FastChat's **controller** (``python -m fastchat.serve.controller``), unchanged;
- a **custom model worker** (this module's ``worker`` command): FastChat's worker base class
  and HTTP app (``fastchat.serve.base_model_worker``) with our generation behind it. Requests
  that arrive together are merged into one batched ``enforce_prompts`` call, so
  ``--max-num-revision K`` is applied inside batched generation exactly as ``infer`` does;
- FastChat's **OpenAI-compatible API server** (``fastchat.serve.openai_api_server``'s app,
  started by this module's ``api`` command only so that API keys come from the environment
  variable ``CHORUS_SELFEE_API_KEYS`` rather than from argv).

The worker's conversation template renders a user message as the SelFee training prompt
(``build_prompt``), and a reply is the whole chain (answer, feedback, revisions). Streaming
requests get the chain in one chunk when it is finished (no per-token stream); fschat 0.2.36's
streaming needs a small pydantic-2 shim (``patch_fastchat_streaming``). Client ``stop``
strings are not applied (the chain's own verdict ends a reply).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import signal
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

from chorus_selfee.chain import PROMPT_TEMPLATE
from chorus_selfee.enforce import ChatContinuer, HFContinuer, InferResult, enforce_prompts

_SERVE_MODULES = ("fastchat", "fastapi", "uvicorn", "aiohttp", "shortuuid", "tiktoken")
API_KEYS_ENV = "CHORUS_SELFEE_API_KEYS"  # comma-separated; unset = no key required
_SERVE_HINT = (
    "FastChat serving needs the serve extra: pip install -c constraints.txt "
    "'chorus-selfee[serve]' (fschat==0.2.36, fastapi, uvicorn, aiohttp, shortuuid, tiktoken)"
)


def selfee_conversation() -> Any:
    """Return a FastChat ``Conversation`` whose prompt for one user message is exactly
    ``build_prompt(message)``: the header as system message, ``### Instruction:`` and
    ``### Answer:`` as the two roles."""
    from fastchat.conversation import Conversation, SeparatorStyle

    header, _ = PROMPT_TEMPLATE.split("### Instruction:", 1)
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


def _load_generator(spec: str, batch_size: int) -> tuple[Any, Any, Callable[[float], Any]]:
    """Return (tokenizer or None, context length, temperature -> Continuer) for a model spec."""
    from chorus_shared.models import load_chat_model, parse_spec

    backend, _ = parse_spec(spec)
    if backend in ("hf", "default"):
        from chorus_shared.models.hf import HFChatModel

        hf = load_chat_model(spec, batch_size=batch_size)
        # hf:/default specs always load an HFChatModel; its model and tokenizer drive HFContinuer.
        if not isinstance(hf, HFChatModel):
            raise TypeError(f"{spec!r} loaded a {type(hf).__name__}, expected an HFChatModel")
        ctx = getattr(hf.model.config, "max_position_embeddings", None) or 2048
        return hf.tokenizer, ctx, lambda t: HFContinuer(hf.model, hf.tokenizer, temperature=t)
    chat = load_chat_model(spec)
    return None, 1 << 20, lambda t: ChatContinuer(chat, temperature=t)


def make_worker(
    *,
    controller_addr: str,
    worker_addr: str,
    model: str,
    model_name: str,
    max_num_revision: int,
    max_new_tokens: int,
    batch_size: int = 16,
    concurrency: int = 64,
) -> Any:
    """Return a FastChat model worker (a ``BaseModelWorker``) serving ``model`` with
    revision-enforce; it registers with the controller and is the module app's worker."""
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
                temp = float(params.get("temperature") or 0.0)
                res = self.batcher.submit(params["prompt"], max(budget, 1), temp).result()
            except Exception as exc:  # reported to the client as an API error
                from fastchat.constants import ErrorCode

                return {
                    "text": f"selfee worker error: {exc}",
                    "error_code": ErrorCode.INTERNAL_ERROR,
                }
            prompt_tokens = self.count_token({"prompt": params["prompt"]})["count"]
            return {
                "text": res.text,
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
        [model_name],
        concurrency,
    )
    tokenizer, ctx, continuer_for = _load_generator(model, batch_size)
    worker.tokenizer, worker.context_len = tokenizer, ctx

    def run(prompts: list[str], budgets: list[int], temperature: float) -> list[InferResult]:
        return enforce_prompts(
            continuer_for(temperature),
            prompts,
            max_num_revision=max_num_revision,
            max_new_tokens=budgets,
        )

    worker.batcher = MicroBatcher(run, max_batch=batch_size)
    base_model_worker.worker = worker
    worker.init_heart_beat()
    return worker


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
    """Return the served model name for a spec: the model folder's name, or the spec."""
    _, _, rest = spec.partition(":")
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
    max_num_revision: int,
    max_new_tokens: int,
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
    env = dict(os.environ, LOGDIR=log_dir or tempfile.mkdtemp(prefix="selfee-serve-"))
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
                [
                    py,
                    "-m",
                    "chorus_selfee.serve",
                    "worker",
                    "--controller-address",
                    ctrl,
                    "--host",
                    host,
                    "--port",
                    str(worker_port),
                    "--model",
                    model,
                    "--model-name",
                    name,
                    "--max-num-revision",
                    str(max_num_revision),
                    "--max-new-tokens",
                    str(max_new_tokens),
                    "--batch-size",
                    str(batch_size),
                ],
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
            f"chorus-selfee serve: ready at {api} (model {name!r}, K={max_num_revision}, "
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
    p.add_argument("--model", required=True)
    p.add_argument("--model-name", required=True)
    p.add_argument("--max-num-revision", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=16)
    a = p.parse_args(argv)
    make_worker(
        controller_addr=a.controller_address,
        worker_addr=f"http://{a.host}:{a.port}",
        model=a.model,
        model_name=a.model_name,
        max_num_revision=a.max_num_revision,
        max_new_tokens=a.max_new_tokens,
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


def _api_main(argv: Sequence[str]) -> None:
    import uvicorn
    from fastchat.serve import openai_api_server as oas

    p = argparse.ArgumentParser(prog="python -m chorus_selfee.serve api")
    p.add_argument("--controller-address", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args(argv)
    patch_fastchat_streaming()
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
