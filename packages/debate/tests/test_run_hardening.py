"""The debate CLI on hostile input: locks, bad data dirs, bad models, damaged runs (issue 5, 13)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from chorus_debate.cli import main
from chorus_shared.runs import RunDir
from chorus_shared.testing import FakeOpenAIServer


def _gsm_dir(root: Path, answer: int = 9) -> Path:
    rows = [{"question": f"Question {k}?", "answer": f"work\n#### {answer + k}"} for k in range(3)]
    file = root / "gsm8k" / "test.jsonl"
    file.parent.mkdir(parents=True)
    file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def _gen(server: FakeOpenAIServer, out: Path, *extra: str, task: str = "arithmetic") -> int:
    return main(
        [
            "generate", "--task", task, "--method", "single", "--limit", "2",
            "--model", f"openai:fake@{server.base_url}", "--out", str(out), *extra,
        ]
    )  # fmt: skip


def _records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]


def test_second_writer_is_refused_before_any_request(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        assert _gen(server, out) == 0
        with RunDir.create(out, RunDir.open(out).config):  # another process writing
            n = len(server.requests)
            assert _gen(server, out, "--overwrite") == 2
            assert len(server.requests) == n  # no compute spent
    assert "being written by another process" in capsys.readouterr().err
    assert len(_records(out)) == 2  # --overwrite deleted nothing


def test_missing_data_dir_is_one_error_and_no_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        code = _gen(server, out, "--data-dir", str(tmp_path / "nonexistent"), task="gsm")
    err = capsys.readouterr().err
    assert code == 2 and err.count("chorus-debate: error:") == 1
    assert "nonexistent" in err and "--data-dir" in err
    assert not out.exists()


def test_data_dir_without_the_tasks_files_is_an_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    with FakeOpenAIServer() as server:
        code = _gen(server, tmp_path / "run", "--data-dir", str(tmp_path / "empty"), task="gsm")
    assert code == 2 and "gsm8k" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_env_data_dir_that_does_not_exist_is_an_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CHORUS_DATA_DIR", str(tmp_path / "nope"))
    with FakeOpenAIServer() as server:
        assert _gen(server, tmp_path / "run", task="gsm") == 2
    assert "CHORUS_DATA_DIR" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_model_that_cannot_load_leaves_no_run_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs" / "new"
    code = main(
        [
            "generate", "--task", "arithmetic", "--method", "single", "--limit", "1",
            "--model", f"hf:{tmp_path / 'no-such-model'}", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 2
    assert "chorus-debate: error:" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_resume_on_different_data_is_refused(tmp_path: Path, capsys) -> None:
    first, second = _gsm_dir(tmp_path / "a"), _gsm_dir(tmp_path / "b", answer=50)
    same = _gsm_dir(tmp_path / "c")
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        assert _gen(server, out, "--data-dir", str(first), task="gsm") == 0
        # The same files in another folder: a runtime change, accepted.
        assert _gen(server, out, "--data-dir", str(same), task="gsm") == 0
        capsys.readouterr()
        assert _gen(server, out, "--data-dir", str(second), task="gsm") == 2
    err = capsys.readouterr().err
    assert "data.gsm8k/test.jsonl" in err and "different config" in err
    assert {r["target"] for r in _records(out)} <= {9.0, 10.0, 11.0}


@pytest.mark.parametrize("userinfo", ["me:pa55word-xyz", "alice:s3cr3t@pa55@w0rd-xyz"])
def test_credentials_in_the_model_url_are_not_stored(
    tmp_path: Path, userinfo: str, capsys, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer() as server, caplog.at_level("DEBUG"):
        url = server.base_url.replace("http://", f"http://{userinfo}@")
        code = main(
            [
                "generate", "--task", "arithmetic", "--method", "single", "--limit", "1",
                "--model", f"openai:fake@{url}", "--out", str(out),
            ]
        )  # fmt: skip
        # A refused resume prints both configs: the console must not show the password.
        assert main(["generate", "--task", "arithmetic", "--method", "single", "--limit",
                     "2", "--model", f"openai:fake@{url}", "--out", str(out)]) == 2  # fmt: skip
    assert code == 0
    secret = userinfo.split(":", 1)[1]  # every piece of it, also after an '@' inside it
    pieces = [secret, *secret.split("@")]
    captured = capsys.readouterr()
    for name, text in [("stdout", captured.out), ("stderr", captured.err), ("log", caplog.text)]:
        assert not any(p in text for p in pieces), name
    assert "stored" in captured.err  # the mismatch message was printed
    for file in out.iterdir():
        if file.is_file():
            assert not any(p.encode() in file.read_bytes() for p in pieces), file.name


# -- evaluate on damaged runs ----------------------------------------------------------------


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    with FakeOpenAIServer(lambda body: "The final answer is 7") as server:
        assert _gen(server, out) == 0
    return out


def test_duplicated_id_is_counted_once(finished_run: Path, capsys) -> None:
    lines = (finished_run / "records.jsonl").read_text().splitlines()
    (finished_run / "records.jsonl").write_text("\n".join([*lines, lines[0]]) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "over 2 of 2 items" in captured.out
    assert "duplicate id" in captured.err and "records.jsonl:3" in captured.err


def test_records_of_another_task_are_not_graded(finished_run: Path, capsys) -> None:
    records = _records(finished_run)
    alien = dict(records[0], id="gsm8k-test-1", task="gsm")
    with (finished_run / "records.jsonl").open("a") as fh:
        fh.write(json.dumps(alien) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "over 2 of 2 items" in captured.out and "task='gsm'" in captured.err


@pytest.mark.parametrize(
    "damage",
    [
        lambda r: r.pop("agents"),
        lambda r: r.update(agents="oops"),
        lambda r: r.update(agents=[{"model": "m", "messages": 5}]),
        lambda r: r.update(usage={"prompt_tokens": "many"}),
    ],
    ids=["missing-key", "wrong-type", "bad-messages", "bad-usage"],
)
def test_a_malformed_record_is_a_counted_skip(finished_run: Path, capsys, damage) -> None:
    records = _records(finished_run)
    damage(records[1])
    (finished_run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "over 1 of 2 items" in captured.out and "skipped records 1" in captured.out
    # An incomplete run says so: the score covers the finished items alone.
    assert "only 1 of 2 items are finished" in captured.err
    assert "Traceback" not in captured.err
    # The true line of the damaged record, also for the shape checks made after reading.
    assert "records.jsonl:2: skipped" in captured.err and "records.jsonl:0:" not in captured.err


def test_a_record_whose_id_is_not_an_item_of_the_run_is_a_counted_skip(
    finished_run: Path, capsys
) -> None:
    # Same task and method, but an item this run was never asked (e.g. pasted from a run
    # with a larger --limit): it must not be graded into this run's accuracy.
    records = _records(finished_run)
    foreign = dict(records[0], id="arithmetic-planted")
    with (finished_run / "records.jsonl").open("a") as fh:
        fh.write(json.dumps(foreign) + "\n")
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "over 2 of 2 items" in captured.out and "skipped records 1" in captured.out
    assert "records.jsonl:3: skipped: id 'arithmetic-planted' is not an item of this run" in (
        captured.err
    )


def test_stored_grades_of_an_old_run_are_ignored(finished_run: Path, capsys) -> None:
    # Runs made before typed records also stored answers, final and correct. They read fine,
    # and only the stored replies count: a stored "correct": true cannot lift the accuracy.
    records = _records(finished_run)
    for rec in records:
        assert "correct" not in rec and "answers" not in rec
        rec.update(answers=[[rec["target"]]], final=rec["target"], correct=True, unparseable=[0])
    (finished_run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy 0.0 ± 0.0 % over 2 of 2 items" in out and "skipped records 0" in out


def test_a_run_made_before_item_ids_still_evaluates_and_says_so(finished_run: Path, capsys) -> None:
    config = json.loads((finished_run / "config.json").read_text())
    del config["item_ids"]
    (finished_run / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "over 2 items" in captured.out and "lists no item_ids" in captured.err


def test_empty_config_is_one_clear_error(finished_run: Path, capsys) -> None:
    (finished_run / "config.json").write_text("{}")
    assert main(["evaluate", str(finished_run)]) == 2
    err = capsys.readouterr().err
    assert "config.json has no 'recipe.task'" in err


def test_evaluate_of_a_file_says_it_is_a_file(finished_run: Path, capsys) -> None:
    assert main(["evaluate", str(finished_run / "records.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a run folder" in err and "does not exist" not in err


def test_evaluate_reports_a_torn_last_line(finished_run: Path, capsys) -> None:
    with (finished_run / "records.jsonl").open("a") as fh:
        fh.write('{"id": "arithmetic-9-9", "ag')
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    assert "unterminated last line" in capsys.readouterr().err


def test_evaluate_on_a_read_only_run_prints_instead(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(RunDir, "write_metrics", refuse)
    before = (finished_run / "metrics.json").read_text()
    capsys.readouterr()
    assert main(["evaluate", str(finished_run)]) == 0
    captured = capsys.readouterr()
    assert "Read-only file system" in captured.err
    assert json.loads(captured.out[: captured.out.rindex("}") + 1])["items"] == 2
    assert (finished_run / "metrics.json").read_text() == before


def test_evaluate_out_writes_metrics_and_report_elsewhere(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    # The run folder cannot be written at all: --out must not even try.
    monkeypatch.setattr(RunDir, "write_metrics", refuse)
    monkeypatch.setattr(RunDir, "write_report", refuse)
    monkeypatch.setattr(RunDir, "figure_path", refuse)
    before = sorted(p.name for p in finished_run.iterdir())
    out = tmp_path / "scores" / "g2"
    assert main(["evaluate", str(finished_run), "--out", str(out)]) == 0
    assert "Read-only" not in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["items"] == 2
    report = (out / "report.md").read_text()
    assert "accuracy_vs_round.png" in report and (out / "accuracy_vs_round.png").is_file()
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_evaluate_on_a_read_only_run_suggests_out(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(RunDir, "write_metrics", refuse)
    assert main(["evaluate", str(finished_run)]) == 0
    assert "pass --out DIR" in capsys.readouterr().err


def test_report_does_not_write_into_the_runs_it_reads(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(RunDir, "write_metrics", refuse)
    assert main(["report", str(finished_run)]) == 0


def test_ends_in_loop_tells_a_repetition_loop_from_long_prose() -> None:
    from chorus_debate.evaluate import ends_in_loop

    looping = "His work has been influenced by science fiction, and so has he. " * 12
    prose = " ".join(f"fact{k} about year{k % 7} and place{k % 5}" for k in range(40))
    bullets = "\n".join(f"- He founded lab {k} in {1970 + k} with grant {3 * k}." for k in range(9))
    assert ends_in_loop(looping)
    assert ends_in_loop("A fine start that has no repeats at all. " + looping)
    assert not ends_in_loop(prose) and not ends_in_loop(bullets)
    assert not ends_in_loop("seven seven seven")  # too short to call


def test_cut_replies_that_loop_are_counted_and_named(tmp_path: Path, capsys) -> None:
    replies = iter(
        [
            "and then it is seven, and then it is seven, " * 20,  # loops until the budget
            " ".join(f"step{k} gives partial{k}" for k in range(80)),  # still going somewhere
        ]
    )
    out = tmp_path / "run"
    with FakeOpenAIServer(lambda body: next(replies)) as server:
        assert _gen(server, out, "--max-new-tokens", "100") == 0
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["finish_length"], metrics["cut_in_loop"]) == (2, 1)
    # Half of the cut replies loop: the warning says a larger budget would not end them.
    assert "2 of 2 replies (100 %)" in err and "1 of them end in a repetition loop" in err
    assert "of them ending in a repetition loop | 1 |" in (out / "report.md").read_text()
    assert main(["report", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in table[2].strip("|").split("|")]
    row = [c.strip() for c in table[4].strip("|").split("|")]
    assert row[header.index("cut in a loop")] == "1"


# -- issue 20: evaluate --out and --overwrite never destroy what is not theirs ---------------


def test_evaluate_out_into_another_run_is_refused(finished_run: Path, tmp_path: Path, capsys):
    other = tmp_path / "other"
    with FakeOpenAIServer(lambda body: "The final answer is 3") as server:
        assert _gen(server, other) == 0
    assert main(["evaluate", str(other)]) == 0
    before = (other / "metrics.json").read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(finished_run), "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("chorus-debate: error:") == 1 and "holds a Chorus run" in err
    assert (other / "metrics.json").read_bytes() == before


def test_overwrite_of_a_folder_that_is_not_a_run_deletes_nothing(tmp_path: Path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    files = {"config.json": '{"mine": true}', "records.jsonl": "keep\n", "report.md": "keep"}
    for name, text in files.items():
        (mine / name).write_text(text)
    with FakeOpenAIServer() as server:
        n = len(server.requests)
        assert _gen(server, mine, "--overwrite") == 2
        assert len(server.requests) == n
    assert "is not a Chorus run" in capsys.readouterr().err
    assert {name: (mine / name).read_text() for name in files} == files
