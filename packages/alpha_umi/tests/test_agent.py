"""Agent loop against deterministic toy tools; routing; tool schema checks; the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chorus_alpha_umi.agent import new_episode, run_episodes
from chorus_alpha_umi.tools import SimulatedTools, ToyTools, validate_arguments
from chorus_shared.models import SamplingParams, load_chat_model

TOOLS = [
    {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    }
]
PARAMS = {r: SamplingParams(max_new_tokens=8) for r in ("planner", "caller", "summarizer")}


def _toy() -> ToyTools:
    return ToyTools({"add": lambda args: {"sum": args["a"] + args["b"]}})


def test_validate_arguments() -> None:
    schema = TOOLS[0]["parameters"]
    assert validate_arguments(schema, {"a": 1, "b": 2}) is None
    assert "missing" in validate_arguments(schema, {"a": 1})
    assert "unknown" in validate_arguments(schema, {"a": 1, "b": 2, "c": 3})
    assert "must be integer" in validate_arguments(schema, {"a": "1", "b": 2})
    assert "must be integer" in validate_arguments(schema, {"a": True, "b": 2})
    flat = {"city": "string, the city"}
    assert validate_arguments(flat, {}) is None
    assert "must be string" in validate_arguments(flat, {"city": 3})


def test_full_episodes_scripted_batched(fake_chat_model) -> None:
    def plan(conversation: list[dict]) -> str:
        text = conversation[-1]["content"]
        if "Observation:" in text:
            return "Sum known. Next: conclusion."
        if "impossible" in text:
            return "Cannot. Next: give up."
        if "loop" in text:
            return "Try again without a marker"  # default route: caller
        return "Add them. Next: caller."

    planner = fake_chat_model(plan)
    caller = fake_chat_model(lambda c: 'Action: add\nAction Input: {"a": 2, "b": 3}')
    summarizer = fake_chat_model(
        lambda c: c[-1]["content"].split("Observation: ")[1].split("\n")[0]
    )
    models = {"planner": planner, "caller": caller, "summarizer": summarizer}
    toy = _toy()
    episodes = [
        new_episode("e0", TOOLS, "what is 2+3"),
        new_episode("e1", TOOLS, "impossible task"),
        new_episode("e2", [*TOOLS, {"name": "loop", "description": "", "parameters": {}}], "q"),
    ]
    # e2 never marks conclusion: its observations keep it calling until max_turns.
    episodes[2]["conversations"][0]["value"] = "loop forever"
    planner.reply = lambda c: (
        "Try again without a marker" if "loop" in c[-1]["content"] else plan(c)
    )
    done = run_episodes(episodes, models.__getitem__, toy, PARAMS, max_turns=3)
    assert [e["status"] for e in done] == ["conclusion", "give up", "max_turns"]
    assert done[0]["answer"] == '{"sum": 5}'
    assert [t["from"] for t in done[0]["conversations"]] == [
        "user",
        "assistant",
        "caller",
        "observation",
        "assistant",
        "conclusion",
    ]
    assert done[2]["planner_turns"] == 3 and done[2]["unmarked_plans"] == 3
    # One planner call per loop iteration over all running episodes.
    assert [len(c) for c in planner.calls] == [3, 2, 1]
    assert [len(c) for c in caller.calls] == [2, 1, 1]
    assert [len(c) for c in summarizer.calls] == [1]
    assert toy.calls == [("add", {"a": 2, "b": 3})] * 4  # e0 once, e2 three times


def test_bad_calls_become_error_observations(fake_chat_model) -> None:
    replies = iter(["Action: nope\nAction Input: {}", "Action: add\nAction Input: {oops"])
    caller = fake_chat_model(lambda c: next(replies))
    planner = fake_chat_model(lambda c: "Next: caller.")
    models = {"planner": planner, "caller": caller, "summarizer": planner}
    (episode,) = run_episodes(
        [new_episode("e", TOOLS, "q")], models.__getitem__, _toy(), PARAMS, max_turns=2
    )
    observations = [
        json.loads(t["value"]) for t in episode["conversations"] if t["from"] == "observation"
    ]
    assert "unknown tool 'nope'" in observations[0]["error"]
    assert "not a JSON object" in observations[1]["error"]
    assert episode["bad_calls"] == 1 and episode["status"] == "max_turns"


def test_a_call_without_action_line_is_an_error_observation(
    tmp_path: Path, fake_chat_model
) -> None:
    toy = _toy()
    (toy_out,) = toy.call_many([(TOOLS, None, None)])
    assert "no 'Action:' line" in json.loads(toy_out)["error"] and toy.calls == []
    model = fake_chat_model(lambda c: '{"sum": 2}')
    sim = SimulatedTools(model, tmp_path / "cache.jsonl")
    out = sim.call_many([(TOOLS, None, None), (TOOLS, "add", {"a": 1, "b": 1})])
    assert "no 'Action:' line" in json.loads(out[0])["error"]
    assert out[1] == '{"sum": 2}' and [len(c) for c in model.calls] == [1]


def test_full_episode_with_three_tiny_models(tiny_model_dir: Path) -> None:
    models = {
        role: load_chat_model(f"hf:{tiny_model_dir}", batch_size=4)
        for role in ("planner", "caller", "summarizer")
    }
    episodes = [new_episode(f"e{k}", TOOLS, f"add {k} and 1") for k in range(3)]
    done = run_episodes(episodes, models.__getitem__, _toy(), PARAMS, max_turns=2)
    # Random tiny models rarely write a valid call: every episode still ends, with a reason.
    assert all(e["status"] in ("conclusion", "give up", "max_turns") for e in done)
    assert all(1 <= e["planner_turns"] <= 2 for e in done)
    for e in done:
        for turn in e["conversations"]:
            if turn["from"] == "observation":
                json.loads(turn["value"])  # every observation is JSON


def test_simulator_caches_and_batches(tmp_path: Path, fake_chat_model) -> None:
    model = fake_chat_model(lambda c: '{"sum": 7}' if '"a": 3' in c[0]["content"] else "plain")
    cache = tmp_path / "cache.jsonl"
    sim = SimulatedTools(model, cache)
    out = sim.call_many(
        [
            (TOOLS, "add", {"a": 3, "b": 4}),
            (TOOLS, "add", {"a": 1, "b": 1}),
            (TOOLS, "add", {"b": 4, "a": 3}),  # same call: one miss only
            (TOOLS, "nope", {}),
        ]
    )
    assert out[0] == out[2] == '{"sum": 7}'
    assert json.loads(out[1]) == {"response": "plain"} and sim.non_json == 1
    assert "unknown tool" in json.loads(out[3])["error"]
    assert [len(c) for c in model.calls] == [2]
    again = SimulatedTools(model, cache)
    assert again.call_many([(TOOLS, "add", {"a": 3, "b": 4})]) == ['{"sum": 7}']
    assert len(model.calls) == 1  # answered from the cache file


def test_cli_run_episodes_with_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    from chorus_alpha_umi.cli import main

    fixtures = Path(__file__).parent / "fixtures"
    out = tmp_path / "episodes"
    argv = [
        "run",
        "--model",
        f"hf:{tiny_model_dir}",
        "--data-dir",
        str(fixtures),
        "--max-turns",
        "2",
        *("--planner-max-new-tokens", "8", "--caller-max-new-tokens", "8"),
        *("--summarizer-max-new-tokens", "8"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coverage"] == "3 of 3 items"
    assert sum(metrics["status"].values()) == 3
    assert main(argv) == 0  # resumes: nothing left to do, same records
    assert len((out / "records.jsonl").read_text().splitlines()) == 3


def test_tool_timeout_and_tool_crash_become_counted_error_observations(fake_chat_model) -> None:
    import time

    def slow(args: dict) -> dict:
        time.sleep(1.0)
        return {"sum": 0}

    def broken(args: dict) -> dict:
        raise RuntimeError("backend down")

    tools = [
        {**TOOLS[0], "name": "slow"},
        {**TOOLS[0], "name": "broken"},
    ]
    toy = ToyTools({"slow": slow, "broken": broken}, timeout_s=0.05)
    replies = iter(
        [
            'Action: slow\nAction Input: {"a": 1, "b": 2}',
            'Action: broken\nAction Input: {"a": 1, "b": 2}',
        ]
    )
    caller = fake_chat_model(lambda c: next(replies))
    planner = fake_chat_model(lambda c: "Next: caller.")
    models = {"planner": planner, "caller": caller, "summarizer": planner}
    (episode,) = run_episodes(
        [new_episode("e", tools, "q")], models.__getitem__, toy, PARAMS, max_turns=2
    )
    observations = [
        json.loads(t["value"]) for t in episode["conversations"] if t["from"] == "observation"
    ]
    assert "timed out after 0.05 s" in observations[0]["error"]
    assert "failed: RuntimeError: backend down" in observations[1]["error"]
    assert episode["tool_errors"] == 2 and toy.errors == 2
    assert episode["bad_calls"] == 0 and episode["status"] == "max_turns"


def test_simulator_failure_is_an_error_observation_and_not_cached(tmp_path: Path) -> None:
    from chorus_shared.models import Completion

    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def chat(self, conversations, params):
            self.calls += 1
            return [
                Completion(text="", finish_reason="error", error="request timed out")
                for _ in conversations
            ]

    model = Failing()
    cache = tmp_path / "cache.jsonl"
    sim = SimulatedTools(model, cache)
    (out,) = sim.call_many([(TOOLS, "add", {"a": 1, "b": 2})])
    assert "simulator failed: request timed out" in json.loads(out)["error"]
    assert sim.errors == 1 and not sim.cache
    assert not cache.exists() or cache.read_text() == ""
    sim.call_many([(TOOLS, "add", {"a": 1, "b": 2})])
    assert model.calls == 2  # asked again: failures are not remembered


def test_simulator_cache_drops_a_torn_last_line_and_names_the_file_otherwise(
    tmp_path: Path, fake_chat_model
) -> None:
    # Issue 20: a torn last line blocked every later run; now it is dropped like in records.jsonl.
    cache = tmp_path / "cache.jsonl"
    good = json.dumps({"key": SimulatedTools.key("add", {"a": 3, "b": 4}), "response": "7"})
    cache.write_text(good + "\n" + '{"key": "add {\\"a\\": 1')
    model = fake_chat_model(lambda c: '{"sum": 2}')
    sim = SimulatedTools(model, cache)
    assert sim.call_many([(TOOLS, "add", {"a": 3, "b": 4})]) == ["7"]
    sim.call_many([(TOOLS, "add", {"a": 1, "b": 1})])
    lines = cache.read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x) for x in lines)  # torn tail gone, one appended
    cache.write_text("not json\n" + good + "\n")
    with pytest.raises(ValueError, match=r"cache\.jsonl:1: not a simulator cache line"):
        SimulatedTools(model, cache)


def test_a_server_that_refuses_everything_makes_errored_episodes(tmp_path: Path, capsys) -> None:
    from chorus_alpha_umi.cli import main
    from chorus_shared.testing import FakeOpenAIServer

    fixtures = Path(__file__).parent / "fixtures"
    with FakeOpenAIServer(always_fail_status=400) as server:
        argv = ["run", "--model", f"openai:m@{server.base_url}", "--data-dir", str(fixtures)]
        code = main([*argv, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code != 0 and err.count("chorus-alpha-umi: error:") == 1
    lines = [json.loads(x) for x in (tmp_path / "run" / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and all("planner: " in r["error"] for r in lines)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_real_time_defaults_are_the_originals(fake_chat_model) -> None:
    # Issue 25 point 8: temperature 0.5, 12 planner turns, observations cut at 1,024 chars.
    from chorus_alpha_umi.recipes import load_recipe

    recipe = load_recipe(None)
    assert recipe.params("planner", episodes=True).temperature == 0.5
    assert recipe.params("planner").temperature == 0.0  # static decoding stays greedy
    assert (recipe.max_turns, recipe.observation_chars) == (12, 1024)
    assert recipe.params("caller").max_new_tokens == 512  # per role, as the original
    long_tool = ToyTools({"add": lambda args: {"text": "x" * 5000}})
    planner = fake_chat_model(lambda c: "call it. Next: caller.")
    caller = fake_chat_model(lambda c: 'Action: add\nAction Input: {"a": 1, "b": 2}')
    models = {"planner": planner, "caller": caller, "summarizer": caller}
    (episode,) = run_episodes([new_episode("e", TOOLS, "q")], models.__getitem__, long_tool, PARAMS)
    observations = [t["value"] for t in episode["conversations"] if t["from"] == "observation"]
    assert len(observations) == 12 and episode["status"] == "max_turns"
    assert all(len(o) == 1024 for o in observations)
