"""Tests for chorus_shared.runs: resumable, kill-safe run directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chorus_shared.runs import (
    CONFIG_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    RECORDS_FILE,
    RunConfigMismatch,
    RunDir,
    environment_info,
    pending,
    progress,
)

SHARED_SRC = Path(__file__).resolve().parents[1] / "src"
CONFIG = {"model": "default", "agents": 3, "rounds": 2, "limit": 10, "data": {"split": "test"}}


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SHARED_SRC), env.get("PYTHONPATH")]))
    env["CHORUS_NO_PROGRESS"] = "1"
    return env


# -- records ---------------------------------------------------------------------------------


def test_append_records_finished_ids_round_trip(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run", CONFIG) as run:
        run.append({"id": "a", "answer": "12", "text": "café ∑"})
        run.append({"id": 7, "answer": None})
        assert run.finished_ids() == {"a", "7"}
        assert [r["id"] for r in run.records()] == ["a", 7]

    reopened = RunDir.open(tmp_path / "run")
    assert reopened.records() == [
        {"id": "a", "answer": "12", "text": "café ∑"},
        {"id": 7, "answer": None},
    ]
    assert reopened.finished_ids() == {"a", "7"}
    raw = (tmp_path / "run" / RECORDS_FILE).read_text(encoding="utf-8")
    assert "café ∑" in raw  # ensure_ascii=False keeps the file readable
    assert raw.endswith("\n") and raw.count("\n") == 2


def test_duplicate_id_refused(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "q1"})
        with pytest.raises(ValueError, match="already"):
            run.append({"id": "q1", "again": True})
    # An int id and its string spelling are the same item.
    with RunDir.open(tmp_path) as run, pytest.raises(ValueError, match="already"):
        run.append({"id": 5})
        run.append({"id": "5"})
    assert [r["id"] for r in RunDir.open(tmp_path).records()] == ["q1", 5]


def test_missing_or_bad_id_refused(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        with pytest.raises(ValueError, match="'id'"):
            run.append({"answer": 3})
        with pytest.raises(ValueError, match="str or int"):
            run.append({"id": None})
        with pytest.raises(TypeError, match="JSON"):
            run.append({"id": "x", "value": object()})
    # Nothing half-written by the refused appends.
    assert RunDir.open(tmp_path).records() == []


def test_records_of_fresh_run_are_empty(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "new", CONFIG)
    assert run.records() == []
    assert run.finished_ids() == set()


# -- resume ----------------------------------------------------------------------------------


def test_same_config_resumes_and_keeps_records(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "1"})
        run.append({"id": "2"})
        first_env = run.config["environment"]

    # A tuple where the first run had a list is the same config once stored as JSON.
    again = dict(CONFIG, extra=(1, 2))
    with RunDir.create(tmp_path / "other", again):
        pass
    with RunDir.create(tmp_path / "other", dict(CONFIG, extra=[1, 2])):
        pass

    with RunDir.create(tmp_path, dict(CONFIG)) as run:
        assert run.finished_ids() == {"1", "2"}
        assert run.config["environment"] == first_env
        items = [{"id": str(i)} for i in range(1, 5)]
        assert [item["id"] for item in pending(items, run)] == ["3", "4"]
        run.append({"id": "3"})
    assert RunDir.open(tmp_path).finished_ids() == {"1", "2", "3"}


def test_config_from_open_can_be_passed_back(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG)
    stored = RunDir.open(tmp_path).config
    assert "environment" in stored
    RunDir.create(tmp_path, stored)  # its stale environment block is ignored


def test_different_config_raises_mismatch_naming_keys(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "x"})
    changed = dict(CONFIG, limit=20, data={"split": "train"})
    with pytest.raises(RunConfigMismatch) as info:
        RunDir.create(tmp_path, changed)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "limit: 10 (stored) -> 20 (now)" in message
    assert "data.split: 'test' (stored) -> 'train' (now)" in message
    assert "agents" not in message
    assert "--overwrite" in message and "new output folder" in message
    # The refused attempt touched nothing.
    assert RunDir.open(tmp_path).finished_ids() == {"x"}
    assert RunDir.open(tmp_path).config["limit"] == 10


def test_added_key_is_a_mismatch(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG)
    with pytest.raises(RunConfigMismatch, match=r"seed: '<absent>' \(stored\) -> 0"):
        RunDir.create(tmp_path, dict(CONFIG, seed=0))


def test_overwrite_clears_old_run(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "old"})
        run.write_metrics({"accuracy": 0.5})
        run.write_report("# old")
        run.figure_path("curve").write_bytes(b"png")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "my_own_plot.png").write_bytes(b"user png")

    with RunDir.create(tmp_path, dict(CONFIG, limit=99), overwrite=True) as run:
        assert run.records() == []
        assert run.config["limit"] == 99
        run.append({"id": "old"})  # the id is free again
    names = sorted(p.name for p in tmp_path.iterdir())
    # The run's own plot went; the user's PNG and notes stayed.
    assert names == [
        LOCK_FILE,
        CONFIG_FILE,
        MANIFEST_FILE,
        "my_own_plot.png",
        "notes.txt",
        RECORDS_FILE,
    ]


def test_records_without_config_refused(tmp_path: Path) -> None:
    (tmp_path / RECORDS_FILE).write_text('{"id": "1"}\n')
    with pytest.raises(RunConfigMismatch, match=r"no config\.json"):
        RunDir.create(tmp_path, CONFIG)


def test_open_missing_run_names_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RunDir.open(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing") as info:
        RunDir.open(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_create_on_a_file_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(NotADirectoryError):
        RunDir.create(target, CONFIG)


# -- crash safety ----------------------------------------------------------------------------


def test_partial_last_line_ignored_and_repaired(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "0", "v": 0})
        run.append({"id": "1", "v": 1})
    records_file = tmp_path / RECORDS_FILE
    # What a kill in the middle of a write leaves behind.
    with open(records_file, "ab") as handle:
        handle.write(b'{"id": "2", "v": 2, "text": "half of a rec')

    run = RunDir.open(tmp_path)
    assert [r["id"] for r in run.records()] == ["0", "1"]
    assert run.finished_ids() == {"0", "1"}
    items = [{"id": str(i)} for i in range(4)]
    for item in pending(items, run):
        run.append({"id": item["id"], "v": int(item["id"])})
    run.close()

    lines = records_file.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["0", "1", "2", "3"]
    assert records_file.read_bytes().endswith(b"\n")


def test_partial_only_line(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG)
    (tmp_path / RECORDS_FILE).write_bytes(b'{"id": "a"')
    with RunDir.open(tmp_path) as run:
        assert run.records() == []
        run.append({"id": "a"})
    assert (tmp_path / RECORDS_FILE).read_text() == '{"id": "a"}\n'


def test_corrupted_middle_line_is_a_clear_error(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG)
    (tmp_path / RECORDS_FILE).write_text('{"id": "a"}\n{"id": oops}\n{"id": "c"}\n')
    run = RunDir.open(tmp_path)
    with pytest.raises(ValueError, match=rf"{RECORDS_FILE}:2: corrupted"):
        run.records()
    with pytest.raises(ValueError, match=":2:"):
        run.append({"id": "d"})


def test_second_writer_is_refused_until_first_closes(tmp_path: Path) -> None:
    first = RunDir.create(tmp_path, CONFIG)
    first.append({"id": "1"})
    second = RunDir.open(tmp_path)
    with pytest.raises(RuntimeError, match="another process"):
        second.append({"id": "2"})
    first.close()
    second.append({"id": "2"})
    second.close()
    assert RunDir.open(tmp_path).finished_ids() == {"1", "2"}


CHILD = textwrap.dedent(
    """
    import sys, time
    from chorus_shared.runs import RunDir, pending

    run = RunDir.create(sys.argv[1], {"task": "kill-test", "n": int(sys.argv[2])})
    items = [{"id": str(i)} for i in range(int(sys.argv[2]))]
    for item in pending(items, run):
        run.append({"id": item["id"], "payload": "x" * 2000})
        print(item["id"], flush=True)
        time.sleep(0.002)
    """
)


def test_sigkill_loses_nothing_and_resume_completes(tmp_path: Path) -> None:
    n_items, kill_after = 500, 25
    run_path = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run_path), str(n_items)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    reported: list[str] = []
    try:
        assert child.stdout is not None
        while len(reported) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            reported.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
        rest, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert len(reported) >= kill_after, f"child stopped early: {err}"
    assert child.returncode == -signal.SIGKILL
    # Lines printed after the ones we read, before the kill landed, count as reported too.
    reported += rest.split()
    assert len(reported) < n_items, "child finished before it could be killed"

    run = RunDir.create(run_path, {"task": "kill-test", "n": n_items})
    ids = [r["id"] for r in run.records()]
    assert len(ids) == len(set(ids))
    assert set(reported) <= set(ids)
    # Items are processed in order, so the survivors are a prefix of the item list.
    assert ids == [str(i) for i in range(len(ids))]

    items = [{"id": str(i)} for i in range(n_items)]
    todo = pending(items, run)
    assert len(todo) == n_items - len(ids)
    for item in todo:
        run.append({"id": item["id"], "payload": "resumed"})
    run.close()

    final = [r["id"] for r in RunDir.open(run_path).records()]
    assert sorted(final, key=int) == [str(i) for i in range(n_items)]
    assert len(final) == len(set(final))


# -- metrics, report, figures ----------------------------------------------------------------


def test_metrics_report_and_figure_paths(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, CONFIG)
    path = run.write_metrics({"accuracy": 0.75, "by_round": [0.5, 0.75], "path": tmp_path})
    assert path == tmp_path / "metrics.json"
    assert run.read_metrics() == {
        "accuracy": 0.75,
        "by_round": [0.5, 0.75],
        "path": str(tmp_path),
    }
    run.write_metrics({"accuracy": 0.8})
    assert run.read_metrics() == {"accuracy": 0.8}

    report = run.write_report("# Results\n\nαβ")
    assert report.read_text(encoding="utf-8") == "# Results\n\nαβ\n"

    assert run.figure_path("accuracy_by_round") == tmp_path / "accuracy_by_round.png"
    assert run.figure_path("plot.svg") == tmp_path / "plot.svg"
    for bad in ["../escape", "a/b", "", ".."]:
        with pytest.raises(ValueError):
            run.figure_path(bad)
    # Atomic writes leave no temporary files behind.
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_read_metrics_before_writing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metrics"):
        RunDir.create(tmp_path, CONFIG).read_metrics()


def test_config_json_contents(tmp_path: Path) -> None:
    RunDir.create(tmp_path, {"model": "default", "output": tmp_path / "x", "tags": ("a",)})
    stored = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert stored["model"] == "default"
    assert stored["output"] == str(tmp_path / "x")
    assert stored["tags"] == ["a"]
    assert list(stored)[-1] == "environment"


# -- pending ---------------------------------------------------------------------------------


def test_pending_keeps_order_and_checks_items(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, CONFIG)
    run.append({"id": "b"})
    run.append({"id": 3})
    items = [{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "3"}, {"id": 4}]
    assert pending(items, run) == [{"id": "a"}, {"id": "c"}, {"id": 4}]
    with pytest.raises(ValueError, match="item 1 has no 'id'"):
        pending([{"id": "a"}, {"question": "?"}], run)
    with pytest.raises(ValueError, match="more than once"):
        pending([{"id": "z"}, {"id": "z"}], run)
    run.close()


# -- environment and progress ----------------------------------------------------------------


def test_environment_info_has_no_secrets_and_no_torch_import(tmp_path: Path) -> None:
    secret = "sk-test-do-not-store-0123456789"
    script = textwrap.dedent(
        """
        import json, sys
        from chorus_shared.runs import environment_info
        info = environment_info()
        print(json.dumps({"info": info, "torch_imported": "torch" in sys.modules}))
        """
    )
    env = _child_env() | {"OPENAI_API_KEY": secret, "HF_TOKEN": secret}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(out.stdout)
    info = result["info"]
    assert result["torch_imported"] is False
    assert info["cuda_devices"] is None  # unknown: torch was not imported
    text = json.dumps(info)
    assert secret not in text
    hostname = os.uname().nodename
    if len(hostname) >= 6:  # a very short host name could match by chance
        assert hostname not in text
    assert {"python", "platform", "packages", "git_commit", "cpu_count"} <= set(info)
    assert info["packages"]["chorus-shared"]
    assert {"torch", "transformers", "vllm", "openai"} <= set(info["packages"])


def test_environment_info_in_process_is_json() -> None:
    info = environment_info()
    assert json.loads(json.dumps(info)) == info
    commit = info["git_commit"]
    assert commit is None or len(commit) == 40


def test_progress_yields_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORUS_NO_PROGRESS", "1")
    assert list(progress(range(5), desc="x")) == [0, 1, 2, 3, 4]
    monkeypatch.delenv("CHORUS_NO_PROGRESS")
    assert list(progress(iter("abc"), total=3)) == ["a", "b", "c"]


def test_progress_draws_on_stderr_when_enabled(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CHORUS_NO_PROGRESS", raising=False)
    for _ in progress(range(3), desc="items"):
        time.sleep(0)
    captured = capsys.readouterr()
    assert "items" in captured.err
    assert captured.out == ""
