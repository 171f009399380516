"""Issue 20: nothing of a run (or of a user) is overwritten by mistake; the lock is portable."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import chorus_shared.runs
from chorus_shared.runs import (
    CONFIG_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    RECORDS_FILE,
    REPORT_FILE,
    OutputFolder,
    RunConfigMismatch,
    RunDir,
    RunLockedError,
    is_run_folder,
)

CONFIG = {"recipe": {"task": "toy"}, "runtime": {}}


def _finished_run(path: Path) -> Path:
    with RunDir.create(path, CONFIG) as run:
        run.append({"id": "a", "y": 1})
        run.write_metrics({"accuracy": 0.75})
        run.write_report("# scores\n")
    return path


def test_output_folder_refuses_another_runs_folder(tmp_path: Path) -> None:
    other = _finished_run(tmp_path / "other")
    before = {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match="holds a Chorus run") as caught:
        OutputFolder(other)
    assert "\n" not in str(caught.value) and "without --out" in str(caught.value)
    assert {p.name: p.read_bytes() for p in other.iterdir() if p.is_file()} == before


def test_output_folder_refuses_a_run_made_before_manifests(tmp_path: Path) -> None:
    old = _finished_run(tmp_path / "old")
    (old / MANIFEST_FILE).unlink()  # only its config.json says it is a run
    with pytest.raises(ValueError, match="holds a Chorus run"):
        OutputFolder(old)


def test_output_folder_accepts_a_plain_folder_and_its_own_earlier_output(tmp_path: Path) -> None:
    scores = tmp_path / "scores"
    OutputFolder(scores).write_metrics({"accuracy": 0.5})
    # Writing the same --out again is fine: metrics.json alone does not make a run.
    OutputFolder(scores).write_metrics({"accuracy": 0.6})
    (scores / CONFIG_FILE).write_text('{"lr": 0.1}')  # a user's own config: not a run's
    assert not is_run_folder(scores)
    assert json.loads(OutputFolder(scores).write_metrics({"x": 1}).read_text()) == {"x": 1}


def test_overwrite_refuses_a_folder_that_is_not_a_chorus_run(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {
        CONFIG_FILE: '{"learning_rate": 0.1}',
        RECORDS_FILE: '{"id": 1, "note": "my data"}\n',
        REPORT_FILE: "my report",
        METRICS_FILE: "{}",
    }
    for name, text in files.items():
        (mine / name).write_text(text)
    with pytest.raises(RunConfigMismatch, match="is not a Chorus run") as caught:
        RunDir.create(mine, CONFIG, overwrite=True)
    assert "nothing was deleted" in str(caught.value)
    assert {n: (mine / n).read_text() for n in files} == files
    # The lock was released: a second try is refused for the same reason, not as "locked".
    with pytest.raises(RunConfigMismatch, match="is not a Chorus run"):
        RunDir.create(mine, CONFIG, overwrite=True)


def test_overwrite_still_restarts_a_chorus_run_with_or_without_manifest(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "run")
    (run / "notes.txt").write_text("keep")
    RunDir.create(run, CONFIG, overwrite=True).close()
    assert not (run / METRICS_FILE).exists() and (run / "notes.txt").read_text() == "keep"

    old = _finished_run(tmp_path / "old")
    (old / MANIFEST_FILE).unlink()
    RunDir.create(old, CONFIG, overwrite=True).close()
    assert not (old / METRICS_FILE).exists() and not (old / REPORT_FILE).exists()


def test_overwrite_into_an_empty_or_unrelated_folder_starts_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "data.csv").write_text("x")
    RunDir.create(folder, CONFIG, overwrite=True).close()
    assert (folder / CONFIG_FILE).is_file() and (folder / "data.csv").read_text() == "x"


def test_the_run_lock_uses_filelock_not_fcntl() -> None:
    source = Path(chorus_shared.runs.__file__).read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert "filelock" in imported and "fcntl" not in imported


LOCK_HOLDER = textwrap.dedent(
    """
    import sys
    from chorus_shared.runs import RunDir
    run = RunDir.create(sys.argv[1], {"recipe": {"task": "toy"}, "runtime": {}})
    print("locked", flush=True)
    sys.stdin.readline()  # hold the lock until the parent says so
    run.close()
    """
)


def test_another_process_holding_the_lock_refuses_a_writer(tmp_path: Path) -> None:
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match="being written by another process"):
            RunDir.create(run, CONFIG)
        with pytest.raises(RunLockedError):
            RunDir.create(run, CONFIG, overwrite=True)
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    RunDir.create(run, CONFIG).close()  # released when the holder closed the run


def test_two_rundirs_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first = RunDir.create(tmp_path / "run", CONFIG)
    with pytest.raises(RunLockedError):
        RunDir.create(tmp_path / "run", CONFIG)
    first.close()
    RunDir.create(tmp_path / "run", CONFIG).close()
