import json
import random

import pytest

from chorus_shared.models import Completion
from chorus_tripost import evaluate as ev
from chorus_tripost import loop, pipeline, tasks
from chorus_tripost.cli import main
from chorus_tripost.recipes import load_recipe
from chorus_tripost.verifier import ALL_CORRECT, verify


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from chorus_shared.testing import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "m")


def _tiny_recipe(tiny, **kw):
    base = dict(
        model=f"hf:{tiny}",
        train_items=2,
        collect_train_data_window=2,
        max_new_tokens=8,
        baseline_epochs=1.0,
        iteration_epochs=1.0,
        max_steps=1,
        max_length=384,
        per_device_train_batch_size=2,
        report_to="none",
        learning_rate=1e-4,
        bf16="false",
        eval_limit=2,
        eval_max_new_tokens=8,
    )
    return load_recipe("arithmetic_default", **{**base, **kw})


def test_attempt_prompt_is_a_token_prefix_of_every_record(tiny):
    from transformers import AutoTokenizer

    from chorus_shared.training.examples import record_segments, tokenize_segments
    from chorus_tripost.generation import prompt_ids

    tok = AutoTokenizer.from_pretrained(tiny)
    items = tasks.load_items("multistep_arithmetic", "train")[:4]
    by_q = {
        loop.question_text(it): (it["rationale"] if k < 2 else "bad") for k, it in enumerate(items)
    }

    class Model:
        def complete(self, prompts, params):
            return [Completion(text=by_q[p[0]]) for p in prompts]

    kept, _ = loop.collect(Model(), items)
    improving, plain = loop.split_turns(kept)
    records = loop.build_records(improving, plain, items)
    records += loop.trajectory_records(kept)
    assert len(records) == 2 + 2 + 4 + 4
    by_id = {it["id"]: it for it in items}
    for r in records:
        item = by_id[r["id"].rsplit("-", 1)[0]]
        want = prompt_ids(loop.attempt_prompt(item), tok)
        ids, _ = tokenize_segments(record_segments(r, tok), tok)
        assert ids[: len(want)] == want, r["id"]
        assert r["text"].startswith("".join(loop.attempt_prompt(item)))


def test_one_full_loop_iteration_on_a_tiny_model_then_resume(tiny, tmp_path):
    run = tmp_path / "run"
    logs = []
    recipe = _tiny_recipe(tiny)
    metrics = pipeline.run_training(recipe, run, num_iterations=1, log=logs.append)
    assert metrics["iterations_done"] == 1 and metrics["stopped"] is None
    stats = metrics["iterations"][0]
    # random weights never solve it: every attempt is repaired by the scripted improver
    assert stats["attempts"] == 2 and stats["corrected"] == 2 and stats["dropped"] == 0
    assert stats["improvement_samples"] == 2 and stats["records"] == 2 + 2  # + window gold
    assert (run / "iter-1" / "train" / "model" / "config.json").is_file()
    assert metrics["final_model"] == str(run / "iter-1" / "train" / "model")
    stamp = (run / "iter-1" / "train" / "metrics.json").stat().st_mtime_ns
    collected = (run / "iter-1" / "collect" / "records.jsonl").read_text()

    logs.clear()
    metrics = pipeline.run_training(recipe, run, num_iterations=2, log=logs.append)
    assert any("baseline SFT: finished earlier" in line for line in logs)
    assert any("iteration 1: finished earlier" in line for line in logs)
    assert (run / "iter-1" / "train" / "metrics.json").stat().st_mtime_ns == stamp
    assert (run / "iter-1" / "collect" / "records.jsonl").read_text() == collected
    assert metrics["iterations_done"] == 2
    assert metrics["final_model"].endswith("iter-2/train/model")
    # the second window is the next slice of the shuffled training set
    second = [json.loads(x)["id"] for x in (run / "iter-2/collect/records.jsonl").open()]
    first = [json.loads(x)["id"] for x in collected.splitlines()]
    assert not {r.rsplit("-", 1)[0] for r in first} & {r.rsplit("-", 1)[0] for r in second}


