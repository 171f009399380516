"""A generate run killed with SIGKILL mid-run resumes to exactly one record per item."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LIMIT = 8
STARTUP_TIMEOUT_S = 180  # importing torch + transformers on a busy 2-core machine
RUN_TIMEOUT_S = 300


def _command(model_dir: Path, out: Path, max_new_tokens: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "chorus_debate.cli",
        "generate",
        "--task",
        "arithmetic",
        "--method",
        "debate",
        "--model",
        f"hf:{model_dir}",
        "--limit",
        str(LIMIT),
        "--window",
        "1",
        "--max-new-tokens",
        str(max_new_tokens),
        "--out",
        str(out),
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["CHORUS_NO_PROGRESS"] = "1"
    # One thread is much faster for the tiny model on a shared 2-core machine (see conftest).
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _complete_lines(path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return data[: data.rfind(b"\n") + 1].splitlines(keepends=True)


def _start_and_kill(command: list[str], records: Path) -> bool:
    """Start the run, SIGKILL it once >= 2 records are on disk; False if it finished first."""
    child = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while len(_complete_lines(records)) < 2:
            if child.poll() is not None:
                err = child.stderr.read().decode(errors="replace") if child.stderr else ""
                assert child.returncode == 0, err[-2000:]
                return False
            assert time.monotonic() < deadline, "no records written in time"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
        if child.stderr:
            child.stderr.close()
    if child.returncode == 0:
        return False  # it exited normally between the last poll and the kill
    # The kill really happened (not a crash); the caller checks it happened mid-run.
    assert child.returncode == -signal.SIGKILL
    return len(_complete_lines(records)) < LIMIT


def test_sigkill_mid_run_then_resume(tiny_model_dir: Path, tmp_path: Path) -> None:
    for max_new_tokens in (64, 256, 1024):
        out = tmp_path / f"run{max_new_tokens}"
        command = _command(tiny_model_dir, out, max_new_tokens)
        if _start_and_kill(command, out / "records.jsonl"):
            break
    else:
        pytest.fail("the child always finished before it could be killed")

    before = _complete_lines(out / "records.jsonl")
    ids_before = [json.loads(line)["id"] for line in before]
    assert 2 <= len(before) < LIMIT

    done = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(before)} of {LIMIT} items already done" in done.stderr

    after = _complete_lines(out / "records.jsonl")
    assert (out / "records.jsonl").read_bytes().endswith(b"\n")
    ids = [json.loads(line)["id"] for line in after]
    expected = [f"arithmetic-0-{i}" for i in range(LIMIT)]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids)) == LIMIT
    # What was finished before the kill is kept byte for byte, in front of the rest.
    assert after[: len(before)] == before
    assert ids[: len(ids_before)] == ids_before
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == LIMIT
