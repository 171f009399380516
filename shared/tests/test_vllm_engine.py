"""The real vLLM engine on the embedded SmolLM2 (``make test-vllm`` runs these in .venv-vllm).

Skipped, with the reason, where vLLM is not installed (the default ``.venv``); the first engine
start compiles for about a minute and a half on CPU, so one engine serves the whole module.
"""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.vllm
pytest.importorskip(
    "vllm",
    reason="vLLM is not installed in this environment: run `make setup-vllm`, then "
    "`make test-vllm`",
)

from chorus_shared.models import SamplingParams, load_chat_model  # noqa: E402
from chorus_shared.models.hf import HFChatModel  # noqa: E402

# A small KV-cache pool (GiB) on CPU: the tests hold a few short conversations only.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 12 plus 30? Answer with a number."}],
    [
        {"role": "system", "content": "You are a careful math tutor."},
        {"role": "user", "content": "Name the largest planet of the solar system."},
    ],
    [
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Now count from one to five in words."},
    ],
]


@pytest.fixture(scope="module")
def hf_replies():
    # Computed before the vLLM engine starts: on CPU its worker threads compete for the cores.
    model = HFChatModel.from_default(dtype="float32")
    replies = model.chat(CONVERSATIONS, SamplingParams(max_new_tokens=24))
    return replies, [len(model.render(c)) for c in CONVERSATIONS]


@pytest.fixture(scope="module")
def vllm_model(hf_replies):
    return load_chat_model("vllm:default", dtype="float32", max_model_len=2048)


def test_prompt_and_reply_token_counts_match_the_hf_backend(vllm_model, hf_replies) -> None:
    want, rendered = hf_replies
    got = vllm_model.chat(CONVERSATIONS, SamplingParams(max_new_tokens=24))
    assert vllm_model.spec == "vllm:default"
    assert vllm_model.engine_kwargs["enable_prefix_caching"] is True
    # Same chat template, same tokenization of the rendered prompt.
    assert [c.prompt_tokens for c in got] == rendered == [c.prompt_tokens for c in want]
    for c in got:
        assert c.finish_reason in ("stop", "length") and c.error is None
        assert c.text and c.text == c.text.strip()
        # A reply that ran out of budget has exactly the budget; one that stopped counts its
        # end-of-sequence token, as the hf backend does.
        if c.finish_reason == "length":
            assert c.completion_tokens == 24
        else:
            assert 0 < c.completion_tokens <= 24
    # Greedy, same weights, same dtype: the replies open with the same words as transformers'.
    for a, b in zip(got, want, strict=True):
        assert a.text.split()[:3] == b.text.split()[:3]


def test_stop_strings_cut_the_reply_like_the_hf_backend(vllm_model) -> None:
    conv = [CONVERSATIONS[2]]
    (full,) = vllm_model.chat(conv, SamplingParams(max_new_tokens=32))
    words = full.text.split()
    assert len(words) >= 4, full.text
    stop = words[3]  # a word the greedy reply is known to reach
    (cut,) = vllm_model.chat(conv, SamplingParams(max_new_tokens=32, stop=(stop,)))
    assert cut.finish_reason == "stop"
    # The reply ends before the stop string's first occurrence, the string itself left out.
    assert cut.text == full.text[: full.text.find(stop)].strip()
    assert cut.completion_tokens < full.completion_tokens


def test_seeded_sampling_runs_on_cpu_and_samples_differ(vllm_model) -> None:
    convs = [CONVERSATIONS[0]] * 4
    params = SamplingParams(max_new_tokens=32, temperature=1.0, seed=7)
    if vllm_model.on_cpu:
        # Per-request seeds are GPU-only: on CPU the engine seed is used, with one warning.
        with pytest.warns(RuntimeWarning, match="cannot seed single requests"):
            out = vllm_model.chat(convs, params)
    else:
        out = vllm_model.chat(convs, params)
    assert len(out) == 4 and all(c.error is None for c in out)
    assert len({c.text for c in out}) > 1


def test_raw_prompt_continuation_uses_no_chat_template(vllm_model) -> None:
    from transformers import AutoTokenizer

    from chorus_shared.models.embedded import default_model_dir

    prompts = ["The capital of France is", "1, 2, 3, 4,"]
    got = vllm_model.complete(prompts, SamplingParams(max_new_tokens=8))
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    # The prompt is the raw text's own tokens, as the hf backend's complete() sends it.
    assert [c.prompt_tokens for c in got] == [len(tokenizer(p)["input_ids"]) for p in prompts]
    assert all(c.finish_reason in ("stop", "length") and c.text for c in got)
