"""Issue 13: a model that cannot load or a wrong --data-dir is one clear line (exit 2), and
no run folder is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
TREE = FIXTURES / "trees" / "paris.json"
BAD = "hf:/nonexistent/model"


def _check(err: str) -> None:
    # The engine may say how many items were done before; the error is one line of its own.
    (line,) = [x for x in err.splitlines() if x.startswith("chorus-alpha-umi: error: ")]
    assert "Traceback" not in err
    err = line
    assert "'/nonexistent/model'" in err and "does not exist" in err
    assert "--model default" in err  # what to do instead


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--model", BAD, "--limit", "1"],
        ["evaluate", "--planner", BAD, "--limit", "1"],
        ["run", "--model", BAD, "--limit", "1"],
    ],
    ids=["evaluate", "evaluate-planner", "run"],
)
def test_a_model_that_cannot_load_leaves_no_run(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "x"
    assert main([*argv, "--data-dir", str(FIXTURES), "--out", str(out)]) == 2
    _check(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


def test_train_with_a_base_model_that_cannot_load_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preprocess", str(TREE), "--out", str(tmp_path / "data")]) == 0
    out = tmp_path / "runs" / "planner"
    argv = ["train", "--stage", "planner", "--data", str(tmp_path / "data"), "--model", BAD,
            "--max-steps", "1", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    _check(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("verb", ["evaluate", "run"])
def test_a_wrong_data_dir_stops_before_a_run_folder(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs" / "x"
    missing = tmp_path / "no-data"
    argv = [verb, "--model", "default", "--data-dir", str(missing), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-alpha-umi: error: ") and "--data-dir" in err
    assert str(missing) in err and "toolbench_alpha_umi" in err
    assert not (tmp_path / "runs").exists()


def test_realtime_evaluate_with_a_judge_that_cannot_load_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chorus_shared.runs import RunDir

    episode = {"id": "q1", "status": "give up", "planner_turns": 1, "conversations": []}
    for name in ("mine", "ref"):
        with RunDir.create(tmp_path / name, {"recipe": {"name": name}}) as run:
            run.append(episode)
    out = tmp_path / "runs" / "realtime"
    argv = ["evaluate", "--episodes", str(tmp_path / "mine"), "--reference", str(tmp_path / "ref"),
            "--judge", BAD, "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    _check(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()
