"""Run folders under hostile use: concurrent writers, bad records, failures, secrets (issue 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_shared.runs import (
    CONFIG_FILE,
    RECORDS_FILE,
    OutputFolder,
    RunDir,
    RunLockedError,
    TooManyErrorsError,
    pending,
)

CONFIG = {"recipe": {"task": "gsm", "method": "debate"}, "runtime": {"window": 2}}


# -- one writer, overwrite deletes only what the run wrote ----------------------------------


def test_second_writer_refused_at_create_not_at_first_append(tmp_path: Path) -> None:
    with (
        RunDir.create(tmp_path, CONFIG),
        pytest.raises(RunLockedError, match="being written by another process"),
    ):
        RunDir.create(tmp_path, CONFIG)


def test_overwrite_refused_while_another_writer_holds_the_folder(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as first:
        first.append({"id": "a", "answer": 1})
        with pytest.raises(RunLockedError):
            RunDir.create(tmp_path, CONFIG, overwrite=True)
        first.append({"id": "b", "answer": 2})
    # Nothing of the first writer's run was deleted.
    assert [r["id"] for r in RunDir.open(tmp_path).records()] == ["a", "b"]


def test_overwrite_keeps_a_users_png(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.figure_path("accuracy").write_bytes(b"ours")
    (tmp_path / "diagram.png").write_bytes(b"theirs")
    with RunDir.create(tmp_path, CONFIG, overwrite=True):
        pass
    assert (tmp_path / "diagram.png").read_bytes() == b"theirs"
    assert not (tmp_path / "accuracy.png").exists()


def test_discard_if_empty_leaves_no_new_folder(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "debate" / "gsm"
    run = RunDir.create(target, CONFIG)
    assert run.discard_if_empty()
    assert not (tmp_path / "runs").exists()


def test_discard_if_empty_keeps_a_resumed_run(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append({"id": "a"})
    again = RunDir.create(tmp_path, CONFIG)
    assert not again.discard_if_empty()
    assert (tmp_path / CONFIG_FILE).is_file() and (tmp_path / RECORDS_FILE).is_file()


def test_failed_with_block_discards_its_new_empty_run(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "x" / "y"
    with pytest.raises(OSError, match="model did not load"), RunDir.create(target, CONFIG):
        raise OSError("model did not load")
    assert not (tmp_path / "runs").exists()


def test_failed_with_block_keeps_a_run_with_records(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), RunDir.create(tmp_path / "run", CONFIG) as run:
        run.append({"id": "a"})
        raise RuntimeError("crash after the first item")
    assert [r["id"] for r in RunDir.open(tmp_path / "run").records()] == ["a"]


def test_failed_with_block_keeps_a_resumed_run(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG).close()  # an earlier run, nothing appended yet
    with pytest.raises(RuntimeError), RunDir.create(tmp_path, CONFIG):
        raise RuntimeError("model did not load")
    assert (tmp_path / CONFIG_FILE).is_file()


@pytest.mark.parametrize("foreign", ["file", "folder"])
def test_discard_keeps_everything_when_the_folder_holds_foreign_files(
    tmp_path: Path, foreign: str
) -> None:
    target = tmp_path / "run"
    with pytest.raises(RuntimeError), RunDir.create(target, CONFIG):
        if foreign == "file":
            (target / "notes.txt").write_text("mine")
        else:
            (target / "checkpoints" / "step-1").mkdir(parents=True)
        raise RuntimeError("failed after writing a checkpoint")
    assert (target / CONFIG_FILE).is_file() and (target / "manifest.json").is_file()
    assert (target / "notes.txt").is_file() or (target / "checkpoints" / "step-1").is_dir()
    run = RunDir.create(target, CONFIG)  # still resumable
    assert not run.discard_if_empty()
    assert (target / CONFIG_FILE).is_file()


def test_overwrite_into_a_users_folder_then_failure_keeps_the_users_files(tmp_path: Path) -> None:
    (tmp_path / "diagram.png").write_bytes(b"theirs")
    with pytest.raises(RuntimeError), RunDir.create(tmp_path, CONFIG, overwrite=True):
        raise RuntimeError("model did not load")
    assert (tmp_path / "diagram.png").read_bytes() == b"theirs"
    assert (tmp_path / CONFIG_FILE).is_file()


def test_discard_leaves_pre_existing_parent_folders(tmp_path: Path) -> None:
    parent = tmp_path / "runs"
    parent.mkdir()
    (parent / "other").mkdir()
    target = parent / "a" / "b"
    with pytest.raises(RuntimeError), RunDir.create(target, CONFIG):
        raise RuntimeError("bad spec")
    assert not (parent / "a").exists()
    assert parent.is_dir() and (parent / "other").is_dir()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError), RunDir.create(existing, CONFIG):
        raise RuntimeError("bad spec")
    assert existing.is_dir() and not any(existing.iterdir())


def test_discard_if_empty_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "run"
    run = RunDir.create(target, CONFIG)
    assert run.discard_if_empty()
    target.mkdir()  # someone reuses the path afterwards: a second call must not touch it
    (target / CONFIG_FILE).write_text("{}")
    assert run.discard_if_empty()
    with run:
        pass
    assert (target / CONFIG_FILE).read_text() == "{}"


def test_successful_with_block_keeps_an_empty_run(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run", CONFIG):
        pass
    assert (tmp_path / "run" / CONFIG_FILE).is_file()


# -- validated reading ----------------------------------------------------------------------


def _write_lines(folder: Path, lines: list[str], tail: str = "") -> RunDir:
    RunDir.create(folder, CONFIG).close()
    (folder / RECORDS_FILE).write_text("".join(line + "\n" for line in lines) + tail)
    return RunDir.open(folder)


def test_read_records_counts_a_duplicated_id_once(tmp_path: Path) -> None:
    good = json.dumps({"id": "q1", "task": "gsm", "answer": "3"})
    run = _write_lines(
        tmp_path, [good, good, json.dumps({"id": "q2", "task": "gsm", "answer": "4"})]
    )
    read = run.read_records(match={"task": "gsm"}, required={"answer": str})
    assert [r["id"] for r in read.finished] == ["q1", "q2"]
    assert [s.line for s in read.skipped] == [2]
    assert "duplicate id" in read.skipped[0].reason


def test_read_records_skips_other_tasks_missing_keys_and_wrong_types(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "q1", "task": "mmlu", "answer": "A"}),
        json.dumps({"id": "q2", "task": "gsm"}),
        json.dumps({"id": "q3", "task": "gsm", "answer": 5}),
        json.dumps({"id": "q4", "task": "gsm", "answer": "7"}),
        "[1, 2]",
        "not json",
    ]
    run = _write_lines(tmp_path, lines)
    read = run.read_records(match={"task": "gsm"}, required={"answer": str})
    assert [r["id"] for r in read.finished] == ["q4"]
    reasons = {s.line: s.reason for s in read.skipped}
    assert set(reasons) == {1, 2, 3, 5, 6}
    assert "task='mmlu'" in reasons[1] and "no 'answer'" in reasons[2]
    assert "should be str" in reasons[3]
    notes = "\n".join(read.notes())
    assert f"{RECORDS_FILE}:1: skipped" in notes


def test_read_records_reports_a_torn_last_line(tmp_path: Path) -> None:
    run = _write_lines(tmp_path, [json.dumps({"id": "a"})], tail='{"id": "b", "ans')
    read = run.read_records()
    assert [r["id"] for r in read.finished] == ["a"]
    assert read.torn_bytes == len('{"id": "b", "ans')
    assert any("unterminated last line" in n for n in read.notes())


def test_read_records_only_known_ids(tmp_path: Path) -> None:
    run = _write_lines(tmp_path, [json.dumps({"id": "a"}), json.dumps({"id": "zz"})])
    read = run.read_records(ids={"a", "b"})
    assert [r["id"] for r in read.finished] == ["a"]
    assert "not an item of this run" in read.skipped[0].reason


def test_a_record_rejected_after_reading_keeps_its_true_line(tmp_path: Path) -> None:
    lines = [json.dumps({"id": k, "answer": a}) for k, a in (("a", "1"), ("b", "x"), ("c", "3"))]
    run = _write_lines(tmp_path, ["", *lines])  # a blank first line still counts as line 1
    read = run.read_records(required={"answer": str})
    assert [read.line_of(r) for r in read.finished] == [2, 3, 4]
    read.skip(read.finished[1], "answer is not a number")  # a package's own later check
    assert [r["id"] for r in read.finished] == ["a", "c"]
    assert [(s.line, s.reason) for s in read.skipped] == [(3, "answer is not a number")]
    assert f"{RECORDS_FILE}:3: skipped: answer is not a number" in "\n".join(read.notes())


def test_output_folder_takes_derived_files_and_never_a_lock(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "a" / "b")
    assert folder.write_metrics({"accuracy": 0.5}).read_text().startswith("{")
    report = folder.write_report("see http://user:secret@host/v1")
    assert "secret" not in report.read_text() and report.read_text().endswith("\n")
    assert folder.figure_path("plot") == tmp_path / "a" / "b" / "plot.png"
    assert sorted(p.name for p in folder.path.iterdir()) == ["metrics.json", "report.md"]
    with pytest.raises(ValueError, match="plain file name"):
        folder.figure_path("../escape.png")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        OutputFolder(tmp_path / "file")


def test_config_value_on_an_empty_config_is_one_clear_error(tmp_path: Path) -> None:
    RunDir.create(tmp_path, CONFIG).close()
    (tmp_path / CONFIG_FILE).write_text("{}")
    with pytest.raises(ValueError, match=r"config.json has no 'recipe.task'"):
        RunDir.open(tmp_path).config_value("recipe.task", str)


def test_open_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file, not a run folder"):
        RunDir.open(tmp_path / "x.jsonl")


# -- errored items --------------------------------------------------------------------------


def test_errored_items_are_not_done_and_a_retry_supersedes_them(tmp_path: Path) -> None:
    items = [{"id": "a"}, {"id": "b"}]
    with RunDir.create(tmp_path, CONFIG) as run:
        run.append_many([{"id": "a", "answer": "1"}, {"id": "b", "error": "HTTP 500 at x"}])
        assert run.finished_ids() == {"a"}
        assert [i["id"] for i in pending(items, run)] == ["b"]
    with RunDir.create(tmp_path, CONFIG) as run:
        assert [i["id"] for i in pending(items, run)] == ["b"]
        run.append({"id": "b", "answer": "2"})
        with pytest.raises(ValueError, match="already finished"):
            run.append({"id": "b", "answer": "2"})
    read = RunDir.open(tmp_path).read_records(required={"answer": str})
    assert [r["id"] for r in read.finished] == ["a", "b"]
    assert read.errored == [] and read.skipped == []


def test_a_window_that_all_failed_stops_the_run_with_the_reason(tmp_path: Path) -> None:
    with (
        RunDir.create(tmp_path, CONFIG) as run,
        pytest.raises(TooManyErrorsError, match=r"all 2 items.*http://127.0.0.1:9/v1: HTTP 400"),
    ):
        run.append_many(
            [
                {"id": "a", "error": "http://127.0.0.1:9/v1: HTTP 400 Bad Request"},
                {"id": "b", "error": "http://127.0.0.1:9/v1: HTTP 400 Bad Request"},
            ]
        )
    read = RunDir.open(tmp_path).read_records()
    assert [r["id"] for r in read.errored] == ["a", "b"]  # kept, with their reason
    assert read.finished == []


def test_max_errors_caps_scattered_failures(tmp_path: Path) -> None:
    with RunDir.create(tmp_path, CONFIG, max_errors=2) as run:
        run.append_many([{"id": "a", "error": "boom"}, {"id": "b"}])
        with pytest.raises(TooManyErrorsError, match=r"2 items failed \(limit 2\)"):
            run.append_many([{"id": "c", "error": "boom"}, {"id": "d"}])


# -- secrets --------------------------------------------------------------------------------


def test_credentials_in_urls_never_reach_the_folder(tmp_path: Path) -> None:
    secret = "s3cr3t-pass"
    spec = f"openai:m@http://alice:{secret}@127.0.0.1:8000/v1"
    with RunDir.create(tmp_path, {"recipe": {"model": [spec]}}) as run:
        run.append({"id": "a", "agents": [{"model": spec}], "error": f"{spec}: HTTP 500"})
        run.write_metrics({"models": [spec]})
        run.write_report(f"model {spec}")
    for file in tmp_path.iterdir():
        text = file.read_text(encoding="utf-8")
        assert secret not in text and "alice" not in text, file.name
    assert RunDir.open(tmp_path).config["recipe"]["model"] == ["openai:m@http://127.0.0.1:8000/v1"]
    # A resume with the same (secret-bearing) spec matches the stored, redacted config.
    RunDir.create(tmp_path, {"recipe": {"model": [spec]}}).close()
