"""The transformers backend on a tiny random model (and one smoke test on the embedded model)."""

from dataclasses import replace
from pathlib import Path

import pytest

from chorus_shared.models import (
    ChatTemplateError,
    ModelSpecError,
    SamplingParams,
    load_chat_model,
    model_load_error,
)
from chorus_shared.models.hf import HFChatModel


def conv(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


PROMPTS = ["What is 2+2?", "hi", "Compute 3+4*5-2 step by step please, and box it.", "yes", "no"]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> HFChatModel:
    return load_chat_model(f"hf:{tiny_model_dir}", batch_size=2)


def test_batched_greedy_equals_one_at_a_time(model: HFChatModel) -> None:
    params = SamplingParams(max_new_tokens=12)
    batched = model.chat([conv(p) for p in PROMPTS], params)
    single = [model.chat([conv(p)], params)[0] for p in PROMPTS]
    # Left padding with an attention mask must not change what a prompt generates.
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]
    assert all(c.completion_tokens >= 1 for c in batched)


def test_order_is_kept_across_length_sorted_micro_batches(model: HFChatModel) -> None:
    params = SamplingParams(max_new_tokens=6)
    reversed_out = model.chat([conv(p) for p in reversed(PROMPTS)], params)
    forward_out = model.chat([conv(p) for p in PROMPTS], params)
    assert [c.text for c in reversed_out] == [c.text for c in reversed(forward_out)]


def test_micro_batches_respect_size_and_token_budget(model: HFChatModel) -> None:
    prompts = [[1] * n for n in (5, 50, 7, 30, 2)]
    batches = list(model._micro_batches(prompts, max_new=10))
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert all(len(b) <= model.batch_size for b in batches)
    # longest first
    assert batches[0][0] == 1
    model.max_batch_tokens, saved = 70, model.max_batch_tokens
    try:
        batches = list(model._micro_batches(prompts, max_new=10))
        for b in batches:
            width = max(len(prompts[i]) for i in b) + 10
            assert len(b) == 1 or width * len(b) <= 70
    finally:
        model.max_batch_tokens = saved


def test_length_finish_reason_and_token_count(model: HFChatModel) -> None:
    out = model.chat([conv("hi")], SamplingParams(max_new_tokens=3))[0]
    assert out.finish_reason in ("length", "stop")
    assert out.completion_tokens <= 3
    if out.finish_reason == "length":
        assert out.completion_tokens == 3


def test_stop_string_cuts_reply(model: HFChatModel) -> None:
    free = model.chat([conv("hi")], SamplingParams(max_new_tokens=20))[0].text
    assert len(free) > 2
    stop = free[1:3]
    cut = model.chat([conv("hi")], SamplingParams(max_new_tokens=20, stop=(stop,)))[0]
    assert stop not in cut.text
    assert cut.finish_reason == "stop"
    assert free.startswith(cut.text)


def test_sampling_is_seeded(model: HFChatModel) -> None:
    convs = [conv(p) for p in PROMPTS]
    a = model.chat(convs, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7))
    b = model.chat(convs, SamplingParams(max_new_tokens=10, temperature=1.0, seed=7))
    c = model.chat(convs, SamplingParams(max_new_tokens=10, temperature=1.0, seed=8))
    assert [x.text for x in a] == [x.text for x in b]
    assert [x.text for x in a] != [x.text for x in c]


def test_repetition_penalty_reaches_generate(model: HFChatModel) -> None:
    convs = [conv(p) for p in PROMPTS]
    plain = model.chat(convs, SamplingParams(max_new_tokens=16))
    again = model.chat(convs, SamplingParams(max_new_tokens=16, repetition_penalty=1.0))
    penalised = model.chat(convs, SamplingParams(max_new_tokens=16, repetition_penalty=50.0))
    assert [c.text for c in plain] == [c.text for c in again]
    # A random tiny model repeats tokens; a strong penalty must change what greedy picks.
    assert [c.text for c in plain] != [c.text for c in penalised]
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        SamplingParams(repetition_penalty=0.0)


def test_min_p_reaches_generate(model: HFChatModel) -> None:
    convs = [conv(p) for p in PROMPTS]
    hot = SamplingParams(max_new_tokens=16, temperature=1.0, seed=0)
    wild = model.chat(convs, hot)
    # A random model's next-token distribution is nearly flat; min_p 0.999 keeps only tokens within
    # 0.1 % of the top one, so the sample must equal greedy decoding, which the plain one does not.
    greedy = model.chat(convs, SamplingParams(max_new_tokens=16))
    trimmed = model.chat(convs, replace(hot, min_p=0.999))
    assert [c.text for c in trimmed] == [c.text for c in greedy]
    assert [c.text for c in wild] != [c.text for c in greedy]
    # Off (0.0) is the plain sampler, seed for seed.
    assert [c.text for c in model.chat(convs, replace(hot, min_p=0.0))] == [c.text for c in wild]
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_p must be in"):
            SamplingParams(min_p=bad)


