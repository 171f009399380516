"""Issue 20 for blender: bad input is one error line (exit 2) with no run folder left, failed
replies are errored items (never answers; a window of only errors exits non-zero), a resume
on a changed input file is refused, and importing the package loads no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chorus_blender.cli import main
from chorus_blender.pipeline import FuseWorker, fuse_ranked
from chorus_shared.models import Completion


def _last_error(err: str, verb: str) -> str:
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"chorus-blender {verb}: error: "), err
    return last


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ranker_dir(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from chorus_blender.ranker import PairRanker

    return PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path_factory.mktemp("r") / "m")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], "the file is empty"),
        (["{not json", {"id": "b", "source": "s", "candidates": []}], "no usable items"),
        (
            [{"id": "a", "source": "s", "candidates": ["x"]}] * 2,
            "id 'a' occurs more than once",
        ),
    ],
    ids=["empty", "all-bad", "duplicate-ids"],
)
def test_rank_on_unusable_input_leaves_no_folder(ranker_dir, tmp_path, capsys, rows, message):
    data = _write(tmp_path / "items.jsonl", rows)
    out = tmp_path / "runs" / "ranked"
    argv = ["rank", "--ranker", str(ranker_dir), "--input", str(data), "--out", str(out)]
    assert main(argv) == 2
    assert message in _last_error(capsys.readouterr().err, "rank")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("flag", "value", "verb"),
    [
        ("--window", "0", "rank"),
        ("--batch-size", "0", "rank"),
        ("--limit", "-1", "evaluate"),
        ("--window", "0", "evaluate"),
        ("--top-k", "0", "evaluate"),
    ],
)
def test_counts_below_their_minimum_are_refused(ranker_dir, tmp_path, capsys, flag, value, verb):
    data = _write(
        tmp_path / "items.jsonl",
        [
            {
                "id": "a",
                "instruction": "q",
                "output": "r",
                "source": "q",
                "candidates": [{"text": "x", "scores": {"bertscore": 1, "bleu": 1, "rougeL": 1}}],
            }
        ],
    )
    out = tmp_path / "runs" / "x"
    if verb == "rank":
        argv = ["rank", "--ranker", str(ranker_dir), "--input", str(data)]
    else:
        argv = ["evaluate", "--candidates", str(data), "--no-pointwise"]
    assert main([*argv, flag, value, "--out", str(out)]) == 2
    assert f"{flag} must be >= " in _last_error(capsys.readouterr().err, verb)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"id": "a", "source": "q", "candidates": ["x", "y"]}, "missing field 'ranks'"),
        ({"id": "a", "source": "q", "candidates": ["x", "y"], "ranks": [1]}, "1 ranks for 2"),
        ({"id": "a", "source": "q", "candidates": "xy", "ranks": [1, 2]}, "should be list"),
        ({"id": "a", "source": "q", "candidates": ["x", "y"], "ranks": [1, "2"]}, "integers"),
        ("[1, 2]", "not a JSON object"),
    ],
    ids=["no-ranks", "short-ranks", "candidates-str", "rank-str", "not-object"],
)
def test_fuse_on_malformed_ranked_lines_is_one_error(tmp_path, capsys, line, message):
    data = _write(tmp_path / "ranked.jsonl", [line])
    out = tmp_path / "runs" / "fused"
    argv = ["fuse", "--model", "default", "--input", str(data), "--out", str(out)]
    assert main(argv) == 2
    assert message in _last_error(capsys.readouterr().err, "fuse")
    assert not (tmp_path / "runs").exists()


class _Fuser:
    spec = "fake"

    def __init__(self, fail: set[int]) -> None:
        self.fail = fail

    def chat(self, conversations, params):
        return [
            Completion(text="", finish_reason="error", error="HTTP 400")
            if k in self.fail
            else Completion(text=f"fused {k}")
            for k in range(len(conversations))
        ]


def _ranked(tmp_path: Path, n: int) -> Path:
    rows = [
        {"id": f"i{k}", "source": f"q{k}", "candidates": ["x", "y"], "ranks": [2, 1]}
        for k in range(n)
    ]
    return _write(tmp_path / "ranked.jsonl", rows)


def test_a_failed_fuse_reply_is_an_errored_item_never_an_answer(tmp_path, monkeypatch):
    import chorus_blender.fuser as fuser_module

    monkeypatch.setattr(fuser_module, "load_fuser", lambda spec: _Fuser({1}))
    out = tmp_path / "fused"
    run = fuse_ranked("default", _ranked(tmp_path, 2), out, window=2)
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert lines[0]["fused"] == "fused 0" and lines[0]["topk"] == ["y", "x"]
    assert lines[1] == {"id": "i1", "source": "q1", "error": "fuser: HTTP 400"}
    assert "fused" not in lines[1]
    assert [r["id"] for r in run.read_records().finished] == ["i0"]


def test_a_window_of_only_failed_replies_exits_non_zero(tmp_path, monkeypatch, capsys):
    import chorus_blender.fuser as fuser_module

    monkeypatch.setattr(fuser_module, "load_fuser", lambda spec: _Fuser({0, 1}))
    out = tmp_path / "fused"
    argv = ["fuse", "--model", "default", "--input", str(_ranked(tmp_path, 2)), "--out", str(out)]
    assert main(argv) == 2
    assert "HTTP 400" in _last_error(capsys.readouterr().err, "fuse")


def test_fuse_worker_is_picklable_for_ray():
    import pickle

    worker = FuseWorker("default", 8)
    assert pickle.loads(pickle.dumps(worker)) == worker


def test_resume_on_a_changed_input_file_is_refused(ranker_dir, tmp_path, capsys):
    data = _write(tmp_path / "items.jsonl", [{"id": "a", "source": "s", "candidates": ["x", "y"]}])
    out = tmp_path / "ranked"
    argv = ["rank", "--ranker", str(ranker_dir), "--input", str(data), "--out", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["item_ids"] == ["a"] and "items.jsonl" in config["data"]
    _write(data, [{"id": "a", "source": "s", "candidates": ["x", "z"]}])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "chorus-blender rank: error: " in err and "different config" in err
    assert "data.items.jsonl" in err and "Traceback" not in err


def test_importing_the_package_and_help_load_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "import chorus_blender, chorus_blender.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    chorus_blender.cli.main(['--help'])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_failed_generator_reply_makes_an_errored_item(fake_chat_model):
    from chorus_blender.candidates import Generator, generate_window

    def reply(conversation):
        if "broken" in conversation[-1]["content"]:
            return Completion(text="", finish_reason="error", error="HTTP 500")
        return "an answer"

    class Scorer:
        def score(self, cands, refs):
            return [{"bertscore": 1.0} for _ in cands]

    items = [
        {"id": "ok", "instruction": "fine", "output": "r", "split": "test"},
        {"id": "bad", "instruction": "broken", "output": "r", "split": "test"},
    ]
    gens = [Generator("g1"), Generator("g2", temperature=1.0)]
    ok, bad = generate_window(items, gens, {"default": fake_chat_model(reply)}, Scorer())
    assert [c["generator"] for c in ok["candidates"]] == ["g1", "g2"] and "error" not in ok
    assert bad == {"id": "bad", "split": "test", "error": "generator g1: HTTP 500"}
