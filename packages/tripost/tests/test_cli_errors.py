"""Issue 13: a model that cannot load or missing data is one clear line (exit 2), and no run
folder is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from chorus_tripost.cli import main

BAD = "hf:/nonexistent/model"


@pytest.mark.parametrize(
    "argv",
    [
        ["collect", "--recipe", "wordsort_default", "--model", BAD, "--run-dir"],
        ["train", "--recipe", "wordsort_default", "--model", BAD, "--run-dir"],
        ["evaluate", "--recipe", "wordsort_default", "--model", BAD, "--out"],
        [
            "evaluate",
            "--recipe",
            "wordsort_default",
            "--eval-method",
            "fewshot",
            "--model",
            BAD,
            "--out",
        ],
        [
            "check-helper",
            "--recipe",
            "logical_default",
            "--verifier-model",
            BAD,
            "--improver-model",
            BAD,
            "--n",
            "1",
            "--out",
        ],
    ],
    ids=["collect", "train", "evaluate", "evaluate-fewshot", "check-helper"],
)
def test_a_model_that_cannot_load_is_one_line_and_leaves_no_run(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "x"
    assert main([*argv, str(out)]) == 2
    err = capsys.readouterr().err
    # the engine's progress line may come first; the error is one line, the last
    last = err.strip().splitlines()[-1]
    assert last.startswith("chorus-tripost: error: ") and "Traceback" not in err
    assert "'/nonexistent/model'" in err and "does not exist" in err
    assert "--model default" in err  # what to do instead
    assert not (tmp_path / "runs").exists()


def test_a_missing_data_folder_stops_before_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHORUS_DATA_DIR", str(tmp_path / "no-data"))
    out = tmp_path / "runs" / "x"
    argv = ["evaluate", "--recipe", "wordsort_default", "--model", "default", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-tripost: error: ") and "CHORUS_DATA_DIR" in err
    assert str(tmp_path / "no-data") in err
    assert not (tmp_path / "runs").exists()
