"""Pass-rate judge of real-time episodes: verdict parsing, batching, no-answer episodes, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.cli import main
from chorus_alpha_umi.judge import judge_episodes, judge_prompt, parse_verdict, pass_rate
from chorus_alpha_umi.recipes import load_recipe
from chorus_shared.models import SamplingParams


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Solved", "solved"),
        ("unsolved.", "unsolved"),
        ("The request is Unsolved, not solved", "unsolved"),
        ("I think it is solved", "solved"),
        ("resolved? maybe", "unparseable"),  # a word boundary: "resolved" is not a verdict
        ("", "unparseable"),
    ],
)
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text) == verdict


def _episode(eid: str, status: str, answer: str | None) -> dict:
    return {
        "id": eid,
        "status": status,
        "answer": answer,
        "conversations": [
            {"from": "user", "value": f"query {eid}"},
            {"from": "observation", "value": '{"sum": 5}'},
        ],
    }


def test_judge_one_batched_call_and_no_answer_fails_without_asking(fake_chat_model) -> None:
    replies = {"a": "Solved", "b": "Unsolved", "c": "hmm"}
    judge = fake_chat_model(
        lambda c: next(v for k, v in replies.items() if f"query {k}" in c[0]["content"])
    )
    episodes = [
        _episode("a", "conclusion", "5"),
        _episode("b", "conclusion", "7"),
        _episode("c", "conclusion", "?"),
        _episode("d", "give up", None),
        _episode("e", "max_turns", None),
    ]
    judge_episodes(episodes, judge, SamplingParams(max_new_tokens=4))
    assert len(judge.calls) == 1 and len(judge.calls[0]) == 3
    prompt = judge.calls[0][0][0]["content"]
    assert "query a" in prompt and '{"sum": 5}' in prompt and "Final answer:\n5" in prompt
    assert [e["verdict"] for e in episodes] == [
        "solved",
        "unsolved",
        "unparseable",
        "no answer",
        "no answer",
    ]
    assert [e["passed"] for e in episodes] == [True, False, False, False, False]
    metrics = pass_rate(episodes)
    assert metrics["pass_rate"] == pytest.approx(20.0)
    assert metrics["verdicts"] == {"solved": 1, "unsolved": 1, "no answer": 2, "unparseable": 1}


def test_no_judged_records_is_none_not_zero() -> None:
    assert pass_rate([{"status": "conclusion"}]) == {
        "pass_rate": None,
        "judged": 0,
        "verdicts": {"solved": 0, "unsolved": 0, "no answer": 0, "unparseable": 0},
    }


def test_judge_prompt_keeps_the_last_observations_short() -> None:
    episode = _episode("x", "conclusion", "done")
    episode["conversations"] += [{"from": "observation", "value": "y" * 5000}] * 4
    text = judge_prompt(episode)[0]["content"]
    assert text.count("y" * 600) == 3 and "y" * 601 not in text


def test_recipe_sampling_settings_reach_the_backends_params() -> None:
    recipe = load_recipe(None, repetition_penalty=1.3, temperature=0.7, top_p=0.9)
    params = recipe.params("planner")
    assert (params.repetition_penalty, params.temperature, params.top_p) == (1.3, 0.7, 0.9)
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        load_recipe(None, repetition_penalty=0.0)


def test_cli_run_judged_with_tiny_models(tmp_path: Path, tiny_model_dir: Path) -> None:
    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path / "episodes"
    argv = [
        "run",
        "--model",
        f"hf:{tiny_model_dir}",
        "--judge",
        f"hf:{tiny_model_dir}",
        "--repetition-penalty",
        "1.2",
        "--data-dir",
        str(fixtures),
        "--max-turns",
        "2",
        "--planner-max-new-tokens",
        "8",
        "--caller-max-new-tokens",
        "8",
        "--summarizer-max-new-tokens",
        "8",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert metrics["judged"] == len(records) == 3
    assert all(r["verdict"] in ("solved", "unsolved", "no answer", "unparseable") for r in records)
    assert sum(metrics["verdicts"].values()) == 3
    assert metrics["pass_rate"] == pytest.approx(100.0 * sum(r["passed"] for r in records) / 3)
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["repetition_penalty"] == 1.2
