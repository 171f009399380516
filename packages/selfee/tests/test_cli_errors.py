"""Issue 13: a model that cannot load or a wrong --data-dir is one clear line (exit 2), and
no run folder is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from chorus_selfee.cli import main

BAD = "hf:/nonexistent/model"


def _check(err: str) -> None:
    # generate prints its progress ("0 of 1 already done") first; the error is the last line.
    assert err.splitlines()[-1].startswith("chorus-selfee: error: ") and "Traceback" not in err
    assert "'/nonexistent/model'" in err and "does not exist" in err
    assert "--model default" in err  # what to do instead


def _answers(tmp_path: Path) -> Path:
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps({"question_id": 1, "text": "an answer"}) + "\n")
    return path


@pytest.mark.parametrize(
    "flags",
    [
        ["generate", "--teacher", BAD, "--instructions", "vicuna80", "--split", "test"],
        ["infer", "--model", BAD],
        ["evaluate", "--judge", BAD, "--answers", "{answers}", "--reference", "{answers}"],
    ],
    ids=["generate", "infer", "evaluate"],
)
def test_a_model_that_cannot_load_leaves_no_run(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = _answers(tmp_path)
    out = tmp_path / "runs" / "x"
    argv = [*(f.format(answers=answers) for f in flags), "--limit", "1", "--out", str(out)]
    assert main(argv) == 2
    _check(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_train_with_a_base_model_that_cannot_load_leaves_no_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        json.dumps(
            {
                "instruction": "Add 1 and 1",
                "input": "",
                "outputs": [{"output": "2", "feedback": "Revision is not needed"}],
            }
        )
        + "\n"
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"train": {"model": BAD, "report_to": "none"}}))
    out = tmp_path / "runs" / "train"
    argv = ["train", "--recipe", str(recipe), "--data", str(data), "--out", str(out)]
    assert main(argv) == 2
    _check(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "flags",
    [
        ["generate", "--teacher", "default", "--instructions", "vicuna80", "--split", "test"],
        ["infer", "--model", "default"],
    ],
    ids=["generate", "infer"],
)
def test_a_wrong_data_dir_stops_before_a_run_folder(
    flags: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-data"
    out = tmp_path / "runs" / "x"
    assert main([*flags, "--data-dir", str(missing), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-selfee: error: ") and "--data-dir" in err
    assert str(missing) in err
    assert not (tmp_path / "runs").exists()


def test_serve_with_a_missing_model_folder_fails_before_starting_servers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "logs"
    assert main(["serve", "--model", BAD, "--log-dir", str(log_dir)]) == 2
    _check(capsys.readouterr().err)
    assert not log_dir.exists()  # nothing was started
