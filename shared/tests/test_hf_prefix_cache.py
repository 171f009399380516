"""Prefix reuse between chat calls in the transformers backend (tiny random Llama, float32)."""

from pathlib import Path

import pytest
import torch

from chorus_shared.models import SamplingParams, load_chat_model
from chorus_shared.models.hf import HFChatModel
from chorus_shared.models.prefix_cache import PrefixCache, PrefixEntry

QUESTIONS = [
    "What is 2+2? Compute it step by step, then box the answer.",
    "Compute 3+4*5-2 step by step please, and box it.",
    "Ada Lovelace was a mathematician born in London. When?",
    "yes or no: is 7 a prime number? Check each step again.",
]


def opening(q: str) -> list[dict]:
    return [{"role": "user", "content": q}]


def follow_up(q: str, reply: str, others: list[str]) -> list[dict]:
    # Debate round 2: the agent's own history, then the other agents' answers.
    joined = " ".join(f"One agent answered: {o}" for o in others)
    return [
        {"role": "user", "content": q},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": f"{joined} Update your answer."},
    ]


def load(tiny_model_dir: Path, **kw) -> HFChatModel:
    model = load_chat_model(f"hf:{tiny_model_dir}", dtype="float32", batch_size=8, **kw)
    assert isinstance(model, HFChatModel)
    return model


def two_rounds(model: HFChatModel, params: SamplingParams, questions: list[str]) -> list[str]:
    round1 = model.chat([opening(q) for q in questions], params)
    first = [c.text for c in round1]
    model.round1_prompt_tokens = sum(c.prompt_tokens for c in round1)  # type: ignore[attr-defined]
    store = model.prefix_cache
    model.hits_before_round2 = store.hit_tokens if store else 0  # type: ignore[attr-defined]
    second = model.chat(
        [
            follow_up(q, first[i], [first[j] for j in range(len(questions)) if j != i])
            for i, q in enumerate(questions)
        ],
        params,
    )
    return first + [c.text for c in second]


@pytest.mark.parametrize("kv_cache", ["dynamic", "static"])
def test_reuse_gives_the_plain_paths_greedy_output(tiny_model_dir: Path, kv_cache: str) -> None:
    params = SamplingParams(max_new_tokens=12)
    plain = load(tiny_model_dir, kv_cache=kv_cache)
    reusing = load(tiny_model_dir, kv_cache=kv_cache, prefix_cache_mb=64, prefix_min_tokens=4)
    want = two_rounds(plain, params, QUESTIONS)
    got = two_rounds(reusing, params, QUESTIONS)
    assert got == want
    store = reusing.prefix_cache
    assert store is not None and plain.prefix_cache is None
    # Round 2 really started from round 1's KV: each round-2 prompt begins with its round-1
    # prompt (+ reply), and at least that much was served from the cache, not prefilled.
    assert store.hit_tokens - reusing.hits_before_round2 >= reusing.round1_prompt_tokens


@pytest.mark.parametrize("layout", ["max", "fit"])
def test_mixed_hit_and_miss_rows_in_one_batch(tiny_model_dir: Path, layout: str) -> None:
    params = SamplingParams(max_new_tokens=10)
    plain = load(tiny_model_dir)
    reusing = load(tiny_model_dir, prefix_cache_mb=64, prefix_min_tokens=4, prefix_layout=layout)
    seen = QUESTIONS[:2]
    replies = [c.text for c in reusing.chat([opening(q) for q in seen], params)]
    # One batch: two long hits, a fresh short prompt and a fresh long one (holes of every size).
    batch = [
        follow_up(seen[0], replies[0], [replies[1]]),
        opening("hi"),
        follow_up(seen[1], replies[1], [replies[0], "the answer is 42"]),
        opening(QUESTIONS[3] + " " + QUESTIONS[2]),
    ]
    before = reusing.prefix_cache.hit_tokens
    got = reusing.chat(batch, params)
    want = plain.chat(batch, params)
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in want]
    assert [c.completion_tokens for c in got] == [c.completion_tokens for c in want]
    if layout == "max":
        assert reusing.prefix_cache.hit_tokens > before


