"""Issue 13: a model / ranker that cannot load or a wrong --data-dir is one clear line
(exit 2), and no run folder is left behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_blender.cli import main

BAD = "/nonexistent/model"
ITEM = {
    "id": "a",
    "instruction": "2+2?",
    "source": "2+2?",
    "output": "4",
    "candidates": [
        {"generator": g, "text": t, "scores": {"bertscore": s, "bleu": s, "rougeL": s}}
        for g, t, s in (("g1", "4", 1.0), ("g2", "5", 0.0))
    ],
    "ranks": [1, 2],
}


@pytest.fixture
def items(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(ITEM) + "\n")
    return path


def _one_line(err: str, verb: str) -> str:
    # The engine's progress line ("0 of 1 items already done") may come first.
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"chorus-blender {verb}: error: ") and "Traceback" not in err
    assert f"'{BAD}'" in last and "does not exist" in last
    return last


@pytest.mark.parametrize(
    ("verb", "flags", "hint"),
    [
        ("rank", ["--ranker", BAD, "--input", "{items}"], "chorus-blender train"),
        (
            "evaluate",
            ["--candidates", "{items}", "--ranker", BAD, "--no-pointwise"],
            "chorus-blender train",
        ),
        (
            "evaluate",
            ["--candidates", "{items}", "--no-pointwise", "--judge", f"hf:{BAD}"],
            "--model default",
        ),
        (
            "train",
            ["--data", "{items}", "--backbone", BAD, "--max-steps", "1"],
            "--backbone minilm",
        ),
        (
            "train-fuser",
            ["--data", "{items}", "--model", f"hf:{BAD}", "--max-steps", "1"],
            "--model default",
        ),
    ],
    ids=["rank", "evaluate-ranker", "evaluate-judge", "train", "train-fuser"],
)
def test_a_model_that_cannot_load_leaves_no_run(
    verb: str,
    flags: list[str],
    hint: str,
    items: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "runs" / "x"
    argv = [verb, *(f.format(items=items) for f in flags), "--out", str(out)]
    assert main(argv) == 2
    assert hint in _one_line(capsys.readouterr().err, verb)
    assert not (tmp_path / "runs").exists()


def test_make_candidates_with_a_generator_that_cannot_load_leaves_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    (data / "gsm8k").mkdir(parents=True)
    rows = [{"question": f"{k}+{k}?", "answer": f"{k}+{k}={2 * k}\n#### {2 * k}"} for k in range(4)]
    (data / "gsm8k" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = tmp_path / "cands.yaml"
    recipe.write_text(
        "sources: [gsm8k]\ntest_size: 1\ntrain_size: 1\n"
        "generators:\n"
        f"  - {{name: g1, model: 'hf:{BAD}', max_new_tokens: 4}}\n"
        f"  - {{name: g2, model: 'hf:{BAD}', temperature: 1.0, max_new_tokens: 4}}\n"
    )
    out = tmp_path / "runs" / "cands"
    argv = ["make-candidates", "--recipe", str(recipe), "--data-dir", str(data), "--out", str(out)]
    assert main(argv) == 2
    assert "--model default" in _one_line(capsys.readouterr().err, "make-candidates")
    assert not (tmp_path / "runs").exists()


def test_make_candidates_with_a_wrong_data_dir_stops_before_a_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-data"
    out = tmp_path / "runs" / "cands"
    argv = ["make-candidates", "--data-dir", str(missing), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-blender make-candidates: error: ") and "--data-dir" in err
    assert str(missing) in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("verb", "flags"),
    [
        ("compare", ["--ranker", BAD, "--source", "s", "--a", "x", "--b", "y"]),
        (
            "best-of-n",
            ["--model", f"hf:{BAD}", "--ranker", BAD, "--prompts", "{prompts}", "--out", "{out}"],
        ),
        ("fuse", ["--model", f"hf:{BAD}", "--input", "{ranked}", "--out", "{out}"]),
    ],
)
def test_verbs_that_cannot_load_fail_in_one_line_and_leave_no_folder(
    verb: str, flags: list[str], items: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p", "prompt": "hi"}) + "\n")
    ranked = tmp_path / "ranked.jsonl"
    ranked.write_text(json.dumps({"id": "a", "source": "q", "candidates": ["x"], "ranks": [1]}))
    out = tmp_path / "runs" / "x"
    argv = [
        verb,
        *(f.format(items=items, prompts=prompts, out=out, ranked=ranked) for f in flags),
    ]
    assert main(argv) == 2
    _one_line(capsys.readouterr().err, verb)
    assert not (tmp_path / "runs").exists()
