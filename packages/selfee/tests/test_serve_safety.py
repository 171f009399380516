"""chorus-selfee serve: no secret in a child's argv or in httpx logs, a taken port fails at
once, error bodies carry no Python file paths (no servers are started here)."""

from __future__ import annotations

import logging
import socket
import time
from types import SimpleNamespace

import pytest

from chorus_selfee.cli import main
from chorus_selfee.serve import (
    MODEL_ENV,
    default_model_name,
    quiet_http_logs,
    scrub_error_bodies,
    scrub_paths,
    worker_argv,
)

SECRET_SPEC = "openai:selfee-13b@http://alice:p@ss-w0rd@10.0.0.7:8000/v1"


def test_the_worker_command_line_holds_no_secret() -> None:
    name = default_model_name(SECRET_SPEC)
    argv = worker_argv(
        "http://127.0.0.1:21001",
        "127.0.0.1",
        21002,
        name,
        min_revisions=1,
        max_revisions=3,
        max_new_tokens=64,
        temperature=0.7,
        batch_size=4,
    )
    assert name == "selfee-13b"
    assert not any("p@ss-w0rd" in a or "alice" in a or "10.0.0.7" in a for a in argv)
    assert "--model" not in argv and MODEL_ENV == "CHORUS_SELFEE_MODEL"


def test_http_client_request_logs_are_silenced() -> None:
    logging.getLogger("httpx").setLevel(logging.INFO)
    quiet_http_logs()
    # httpx logs "HTTP Request: POST <url>" at INFO: the URL may carry a password.
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_a_taken_controller_port_fails_at_once(tmp_path, capsys) -> None:
    pytest.importorskip("fastchat", reason="needs the serve extra")
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        start = time.monotonic()
        argv = ["serve", "--model", "default", "--controller-port", str(port)]
        assert main([*argv, "--log-dir", str(tmp_path / "logs")]) == 2
        assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert err.startswith("chorus-selfee: error: ") and f"127.0.0.1:{port}" in err
    assert "--controller-port" in err and not (tmp_path / "logs").exists()


def test_error_bodies_lose_python_file_paths() -> None:
    message = (
        'Traceback: File "/usr/lib/python3.11/site-packages/fastchat/serve/openai_api_server.py"'
        ", line 464, in create_chat_completion; at /opt/app/chorus_selfee/serve.py:210: boom"
    )
    clean = scrub_paths(message)
    assert ".py" not in clean and "/usr/lib" not in clean and "boom" in clean

    sent = []
    fake = SimpleNamespace(create_error_response=lambda code, msg: sent.append((code, msg)))
    scrub_error_bodies(fake)
    fake.create_error_response(50001, message)
    assert sent == [(50001, clean)]
