"""Raw-prompt continuation (``complete``) on every backend: plain LMs are prompted with text,
never wrapped in a chat template (SelFee's and TriPosT's models are plain LMs)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from chorus_shared.models import ChatTemplateError, SamplingParams, TextModel, load_chat_model
from chorus_shared.models.openai_api import OpenAIChatModel
from chorus_shared.testing import FakeOpenAIServer
from chorus_shared.testing.tiny import build_tiny_chat_model


@pytest.fixture(scope="module")
def plain_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A base model: the same tiny Llama, saved without any chat template.
    path = build_tiny_chat_model(tmp_path_factory.mktemp("plain") / "model")
    config = json.loads((path / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    (path / "chat_template.jinja").unlink(missing_ok=True)
    return path


def test_hf_loads_a_model_without_chat_template_and_continues_raw_text(plain_lm_dir) -> None:
    model = load_chat_model(f"hf:{plain_lm_dir}", batch_size=2)
    assert isinstance(model, TextModel)
    prompts = ["Below is an instruction.\n\n### Instruction:\nadd 1 and 2", "hi", "a b c d e"]
    params = SamplingParams(max_new_tokens=5)
    got = model.complete(prompts, params)
    # The prompt is the raw text's own tokens: no template around it.
    assert [c.prompt_tokens for c in got] == [len(model.tokenizer(p)["input_ids"]) for p in prompts]
    # Batched continuation equals one prompt at a time (greedy).
    assert [c.text for c in got] == [model.complete([p], params)[0].text for p in prompts]
    # chat() on a plain LM is one clear error that says what to do instead.
    with pytest.raises(ChatTemplateError, match=r"no chat template.*complete"):
        model.chat([[{"role": "user", "content": "hi"}]], params)


def test_complete_rejects_non_string_prompts(plain_lm_dir) -> None:
    model = load_chat_model(f"hf:{plain_lm_dir}")
    with pytest.raises(ValueError, match="list of strings"):
        model.complete([["pieces"]], SamplingParams(max_new_tokens=2))  # type: ignore[list-item]


def test_openai_complete_uses_the_completions_endpoint() -> None:
    with FakeOpenAIServer() as server:
        model = OpenAIChatModel("fake-model", base_url=server.base_url, backoff_s=0.001)
        got = model.complete(["### Instruction:\nsay hi\n\n### Response:", "two"], SamplingParams())
        body = server.requests[0]
    assert [c.text for c in got] == ["echo: ### Instruction:\nsay hi\n\n### Response:", "echo: two"]
    assert "prompt" in body and "messages" not in body
    assert all(c.finish_reason == "stop" and c.error is None for c in got)


def test_openai_complete_error_is_an_errored_completion_not_an_answer() -> None:
    def refuse(body: dict) -> str:
        raise ValueError("bad prompt")

    with FakeOpenAIServer(refuse) as server:
        model = OpenAIChatModel("fake-model", base_url=server.base_url, backoff_s=0.001)
        got = model.complete(["x", "y"], SamplingParams())
    assert all(c.finish_reason == "error" and c.text == "" and "HTTP 400" in c.error for c in got)


def test_vllm_complete_is_one_batched_generate_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []

    class _Sample:
        def __init__(self) -> None:
            self.text, self.token_ids, self.finish_reason = " more", [1, 2], "stop"

    class _Out:
        def __init__(self) -> None:
            self.prompt_token_ids, self.outputs = [5, 6, 7], [_Sample()]

    class _LLM:
        def __init__(self, **kwargs) -> None:
            pass

        def generate(self, prompts, sampling_params=None, use_tqdm=True):
            calls.append((prompts, sampling_params))
            return [_Out() for _ in prompts]

    module = types.ModuleType("vllm")
    module.LLM = _LLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kwargs: kwargs  # type: ignore[attr-defined]
    module._chorus_cpu = False  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.platforms", None)
    from chorus_shared.models.vllm_backend import VLLMChatModel

    model = VLLMChatModel("some/model")
    got = model.complete(["raw one", "raw two"], SamplingParams(max_new_tokens=7, temperature=0.7))
    assert len(calls) == 1 and calls[0][0] == ["raw one", "raw two"]
    assert calls[0][1][0]["max_tokens"] == 7 and calls[0][1][0]["temperature"] == 0.7
    assert [c.text for c in got] == ["more", "more"] and got[0].prompt_tokens == 3