def test_min_data_length_stops_with_a_clear_message(tiny, tmp_path):
    logs = []
    recipe = _tiny_recipe(tiny, min_data_length=100, method="ft_demo")
    metrics = pipeline.run_training(recipe, tmp_path / "r", num_iterations=3, log=logs.append)
    assert metrics["iterations_done"] == 0
    assert "fewer than min_data_length=100" in metrics["stopped"]
    assert not (tmp_path / "r" / "iter-2").exists()
    logs.clear()
    pipeline.run_training(recipe, tmp_path / "r", num_iterations=3, log=logs.append)
    assert any("min_data_length=100" in line for line in logs)  # resumed: still stopped


def test_window_items_wrap_around():
    items = [{"id": str(k)} for k in range(5)]
    assert [i["id"] for i in pipeline.window_items(items, 2, 3)] == ["4", "0"]


@pytest.mark.parametrize("task", tasks.SCRIPTED_TASKS)
def test_planted_demonstrations_are_caught_and_repaired(task):
    items = tasks.load_items(task, "train")[:40]
    rng = random.Random(0)
    for it in items:
        wrong = loop.plant_error(it, rng)
        verdict = verify(it, wrong)
        assert not verdict.correct, (it["id"], wrong)
    kept, stats = loop.repair(items, [loop.plant_error(it, rng) for it in items])
    assert stats.corrected == len(items) and len(kept) == len(items)


def test_lmsi_keeps_majority_rationales_only():
    items = tasks.load_items("multistep_arithmetic", "train")[:2]
    a = items[0]
    wrong = a["rationale"].replace(f"answer is {a['answer']}", "answer is 777")
    samples = [[a["rationale"], a["rationale"], wrong], ["garbage", "garbage"]]
    kept, stats = loop.lmsi_select(items, samples, ev.final_answer)
    assert [(it["id"], r) for it, r, _ in kept] == [(a["id"], a["rationale"])]
    assert stats["unreadable"] == 2 and stats["items_kept"] == 1
    records = loop.plain_records(kept)
    assert records[0]["segments"][-1] == {"text": a["rationale"], "weight": 1.0}


def test_parse_trajectory_and_answers():
    text = (
        "(1) x\n(Final response) So the answer is 5.\nFeedback: In step (1) wrong."
        "\nUpdated Answer: Let's think step by step.\n(1) y\n(Final response) So the answer is 6."
        f"\nFeedback: Step (1) is correct. {ALL_CORRECT}"
    )
    answers, feedback = ev.parse_trajectory(text)
    assert [ev.final_answer(a) for a in answers] == ["5", "6"]
    assert feedback[-1].endswith(ALL_CORRECT)
    assert ev.final_answer("no final line") is None
    assert ev.is_correct({"answer": "a b c"}, "(Final response) So the answer is: a  b c.")


class SelfImprovingDouble:
    """First call: attempt, negative feedback, an update and no verdict; later: a verdict."""

    def __init__(self):
        self.calls = []

    def complete(self, prompts, params):
        self.calls.append(prompts)
        if len(self.calls) == 1:
            return [
                Completion(
                    text="(Final response) So the answer is 1.\nFeedback: wrong.\nUpdated Answer:"
                    " Let's think step by step.\n(Final response) So the answer is 2."
                )
                for _ in prompts
            ]
        return [Completion(text=f"\nFeedback: {ALL_CORRECT}") for _ in prompts]


def test_test_time_self_improvement_reprompts_an_unjudged_update():
    items = [{"id": "x", "question": "Q: 1 + 1 = ", "answer": "2", "task": "multistep_arithmetic"}]
    model = SelfImprovingDouble()
    states = ev.self_improve_generate(model, items, max_new_tokens=16, rounds=2)
    assert len(model.calls) == 2
    assert model.calls[1][0][-1] == "(Final response) So the answer is 2."
    r = ev.grade(items[0], states[0], "seen")
    assert r["correct_first"] is False and r["correct_final"] is True and r["n_updates"] == 1
    model = SelfImprovingDouble()
    states = ev.self_improve_generate(model, items, max_new_tokens=16, rounds=0)
    assert len(model.calls) == 1 and states[0]["answers"] == [
        "(Final response) So the answer is 1."
    ]


