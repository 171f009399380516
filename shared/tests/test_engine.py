"""The one run engine (chorus_shared.engine): start, resume, errors, readers, fingerprints."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chorus_shared.engine import (
    RunRead,
    check_item_ids,
    errored_record,
    first_error,
    read_run,
    run_item_ids,
    run_items,
    run_windows,
    start_run,
)
from chorus_shared.models.base import Completion
from chorus_shared.runs import (
    CONFIG_FILE,
    RECORDS_FILE,
    RunConfigMismatch,
    RunDir,
    TooManyErrorsError,
)

Record = dict[str, Any]
CONFIG = {"recipe": {"task": "toy", "seed": 0}, "runtime": {"window": 2}}


def _items(n: int) -> list[Record]:
    return [{"id": f"toy-{k}", "x": k} for k in range(n)]


class Worker:
    """A window function factory that records every id it is asked for.

    ``fail``: ids answered with an errored record; ``build_error``: raised by the factory
    (a model that cannot load); ``rewrite``: changes the records a window returns.
    """

    def __init__(
        self,
        fail: set[str] | None = None,
        build_error: Exception | None = None,
        rewrite: Callable[[list[Record]], list[Record]] | None = None,
    ) -> None:
        self.fail = fail or set()
        self.build_error = build_error
        self.rewrite = rewrite
        self.seen: list[str] = []
        self.builds = 0

    def __call__(self) -> Callable[[list[Record]], list[Record]]:
        self.builds += 1
        if self.build_error is not None:
            raise self.build_error

        def run_window(items: list[Record]) -> list[Record]:
            out = []
            for item in items:
                self.seen.append(item["id"])
                if item["id"] in self.fail:
                    out.append(errored_record(item["id"], "HTTP 400 from the server", x=item["x"]))
                else:
                    out.append({"id": item["id"], "y": item["x"] * 2})
            return self.rewrite(out) if self.rewrite else out

        return run_window


def _lines(run: Path) -> list[Record]:
    return [json.loads(line) for line in (run / RECORDS_FILE).read_text().splitlines()]


def test_a_run_stores_item_ids_data_and_one_record_per_item(tmp_path: Path) -> None:
    worker = Worker()
    data = {"toy.jsonl": {"size": 3, "sha256": "ab"}}
    run = run_items(tmp_path / "run", CONFIG, _items(5), worker, window=2, desc="toy", data=data)
    config = json.loads((run.path / CONFIG_FILE).read_text())
    assert config["item_ids"] == [f"toy-{k}" for k in range(5)]
    assert config["data"] == data
    assert [r["id"] for r in _lines(run.path)] == [f"toy-{k}" for k in range(5)]
    assert worker.builds == 1  # the models load once per run, not per window
    assert run_item_ids(RunDir.open(run.path)) == config["item_ids"]


def test_resume_runs_only_the_items_without_a_finished_record(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(4)
    first = Worker()
    run = start_run(out, CONFIG, items)
    run.append({"id": "toy-0", "y": 0})
    run.append({"id": "toy-2", "y": 4})
    run.close()
    run_windows(start_run(out, CONFIG, items), items, first, window=3, desc="toy")
    assert first.seen == ["toy-1", "toy-3"]
    # A third run of the same command finds everything done and builds no model at all.
    again = Worker()
    run_items(out, CONFIG, items, again, window=3, desc="toy")
    assert again.seen == [] and again.builds == 0
    assert sorted(r["id"] for r in _lines(out)) == [f"toy-{k}" for k in range(4)]


def test_errored_items_are_kept_and_retried_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(4)
    run_items(out, CONFIG, items, Worker(fail={"toy-1"}), window=2, desc="toy")
    read = read_run(RunDir.open(out))
    assert [r["id"] for r in read.finished] == ["toy-0", "toy-2", "toy-3"]
    assert [r["id"] for r in read.records.errored] == ["toy-1"]
    assert read.records.errored[0]["error"] == "HTTP 400 from the server"
    assert not read.complete and read.coverage() == "3 of 4 items"

    retry = Worker()
    run_items(out, CONFIG, items, retry, window=2, desc="toy")
    assert retry.seen == ["toy-1"]  # only the errored item is asked for again
    read = read_run(RunDir.open(out))
    assert read.complete and read.records.errored == [] and read.coverage_note() is None
    assert len(_lines(out)) == 5  # the errored line stays on file, superseded by the retry


def test_a_window_that_errored_whole_stops_the_run_and_keeps_it(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(4)
    worker = Worker(fail={"toy-2", "toy-3"})
    with pytest.raises(TooManyErrorsError, match="HTTP 400 from the server"):
        run_items(out, CONFIG, items, worker, window=2, desc="toy")
    # The first window finished, the second errored whole: both are stored, nothing after.
    assert [(r["id"], "error" in r) for r in _lines(out)] == [
        ("toy-0", False),
        ("toy-1", False),
        ("toy-2", True),
        ("toy-3", True),
    ]
    assert (out / CONFIG_FILE).is_file()
    # The lock was released: the same command resumes and retries the errored items.
    retry = Worker()
    run_items(out, CONFIG, items, retry, window=2, desc="toy")
    assert retry.seen == ["toy-2", "toy-3"]


def test_a_run_of_nothing_but_errors_raises_and_keeps_the_reasons(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(3)
    with pytest.raises(TooManyErrorsError):
        run_items(out, CONFIG, items, Worker(fail={i["id"] for i in items}), window=3, desc="t")
    read = read_run(RunDir.open(out))
    assert read.finished == [] and len(read.records.errored) == 3
    assert read.coverage() == "0 of 3 items"


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda rs: rs[:-1], id="drops-an-item"),
        pytest.param(lambda rs: [*rs, {"id": "stranger", "y": 0}], id="adds-an-item"),
        pytest.param(lambda rs: [{**r, "id": "toy-0"} for r in rs], id="repeats-an-id"),
    ],
)
def test_a_worker_returning_other_ids_is_refused(tmp_path: Path, rewrite: Any) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="exactly one record per item"):
        run_items(out, CONFIG, _items(2), Worker(rewrite=rewrite), window=2, desc="toy")
    # Nothing of the refused window was stored, and the empty new run was removed.
    assert not out.exists()


def test_duplicate_item_ids_are_refused_before_any_folder_exists(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "run"
    items = [{"id": "a"}, {"id": "b"}, {"id": "a"}]
    worker = Worker()
    with pytest.raises(ValueError, match="'a' occurs more than once"):
        run_items(out, CONFIG, items, worker, window=2, desc="toy")
    assert not (tmp_path / "deep").exists() and worker.builds == 0


@pytest.mark.parametrize(
    "items, message",
    [
        ([{"x": 1}], "item 0 has no usable 'id'"),
        ([{"id": ""}], "item 0 has no usable 'id'"),
        ([{"id": "a"}, {"id": True}], "item 1 has no usable 'id'"),
        ([{"id": 1}, {"id": "1"}], "'1' occurs more than once"),
    ],
)
def test_unusable_item_ids_are_refused(tmp_path: Path, items: list[Record], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        start_run(tmp_path / "run", CONFIG, items)
    assert not (tmp_path / "run").exists()


def test_check_item_ids_returns_strings() -> None:
    assert check_item_ids([{"id": 3}, {"id": "b"}]) == ["3", "b"]


def test_empty_items_are_refused_before_any_folder_exists(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no items to run"):
        run_items(tmp_path / "run", CONFIG, [], Worker(), window=2, desc="toy")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("window", [0, -3])
def test_a_window_below_one_is_refused_before_any_folder_exists(
    tmp_path: Path, window: int
) -> None:
    with pytest.raises(ValueError, match="window must be >= 1"):
        run_items(tmp_path / "run", CONFIG, _items(2), Worker(), window=window, desc="toy")
    assert not (tmp_path / "run").exists()


def test_a_run_whose_model_cannot_load_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    worker = Worker(build_error=OSError("no such model folder"))
    with pytest.raises(OSError, match="no such model folder"):
        run_items(out, CONFIG, _items(2), worker, window=2, desc="toy")
    assert not (tmp_path / "new").exists()
    # The lock went with it: the same folder can be started again at once.
    run_items(out, CONFIG, _items(2), Worker(), window=2, desc="toy")
    assert len(_lines(out)) == 2


def test_a_resumed_run_is_never_discarded(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(2)
    run = start_run(out, CONFIG, items)
    run.append({"id": "toy-0", "y": 0})
    run.close()
    with pytest.raises(OSError):
        run_items(out, CONFIG, items, Worker(build_error=OSError("x")), window=1, desc="t")
    assert [r["id"] for r in _lines(out)] == ["toy-0"]


def test_a_failure_before_the_first_record_keeps_a_users_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OSError):
        run_items(out, CONFIG, _items(1), Worker(build_error=OSError("x")), window=1, desc="t")
    assert (out / "notes.txt").read_text() == "mine"


def test_a_resume_on_changed_data_is_refused_naming_the_file(tmp_path: Path) -> None:
    out = tmp_path / "run"
    items = _items(2)
    before = {"toy.jsonl": {"size": 10, "sha256": "aaa"}}
    run_items(out, CONFIG, items, Worker(), window=2, desc="toy", data=before)
    after = {"toy.jsonl": {"size": 10, "sha256": "bbb"}}
    worker = Worker()
    with pytest.raises(RunConfigMismatch, match=r"data\.toy\.jsonl\.sha256: 'aaa'"):
        run_items(out, CONFIG, items, worker, window=2, desc="toy", data=after)
    assert worker.builds == 0
    assert json.loads((out / CONFIG_FILE).read_text())["data"] == before


def test_a_resume_on_other_items_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_items(out, CONFIG, _items(2), Worker(), window=2, desc="toy")
    with pytest.raises(RunConfigMismatch, match="item_ids"):
        run_items(out, CONFIG, _items(3), Worker(), window=2, desc="toy")


def test_run_windows_refuses_items_that_are_not_the_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_run(out, CONFIG, _items(2))
    worker = Worker()
    with pytest.raises(ValueError, match="not items of this run"):
        run_windows(run, [*_items(2), {"id": "stranger", "x": 0}], worker, window=2, desc="t")
    assert worker.builds == 0
    # The lock was released and the never-started run removed.
    assert not out.exists()


def _write_lines(path: Path, lines: list[Record | str]) -> None:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    (path / RECORDS_FILE).write_text(text)


def test_read_run_takes_only_the_runs_ids_and_each_id_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_run(out, CONFIG, _items(3))
    run.close()
    _write_lines(
        out,
        [
            {"id": "toy-0", "y": 0},
            {"id": "toy-0", "y": 99},  # a copied line
            {"id": "other-run-7", "y": 1},  # another run's line
            "{not json",
            {"id": "toy-1", "error": "timeout"},
        ],
    )
    read = read_run(RunDir.open(out))
    assert isinstance(read, RunRead)
    assert [(r["id"], r["y"]) for r in read.finished] == [("toy-0", 0)]
    reasons = {s.line: s.reason for s in read.records.skipped}
    assert set(reasons) == {2, 3, 4}
    assert "duplicate id 'toy-0'" in reasons[2]
    assert "'other-run-7' is not an item of this run" in reasons[3]
    assert "not a JSON line" in reasons[4]
    assert read.coverage() == "1 of 3 items" and not read.complete
    note = read.coverage_note()
    assert note is not None and "only 1 of 3 items are finished (2 missing or errored)" in note
    notes = "\n".join(read.notes())
    assert f"{RECORDS_FILE}:2: skipped" in notes and "errored" in notes and note in notes


def test_read_run_with_match_and_required_fields(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = start_run(out, CONFIG, _items(2))
    run.close()
    _write_lines(out, [{"id": "toy-0", "task": "rank", "y": 1}, {"id": "toy-1", "task": "fuse"}])
    read = read_run(RunDir.open(out), required={"y": int}, match={"task": "rank"})
    assert [r["id"] for r in read.finished] == ["toy-0"]
    assert "this run's task is 'rank'" in read.records.skipped[0].reason


def test_read_run_of_a_complete_run_has_no_notes(tmp_path: Path) -> None:
    run = run_items(tmp_path / "run", CONFIG, _items(3), Worker(), window=2, desc="toy")
    read = read_run(RunDir.open(run.path))
    assert read.complete and read.coverage() == "3 of 3 items" and read.notes() == []


def test_read_run_of_an_old_run_without_item_ids_says_so(tmp_path: Path) -> None:
    with RunDir.create(tmp_path / "run", dict(CONFIG)) as run:
        run.append({"id": "a", "y": 1})
        run.append({"id": "b", "y": 2})
    read = read_run(RunDir.open(tmp_path / "run"))
    assert read.expected is None and read.complete and read.coverage() == "2 items"
    assert any("lists no item_ids" in note for note in read.notes())


def test_a_damaged_item_ids_value_is_one_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    start_run(out, CONFIG, _items(1)).close()
    config = json.loads((out / CONFIG_FILE).read_text())
    config["item_ids"] = [1, 2]
    (out / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'item_ids' should be a list of strings"):
        read_run(RunDir.open(out))


def test_first_error_names_the_first_failed_reply() -> None:
    ok = Completion("fine")
    assert first_error([ok, ok]) is None
    failed = Completion("", finish_reason="error", error="HTTP 500 from http://host/v1")
    assert first_error([ok, failed, Completion("", error="later")]) == (
        "HTTP 500 from http://host/v1"
    )
    # An error finish without a reason still counts as an error, never as an answer.
    assert first_error([Completion("", finish_reason="error")]) is not None


def test_errored_record_keeps_the_context_and_needs_a_reason() -> None:
    record = errored_record("q-1", "timeout", question="2+2")
    assert record == {"id": "q-1", "question": "2+2", "error": "timeout"}
    with pytest.raises(ValueError, match="needs a reason"):
        errored_record("q-1", "")
