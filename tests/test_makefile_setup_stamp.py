"""`make test` and `make reproduce-*` set the environment up first when it is missing or stale."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry_run(target: str, venv: Path) -> str:
    # -n prints the commands instead of running them (the recursive `$(MAKE) setup` is
    # dry-run too), so nothing is installed.
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("target", ["test", "reproduce-gsm-debate"])
def test_missing_venv_runs_setup_first(tmp_path: Path, target: str) -> None:
    out = _dry_run(target, tmp_path / "venv")
    assert "-m venv" in out and "pip install" in out
    first_job = "-m pytest" if target == "test" else "chorus-debate generate"
    assert out.index("pip install") < out.index(first_job)


def test_fresh_stamp_skips_setup_and_stale_stamp_reruns_it(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    stamp = venv / ".chorus-setup-stamp"
    stamp.touch()
    # Exactly the Makefile's SETUP_INPUTS: never a glob, which would walk into a virtualenv
    # (.venv-vllm holds pyproject.toml files of its own once `make setup-vllm` ran).
    inputs = [
        ROOT / "constraints.txt",
        ROOT / "pyproject.toml",
        ROOT / "shared" / "pyproject.toml",
        *(ROOT / "packages").glob("*/pyproject.toml"),
    ]
    newest = max(p.stat().st_mtime for p in inputs)
    os.utime(stamp, (newest + 10, newest + 10))
    out = _dry_run("test", venv)
    assert "pip install" not in out and "-m pytest" in out
    # Older than constraints.txt: set up again.
    os.utime(stamp, (newest - 10, newest - 10))
    assert "pip install" in _dry_run("test", venv)
