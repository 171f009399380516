"""Real-time evaluation: pairwise verdict parsing, win rate on hand-computed pairs (both
orders, no-answer rules, unparseable counted), pass rate of both sides, CLI over two `run`
folders with a scripted judge behind the real OpenAI client, resumption and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.evaluate import pair_metrics
from chorus_alpha_umi.judge import compare_episodes, parse_preference, win_rate
from chorus_alpha_umi.realtime import pair_up
from chorus_shared.models import SamplingParams
from chorus_shared.runs import RunDir
from chorus_shared.testing import FakeOpenAIServer


@pytest.mark.parametrize(
    ("text", "side"),
    [
        ("A", "A"),
        (" B.", "B"),
        ("**B** is better", "B"),
        ("Answer A is more complete.", "A"),
        ("I prefer answer: b", "B"),
        ("A better reply is Answer B", "A"),  # starts with the letter: read as A, never guessed
        ("Both are fine", "unparseable"),
        ("Absolutely", "unparseable"),  # a word starting with A is not the letter
        ("", "unparseable"),
    ],
)
def test_parse_preference(text: str, side: str) -> None:
    assert parse_preference(text) == side


def _ep(eid: str, status: str, answer: str | None) -> dict:
    return {
        "id": eid,
        "status": status,
        "answer": answer,
        "planner_turns": 1,
        "conversations": [{"from": "user", "value": f"query {eid}"}],
    }


# Replies of the scripted judge for (query, order): order 1 shows the episode's answer as A,
# order 2 shows it as B. Hand-computed outcomes from the episode's side:
#   p1: A then B  -> episode preferred twice          -> win
#   p2: B then A  -> reference preferred twice        -> loss
#   p3: A then A  -> split                            -> tie
#   p4: "hmm" then B -> one order unparseable         -> unparseable (not a win, not a tie)
#   p5: reference gave up, episode answered           -> win, no judge call
#   p6: episode ran out of turns, reference answered  -> loss, no judge call
#   p7: neither answered                              -> tie, no judge call
REPLIES = {"p1": ("A", "B"), "p2": ("B", "A"), "p3": ("A", "A"), "p4": ("hmm", "B")}


def _scripted(content: str) -> str:
    key = next(k for k in REPLIES if f"query {k}\n" in content)
    first = f"Answer A:\nmine {key}" in content
    return REPLIES[key][0 if first else 1]


PAIRS = [
    (_ep("p1", "conclusion", "mine p1"), _ep("p1", "conclusion", "ref p1")),
    (_ep("p2", "conclusion", "mine p2"), _ep("p2", "conclusion", "ref p2")),
    (_ep("p3", "conclusion", "mine p3"), _ep("p3", "conclusion", "ref p3")),
    (_ep("p4", "conclusion", "mine p4"), _ep("p4", "conclusion", "ref p4")),
    (_ep("p5", "conclusion", "mine p5"), _ep("p5", "give up", None)),
    (_ep("p6", "max_turns", None), _ep("p6", "conclusion", "ref p6")),
    (_ep("p7", "give up", None), _ep("p7", "max_turns", None)),
]


def test_win_rate_hand_computed_both_orders_one_batched_call(fake_chat_model) -> None:
    judge = fake_chat_model(lambda c: _scripted(c[0]["content"]))
    records = compare_episodes(PAIRS, judge, SamplingParams(max_new_tokens=4))
    assert judge.batch_sizes == [8]  # 4 pairs with two answers x 2 orders, one call
    shown = [c[0]["content"] for c in judge.calls[0][:2]]
    assert "Answer A:\nmine p1" in shown[0] and "Answer B:\nref p1" in shown[0]
    assert "Answer A:\nref p1" in shown[1] and "Answer B:\nmine p1" in shown[1]
    assert [r["outcome"] for r in records] == [
        "win", "loss", "tie", "unparseable", "win", "loss", "tie",
    ]  # fmt: skip
    assert records[3]["preference_episode_first"] is None
    assert records[3]["preference_reference_first"] == "episode"
    assert records[4]["replies"] is None and records[4]["reference_answer"] is None
    metrics = win_rate(records)
    # (2 wins + 0.5 x 2 ties) / 7 pairs; the unparseable pair counts in the denominator.
    assert metrics["win_rate"] == pytest.approx(100.0 * 3 / 7)
    assert metrics["outcomes"] == {"win": 2, "loss": 2, "tie": 2, "unparseable": 1}


def test_win_rate_of_nothing_is_none() -> None:
    assert win_rate([]) == {
        "win_rate": None,
        "pairs": 0,
        "outcomes": {"win": 0, "loss": 0, "tie": 0, "unparseable": 0},
    }


def test_pair_up_requires_the_same_queries() -> None:
    mine = {"a": _ep("a", "give up", None), "b": _ep("b", "give up", None)}
    ref = {"b": _ep("b", "give up", None), "c": _ep("c", "give up", None)}
    expected = r"only in --episodes \['a'\].*only in --reference \['c'\]"
    with pytest.raises(ValueError, match=expected):
        pair_up(mine, ref)
    assert [m["id"] for m, _ in pair_up(mine, dict(mine))] == ["a", "b"]


def _write_run(path: Path, episodes: list[dict]) -> None:
    with RunDir.create(path, {"recipe": {"model": "scripted"}}) as run:
        run.append_many(episodes)


def _responder(body: dict) -> str:
    content = body["messages"][-1]["content"]
    if "Reply with one word: Solved or Unsolved" in content:
        # Pass verdicts: p1, p3 (mine) and p6 (reference) solved; mine p2 gets a non-verdict.
        if "Final answer:\nmine p2" in content:
            return "maybe"
        solved = ("Final answer:\nmine p1", "Final answer:\nmine p3", "Final answer:\nref p6")
        return "Solved" if any(s in content for s in solved) else "Unsolved"
    return _scripted(content)


def test_cli_realtime_evaluate_through_openai_client_resumes_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    mine, ref = tmp_path / "episodes-multi", tmp_path / "episodes-single"
    _write_run(mine, [m for m, _ in PAIRS])
    _write_run(ref, [r for _, r in PAIRS])
    out = tmp_path / "realtime"
    with FakeOpenAIServer(_responder) as server:
        argv = [
            "evaluate", "--episodes", str(mine), "--reference", str(ref),
            "--judge", f"openai:fake-model@{server.base_url}", "--window", "4",
            "--out", str(out),
        ]  # fmt: skip
        assert main(argv) == 0
        # Pass verdicts: 5 answered episodes mine (p1-p5) + 5 reference (p1-p4, p6);
        # pairwise: 4 pairs x 2 orders.
        assert len(server.requests) == 10 + 8
        assert main(argv) == 0  # resumes: everything judged, no new request
        assert len(server.requests) == 18
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["queries"] == 7
    assert metrics["pass_rate"] == pytest.approx(100.0 * 2 / 7)  # p1, p3 of 7
    assert metrics["verdicts"] == {"solved": 2, "unsolved": 2, "no answer": 2, "unparseable": 1}
    assert metrics["reference_pass_rate"] == pytest.approx(100.0 * 1 / 7)  # p6
    assert metrics["reference_verdicts"]["no answer"] == 2
    assert metrics["win_rate"] == pytest.approx(100.0 * 3 / 7)
    again = pair_metrics(RunDir.open(out))  # derived again from the records alone
    assert again["win_rate"] == metrics["win_rate"] and again["verdicts"] == metrics["verdicts"]
    assert "sk-test" not in (out / "config.json").read_text()

    report = tmp_path / "report.md"
    assert main(["report", str(out), "--out", str(report)]) == 0
    text = report.read_text()
    assert "Real-time episodes" in text and "`episodes-multi` vs `episodes-single`" in text
    assert "| 28.6 | 14.3 | 42.9 | 2 / 2 / 2 / 1 | 1 / 0 | 7 |" in text


def test_cli_realtime_bad_input_is_one_clear_error(tmp_path: Path, capsys) -> None:
    mine = tmp_path / "m"
    _write_run(mine, [_ep("a", "give up", None)])
    assert main(["evaluate", "--episodes", str(mine), "--judge", "default"]) == 2
    assert "needs both --episodes and --reference" in capsys.readouterr().err
    assert main(["evaluate", "--episodes", str(mine), "--reference", str(mine)]) == 2
    assert "needs a judge" in capsys.readouterr().err