def test_summary_mean_and_standard_error():
    rows = [
        {"eval_split": s, "correct_first": c, "correct_final": True, "answer_first": None,
         "answer_final": "1", "n_updates": 0}
        for s, c in [("seen", True), ("seen", False), ("unseen", False), ("unseen", False)]
    ]  # fmt: skip
    s = ev.summarize(rows)
    assert s["seen"]["no_si"] == pytest.approx({"mean": 0.5, "se": 0.5 / 2**0.5})
    assert s["unseen"]["si"]["mean"] == 1.0 and s["all"]["n"] == 4
    assert s["all"]["unreadable_first"] == 4


def test_eval_items_use_the_paper_splits():
    for task, (seen, unseen) in {
        "multistep_arithmetic": (120, 240),
        "word_sort": (127, 252),
    }.items():
        items = pipeline.eval_items(task, None)
        assert sum(i["eval_split"] == "seen" for i in items) == seen
        assert sum(i["eval_split"] == "unseen" for i in items) == unseen
        limited = pipeline.eval_items(task, 5)
        assert [i["eval_split"] for i in limited] == ["seen"] * 5 + ["unseen"] * 5


def test_cli_evaluate_resumes_and_report(tiny, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", "--recipe", "arithmetic_default", "--model", f"hf:{tiny}",
            "--eval-limit", "2", "--eval-max-new-tokens", "6", "--label", "tiny",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["seen"]["n"] == 2 and summary["unseen"]["n"] == 2
    assert summary["all"]["no_si"]["mean"] == 0.0  # random weights
    lines = (out / "records.jsonl").read_text()
    assert main(argv) == 0
    assert (out / "records.jsonl").read_text() == lines  # nothing generated again
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "t.md")]) == 0
    assert "| tiny | 0.0 ± 0.0" in capsys.readouterr().out


class FewShotChat:
    """A ChatModel double: wrong first answers; as verifier says wrong; as improver fixes."""

    spec = "double"

    def __init__(self, item):
        self.item = item
        self.calls = 0

    def chat(self, conversations, params):
        self.calls += 1
        out = []
        for c in conversations:
            system = c[0]["content"]
            if "repair" in system:
                out.append(Completion(text=self.item["rationale"]))
            elif "check" in system:
                out.append(Completion(text="In step (1) the part x is incorrect."))
            else:
                out.append(Completion(text="(Final response) So the answer is 0."))
        return out


def test_fewshot_with_self_improvement():
    items = tasks.load_items("multistep_arithmetic", "test")[:1]
    demos = tasks.load_items("multistep_arithmetic", "train")[:2]
    model = FewShotChat(items[0])
    plain = ev.fewshot_generate(model, items, demos, max_new_tokens=8)
    assert ev.grade(items[0], plain[0], "seen")["correct_final"] is False
    si = ev.fewshot_generate(FewShotChat(items[0]), items, demos, max_new_tokens=8, rounds=1)
    r = ev.grade(items[0], si[0], "seen")
    assert r["correct_first"] is False and r["correct_final"] is True


def test_collection_stats_go_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    recipe = load_recipe("arithmetic_default", report_to="wandb")
    pipeline._wandb_log(recipe, tmp_path, 1, {"attempts": 4, "corrected": 3, "dropped": 1})
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_unknown_wandb_mode_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offlne")
    recipe = load_recipe("arithmetic_default", report_to="wandb")
    with pytest.raises(ValueError, match="WANDB_MODE='offlne'"):
        pipeline._wandb_log(recipe, tmp_path, 1, {"attempts": 4})
    assert not (tmp_path / "wandb").exists()


