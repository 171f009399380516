"""Issue 20 for selfee: generate / infer / evaluate through the shared run engine, against a
local fake OpenAI-compatible server (teacher, raw-prompt SelFee model and judge in one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chorus_selfee.chain import build_prompt
from chorus_selfee.cli import main
from chorus_shared.runs import RunDir
from chorus_shared.testing import FakeOpenAIServer


def _responder(body: dict) -> str:
    if "prompt" in body:  # the SelFee model, continuing the raw prompt
        return "An answer.\n\n### Feedback 1:\nGood. Score: 9. Revision is not needed."
    text = body["messages"][-1]["content"]
    if "[The Start of Assistant 1's Answer]" in text:  # the judge
        first = text.split("[The Start of Assistant 1's Answer]\n", 1)[1].split("\n", 1)[0]
        return "8 6\nreason" if first == "An answer." else "6 9\nreason"
    if text.endswith("Critique:"):  # the teacher
        return "Fine. Score: 9. Revision is not needed."
    return "The teacher's answer."


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAIServer(_responder) as fake:
        yield fake


def _spec(server: FakeOpenAIServer) -> str:
    return f"openai:fake-model@{server.base_url}"


def _infer(server: FakeOpenAIServer, out: Path, *more: str) -> int:
    return main(["infer", "--model", _spec(server), "--limit", "3", "--out", str(out), *more])


def _ref_file(tmp_path: Path, ids=(1, 2, 3)) -> Path:
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"question_id": i, "text": f"ref {i}"}) + "\n" for i in ids))
    return ref


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def test_generate_infer_evaluate_through_the_engine(server, tmp_path, capsys) -> None:
    gen = tmp_path / "gen"
    argv = ["generate", "--teacher", _spec(server), "--instructions", "vicuna80", "--split"]
    argv += ["test", "--limit", "2", "--out", str(gen)]
    assert main(argv) == 0
    cfg = _config(gen)
    assert cfg["item_ids"] == ["vicuna80-1", "vicuna80-2"] and cfg["data"]  # fingerprinted
    assert [r["iteration"] for r in RunDir.open(gen).records()] == [1, 1]
    n = len(server.requests)
    assert main(argv) == 0 and len(server.requests) == n  # resume: nothing redone

    infer = tmp_path / "infer"
    assert _infer(server, infer) == 0
    prompts = [r["prompt"] for r in server.requests if "prompt" in r]
    assert set(prompts) == {build_prompt(r["instruction"]) for r in RunDir.open(infer).records()}
    ev = tmp_path / "ev"
    argv = ["evaluate", "--answers", str(infer), "--reference", str(_ref_file(tmp_path))]
    assert main([*argv, "--judge", _spec(server), "--out", str(ev)]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    # model 8 + 9 per question, reference 6 + 6: both orders, 3 questions.
    assert (m["model_total"], m["reference_total"], m["parsed"]) == (51, 36, 6)
    # Evaluation covers the 80 questions: a partial run never shrinks the denominator.
    assert m["judged_of_questions"] == "3 of 80 questions" and m["answers_k"] == 0
    assert "| all | 141.7% |" in capsys.readouterr().out


def test_failed_replies_are_errored_records_and_the_run_exits_non_zero(tmp_path, capsys) -> None:
    with FakeOpenAIServer(always_fail_status=400) as failing:
        out = tmp_path / "infer"
        assert _infer(failing, out) == 2
    err = capsys.readouterr().err
    assert "chorus-selfee: error:" in err and "failed items are stored" in err
    recs = RunDir.open(out).records()
    assert recs and all(r["error"] for r in recs) and not any("generation" in r for r in recs)


def test_evaluate_judges_only_finished_answers_and_says_k_of_n(server, tmp_path, capsys) -> None:
    infer = tmp_path / "infer"
    assert _infer(server, infer) == 0
    lines = (infer / "records.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    foreign = {**first, "id": "vicuna80-9", "generation": "foreign"}
    errored = {"id": first["id"], "error": "late failure"}  # ignored: finished earlier
    (infer / "records.jsonl").write_text(
        "\n".join([lines[0], lines[0], json.dumps(foreign), json.dumps(errored), lines[2]]) + "\n"
    )
    ev = tmp_path / "ev"
    argv = ["evaluate", "--answers", str(infer), "--reference", str(_ref_file(tmp_path))]
    assert main([*argv, "--judge", _spec(server), "--out", str(ev)]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert m["judged_of_questions"] == "2 of 80 questions" and "vicuna80-2" in m["unanswered"]
    assert m["parsed"] == 4  # the duplicate counted once, the foreign id never
    err = capsys.readouterr().err
    assert "duplicate id" in err
    assert "have no usable answer" in err


def test_evaluate_refuses_to_resume_on_changed_answers(server, tmp_path, capsys) -> None:
    answers = tmp_path / "mine.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "text": "An answer."}) + "\n")
    ref = _ref_file(tmp_path, ids=(1,))
    ev = tmp_path / "ev"
    argv = ["evaluate", "--answers", str(answers), "--reference", str(ref), "--limit", "1"]
    argv += ["--judge", _spec(server), "--out", str(ev)]
    assert main(argv) == 0
    answers.write_text(json.dumps({"question_id": 1, "text": "Another answer."}) + "\n")
    assert main(argv) == 2
    assert "answers" in capsys.readouterr().err  # the differing fingerprint is named


def test_a_judge_that_fails_stores_errored_reviews_never_scores(tmp_path, capsys) -> None:
    answers = tmp_path / "mine.jsonl"
    answers.write_text(json.dumps({"question_id": 1, "text": "x"}) + "\n")
    ev = tmp_path / "ev"
    with FakeOpenAIServer(always_fail_status=400) as failing:
        argv = ["evaluate", "--answers", str(answers), "--reference", str(answers)]
        argv += ["--limit", "1", "--judge", f"openai:m@{failing.base_url}", "--out", str(ev)]
        assert main(argv) == 2
    recs = RunDir.open(ev).records()
    assert len(recs) == 2 and all(r["error"] and "review" not in r for r in recs)
    assert main(["score", str(ev)]) == 0
    m = json.loads((ev / "metrics.json").read_text())
    assert (m["parsed"], m["errors"], m["relative"]) == (0, 2, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json\n", "line 1: not valid JSON"),
        ('{"text": "a"}\n', "line 1: no 'question_id'"),
        ('{"question_id": 1}\n', "line 1: no 'text'"),
    ],
    ids=["bad-json", "no-question-id", "no-text"],
)
def test_bad_answer_files_name_the_file_and_key(tmp_path, capsys, content, message) -> None:
    bad = tmp_path / "answers.jsonl"
    bad.write_text(content)
    out = tmp_path / "runs" / "ev"
    argv = ["evaluate", "--answers", str(bad), "--reference", str(bad), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("chorus-selfee: error: ") and len(err.strip().splitlines()) == 1
    assert f"answers file {bad}" in err and message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_report_and_score_refuse_runs_of_another_kind(server, tmp_path, capsys) -> None:
    infer = tmp_path / "infer"
    assert _infer(server, infer, "--limit", "1") == 0
    assert main(["report", str(infer)]) == 2
    assert "is a infer run; report takes evaluate runs" in capsys.readouterr().err
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    (not_a_run / "config.json").write_text("{}")
    assert main(["score", str(not_a_run)]) == 2
    assert "not a chorus-selfee" in capsys.readouterr().err


def test_report_compares_evaluate_runs_by_group_and_plots(server, tmp_path) -> None:
    infer = tmp_path / "infer"
    assert _infer(server, infer, "--per-category", "1", "--limit", "9") == 0
    ref = tmp_path / "ref.jsonl"
    ref.write_text(
        "".join(json.dumps({"question_id": i, "text": "ref"}) + "\n" for i in range(1, 81))
    )
    runs = []
    for name in ("ev-a", "ev-b"):
        out = tmp_path / name
        argv = ["evaluate", "--answers", str(infer), "--reference", str(ref), "--per-category"]
        argv += ["1", "--limit", "9", "--judge", _spec(server), "--out", str(out)]
        assert main(argv) == 0
        runs.append(str(out))
    rep = tmp_path / "report"
    assert main(["report", *runs, "--out", str(rep)]) == 0
    text = (rep / "report.md").read_text()
    assert "| ev-b | 0 |" in text and "9 of 9 questions" in text
    assert (rep / "relative_by_group.png").stat().st_size > 0