def test_greedy_duplicates_are_generated_once(model: HFChatModel, monkeypatch) -> None:
    seen: list[int] = []
    real = model._generate

    def spy(prompts, params):
        seen.append(len(prompts))
        return real(prompts, params)

    monkeypatch.setattr(model, "_generate", spy)
    out = model.chat([conv("same")] * 3 + [conv("other")], SamplingParams(max_new_tokens=5))
    assert sum(seen) == 2
    assert out[0].text == out[1].text == out[2].text
    assert out[1].extra == {"shared_with": 0}
    seen.clear()
    model.chat([conv("same")] * 3, SamplingParams(max_new_tokens=5, temperature=1.0, seed=0))
    assert sum(seen) == 3  # sampling: every agent gets its own draw


def test_system_message_rejected_by_template_is_one_clear_error(tiny_nosys_dir: Path) -> None:
    model = load_chat_model(f"hf:{tiny_nosys_dir}")
    with pytest.raises(ChatTemplateError, match="drop --sys"):
        model.chat(
            [[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]],
            SamplingParams(max_new_tokens=2),
        )
    assert model.chat([conv("hi")], SamplingParams(max_new_tokens=2))[0].completion_tokens >= 1


def test_bad_specs_and_conversations(tmp_path: Path, model: HFChatModel) -> None:
    with pytest.raises(ModelSpecError, match="hf:<hub id or local path>"):
        load_chat_model("mistral-7b")
    with pytest.raises(ModelSpecError, match="unknown backend"):
        load_chat_model("tgi:foo")
    with pytest.raises(ModelSpecError, match="local folder"):
        load_chat_model(f"hf:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="role"):
        model.chat([[{"role": "robot", "content": "x"}]], SamplingParams())
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)


@pytest.mark.smoke
def test_embedded_default_model_answers_offline(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_chat_model("default", batch_size=4)
    out = model.chat(
        [conv("What is the capital of France? Answer in one word.")] * 2,
        SamplingParams(max_new_tokens=16),
    )
    assert model.spec == "default"
    assert "paris" in out[0].text.lower()
    assert out[0].text == out[1].text


def test_auto_dtype_is_bf16_only_where_the_cpu_has_native_bf16(monkeypatch) -> None:
    import torch

    from chorus_shared.models import hf

    assert hf.cpu_has_native_bf16("processor: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n")
    assert hf.cpu_has_native_bf16("flags : fpu avx512_bf16\n")
    assert not hf.cpu_has_native_bf16("flags : fpu sse avx2 avx512f\n")
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: True)
    assert hf._pick_dtype("auto", "cpu") is torch.bfloat16
    assert hf._pick_dtype("float32", "cpu") is torch.float32  # an explicit dtype wins
    monkeypatch.setattr(hf, "cpu_has_native_bf16", lambda: False)
    assert hf._pick_dtype("auto", "cpu") is torch.float32
    assert hf._pick_dtype("auto", "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        hf._pick_dtype("float33", "cpu")


def test_static_kv_cache_gives_the_plain_paths_greedy_output(tiny_model_dir: Path) -> None:
    plain = load_chat_model(f"hf:{tiny_model_dir}", batch_size=3, dtype="float32")
    static = load_chat_model(
        f"hf:{tiny_model_dir}", batch_size=3, dtype="float32", kv_cache="static"
    )
    params = SamplingParams(max_new_tokens=10)
    # Two calls with different batch shapes: the preallocated cache must be rebuilt, not reused.
    for prompts in (PROMPTS, PROMPTS[:2]):
        want = plain.chat([conv(p) for p in prompts], params)
        got = static.chat([conv(p) for p in prompts], params)
        assert [c.text for c in got] == [c.text for c in want]
        assert [c.completion_tokens for c in got] == [c.completion_tokens for c in want]
    with pytest.raises(ValueError, match="kv_cache"):
        load_chat_model(f"hf:{tiny_model_dir}", kv_cache="paged")


@pytest.mark.parametrize("spec", ["/nonexistent/model", "./missing-model", "runs/train/model"])
def test_a_missing_local_folder_is_named_as_one(spec: str) -> None:
    with pytest.raises(ModelSpecError, match=r"the local folder .* does not exist") as caught:
        HFChatModel.from_pretrained(spec)
    assert spec in str(caught.value) and "--model default" in str(caught.value)


def test_a_hub_id_is_named_as_one() -> None:
    error = model_load_error("org/name", OSError("no network"))
    assert "(hub id)" in str(error) and "no network" in str(error)