def test_shipped_recipes_map_onto_training(tmp_path):
    from pathlib import Path

    import torch

    from chorus_shared.training.recipe import training_arguments
    from chorus_tripost.recipes import available_recipes

    assert {
        "arithmetic_offline",
        "wordsort_offline",
        "arithmetic_llama7b",
        "wordsort_llama7b",
    } <= set(available_recipes())
    paper = load_recipe("arithmetic_llama7b")
    tr = pipeline.train_recipe(paper, paper.model, paper.baseline_epochs)
    assert (tr.learning_rate, tr.num_train_epochs, tr.model) == (
        1e-6,
        5.0,
        "hf:huggyllama/llama-7b",
    )
    ds = json.loads(Path(tr.deepspeed).read_text())["zero_optimization"]
    assert ds["stage"] == 2 and ds["offload_optimizer"]["device"] == "cpu"
    assert load_recipe("wordsort_llama7b").task == "word_sort"
    assert pipeline.deepspeed_config("zero3") == "zero3"  # the core's names pass through
    offline = load_recipe("arithmetic_offline")
    tr = pipeline.train_recipe(offline, "default", offline.baseline_epochs)
    assert tr.bf16 is True
    if not torch.cuda.is_available():
        assert tr.extra_args == {"use_cpu": True}
        assert training_arguments(tr, tmp_path).bf16  # accepted on CPU
    assert load_recipe("wordsort_offline").task == "word_sort"


def test_training_and_evaluation_phases_run_as_ray_tasks(tiny, tmp_path):
    import os

    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:

        def pid():
            return os.getpid()

        call = pipeline.phase_runner(True)
        assert call(pid) != os.getpid()  # a phase runs in a Ray worker process
        recipe = _tiny_recipe(tiny)
        metrics = pipeline.run_training(recipe, tmp_path / "r", num_iterations=1, use_ray=True)
        assert metrics["iterations_done"] == 1
        assert (tmp_path / "r" / "iter-1" / "train" / "model" / "config.json").is_file()
        argv = ["evaluate", "--recipe", "arithmetic_default", "--model", metrics["final_model"],
                "--eval-limit", "1", "--eval-max-new-tokens", "4", "--ray",
                "--out", str(tmp_path / "ev")]  # fmt: skip
        assert main(argv) == 0
        assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["all"]["n"] == 2
    finally:
        ray.shutdown()


class SamplingDouble:
    """Raw-model double for LMSI: per item, two samples with the right answer, one wrong."""

    def __init__(self, by_question):
        self.by_question = by_question
        self.seen_params = []

    def complete(self, prompts, params):
        self.seen_params.append(params)
        out = []
        for k, p in enumerate(prompts):
            right = self.by_question[p[0]]
            out.append(
                Completion(text=right if k % 3 else right.replace("answer is", "answer is 9"))
            )
        return out


def test_collect_window_for_each_method():
    items = tasks.load_items("multistep_arithmetic", "train")[:3]
    by_q = {loop.question_text(it): it["rationale"] for it in items}
    lmsi = load_recipe("arithmetic_default", method="lmsi", lmsi_samples=3, add_gold=False)
    model = SamplingDouble(by_q)
    records, stats = pipeline.collect_window(lmsi, model, items)
    assert model.seen_params[0].temperature == lmsi.lmsi_temperature
    assert stats["items_kept"] == 3 and stats["samples_kept"] == 3  # duplicates kept once
    assert all(r["segments"][-1]["text"] in by_q.values() for r in records)
    demo = load_recipe("arithmetic_default", method="ft_demo")
    records, stats = pipeline.collect_window(demo, None, items)  # no model: planted errors
    assert stats["corrected"] == 3 and stats["improvement_samples"] == 3
    assert len(records) == 3 + 3 and stats["ratio"] is None  # + gold; no plain sample
    whole = load_recipe("arithmetic_default", method="ft_demo", convert_to_turns=False)
    records, stats = pipeline.collect_window(whole, None, items)
    assert stats["samples"] == 3 and sum(r["id"].endswith("-traj") for r in records) == 3
    # lmsi and tripost sample the model: without one, a clear error (not an AttributeError).
    for method in ("lmsi", "tripost"):
        recipe = load_recipe("arithmetic_default", method=method)
        with pytest.raises(ValueError, match="samples the model"):
            pipeline.collect_window(recipe, None, items)


def test_llm_helper_models_need_both_specs():
    from chorus_tripost.helpers import load_helper_models

    scripted = load_recipe("arithmetic_default")  # scripted helpers: no LLM specs
    with pytest.raises(ValueError, match="verifier_model and improver_model"):
        load_helper_models(scripted)
