"""chorus_shared.redact: no URL credential reaches a file, a log line, argv or the console."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from chorus_shared.redact import (
    has_credentials,
    hide_secret_args,
    install_log_redaction,
    redact_argv,
    redact_urls,
    redact_value,
    redacted_process_argv,
    reveal_secret_args,
)
from chorus_shared.runs import RunDir

AT_PASSWORD = "http://alice:p@ss@host.example:8000/v1"


@pytest.mark.parametrize(
    "text, expected",
    [
        (AT_PASSWORD, "http://host.example:8000/v1"),
        ("openai:m@http://alice:p@ss@host/v1", "openai:m@http://host/v1"),
        ("http://u:pw@a/v1 and https://tok@b/x", "http://a/v1 and https://b/x"),
        ("https://a:b@c?x=1@2", "https://c?x=1@2"),  # an @ in the query is no credential
        ("http://host/v1 mail me@example.org", "http://host/v1 mail me@example.org"),
        ("no url here", "no url here"),
    ],
)
def test_redact_urls_removes_the_whole_userinfo(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def test_a_password_with_an_at_sign_is_fully_removed_from_config_json(tmp_path: Path) -> None:
    config = {"recipe": {"model": [f"openai:m@{AT_PASSWORD}"]}, "runtime": {}}
    with RunDir.create(tmp_path / "run", config) as run:
        run.append({"id": "a", "spec": f"openai:m@{AT_PASSWORD}", "error": f"{AT_PASSWORD} 400"})
        run.write_report(f"served by {AT_PASSWORD}")
    for file in (tmp_path / "run").iterdir():
        text = file.read_text()
        assert "p@ss" not in text and "ss@" not in text and "alice" not in text, file.name
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["recipe"]["model"] == ["openai:m@http://host.example:8000/v1"]


def test_redact_value_walks_nested_values() -> None:
    assert redact_value({"a": [AT_PASSWORD, 3], AT_PASSWORD: None}) == {
        "a": ["http://host.example:8000/v1", 3],
        "http://host.example:8000/v1": None,
    }


def test_log_records_are_scrubbed_for_every_logger_and_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    with caplog.at_level(logging.INFO):
        logging.getLogger("httpx").info("HTTP Request: POST %s/chat/completions", AT_PASSWORD)
        logging.getLogger("chorus.test").warning(f"retrying {AT_PASSWORD}")
    text = caplog.text
    assert "p@ss" not in text and "ss@" not in text
    assert "POST http://host.example:8000/v1/chat/completions" in text
    assert "retrying http://host.example:8000/v1" in text


def test_redacted_process_argv_hides_credentials_from_trackers() -> None:
    saved = list(sys.argv)
    sys.argv[:] = ["chorus-tripost", "train", "--helper", f"openai:m@{AT_PASSWORD}"]
    try:
        with redacted_process_argv():
            # What wandb.init would read and store as the program's command line.
            assert sys.argv[-1] == "openai:m@http://host.example:8000/v1"
        assert sys.argv[-1] == f"openai:m@{AT_PASSWORD}"
    finally:
        sys.argv[:] = saved
    assert redact_argv(["--url", AT_PASSWORD]) == ["--url", "http://host.example:8000/v1"]


def test_secret_args_travel_through_the_environment_not_argv() -> None:
    argv = ["-m", "worker", "--model", f"openai:m@{AT_PASSWORD}", "--port", "21002"]
    shown, env = hide_secret_args(argv)
    assert not any(has_credentials(arg) or "p@ss" in arg for arg in shown)
    assert shown[3] == "${CHORUS_SECRET_ARG_0}"
    assert reveal_secret_args(shown, env) == argv
    with pytest.raises(ValueError, match="CHORUS_SECRET_ARG_0, which is not set"):
        reveal_secret_args(shown, {})
    assert hide_secret_args(["--port", "1"]) == (["--port", "1"], {})