def test_sampling_with_reuse_is_seeded(tiny_model_dir: Path) -> None:
    params = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)
    a = two_rounds(load(tiny_model_dir, prefix_cache_mb=64, prefix_min_tokens=4), params, QUESTIONS)
    b = two_rounds(load(tiny_model_dir, prefix_cache_mb=64, prefix_min_tokens=4), params, QUESTIONS)
    assert a == b and all(isinstance(t, str) for t in a)


def test_memory_bound_evicts_least_recently_used(tiny_model_dir: Path) -> None:
    params = SamplingParams(max_new_tokens=8)
    model = load(tiny_model_dir, prefix_cache_mb=64, prefix_min_tokens=4)
    model.chat([opening(q) for q in QUESTIONS], params)
    store = model.prefix_cache
    sizes = [store.get(k).nbytes for k in list(store._entries)]
    assert len(sizes) == len(QUESTIONS)
    # Room for about two entries: filling it again must evict and stay under the bound.
    small = load(tiny_model_dir, prefix_cache_mb=(max(sizes) * 2.5) / 2**20, prefix_min_tokens=4)
    small.chat([opening(q) for q in QUESTIONS], params)
    assert small.prefix_cache.nbytes <= small.prefix_cache.max_bytes
    assert 1 <= len(small.prefix_cache) < len(QUESTIONS)
    assert small.prefix_cache.evictions >= 1
    # Outputs still match the plain path after eviction (misses are prefilled as usual).
    plain = load(tiny_model_dir)
    assert two_rounds(small, params, QUESTIONS) == two_rounds(plain, params, QUESTIONS)


def test_prefix_cache_lookup_insert_and_bounds() -> None:
    def entry(ids: list[int]) -> PrefixEntry:
        return PrefixEntry(ids=torch.tensor(ids), kv=torch.zeros(1, 2, 1, len(ids), 2))

    store = PrefixCache(max_bytes=10_000)
    store.insert(entry([1, 2, 3]))
    key_b = store.insert(entry([1, 2, 9, 9]))
    assert store.lookup(torch.tensor([1, 2, 9, 9, 5])) == (key_b, 4)
    assert store.lookup(torch.tensor([1, 2, 3, 4]))[1] == 3
    assert store.lookup(torch.tensor([7])) == (None, 0)
    # An extension replaces the entry it extends; a prefix of a stored entry is not stored.
    store.insert(entry([1, 2, 3, 4, 5]))
    assert len(store) == 2
    assert store.insert(entry([1, 2, 3])) is None and len(store) == 2
    with pytest.raises(ValueError, match="prefix cache size"):
        PrefixCache(0)


def test_bad_size_is_one_clear_error(tiny_model_dir: Path) -> None:
    with pytest.raises(ValueError, match="prefix_cache_mb"):
        load(tiny_model_dir, prefix_cache_mb=-1)
    with pytest.raises(ValueError, match="prefix_layout"):
        load(tiny_model_dir, prefix_cache_mb=1, prefix_layout="tight")


def test_only_full_attention_models_reuse_prefixes() -> None:
    from transformers import LlamaConfig, MistralConfig

    from chorus_shared.models.hf import _full_attention_only

    assert _full_attention_only(LlamaConfig())
    # A sliding window forgets old keys: re-inserted full prefixes would change the attention.
    assert not _full_attention_only(MistralConfig(sliding_window=4096))
    assert _full_attention_only(MistralConfig(sliding_window=None))


def test_fit_layout_never_widens_the_batch(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir, prefix_cache_mb=64)
    model.prefix_layout = "fit"
    lengths, reused = [100, 80, 120], [60, 10, 50]
    width = model._prefix_width(lengths, reused)
    # Every row keeps min(m, P) reused tokens; prefix + longest suffix fits in max(lengths).
    assert width + max(n - min(m, width) for n, m in zip(lengths, reused, strict=True)) <= max(
        lengths
    )
    assert width == 50  # row 2 (120 tokens, 50 reused) is the binding one
    model.prefix_layout = "max"
    assert model._prefix_width(lengths, reused) == 60
