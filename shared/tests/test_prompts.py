"""Tests for chorus_shared.prompts: chat messages, few-shot assembly, rendering, truncation."""

from __future__ import annotations

import pytest

from chorus_shared.prompts import few_shot, render, template_fields, to_chat, truncate_to_tokens


def test_to_chat() -> None:
    assert to_chat("hi") == [{"role": "user", "content": "hi"}]
    assert to_chat("hi", system="be brief") == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    # An empty system prompt is still a system prompt; only None means "none".
    assert to_chat("hi", system="")[0] == {"role": "system", "content": ""}


def test_few_shot_default_template() -> None:
    prompt = few_shot([("1+1?", "2"), ("2+2?", "4")], "3+3?")
    assert prompt == "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA: 4\n\nQ: 3+3?\nA:"


def test_few_shot_custom_template_and_separator() -> None:
    prompt = few_shot(
        [("a", "b")], "c", template="Question: {question}\nAnswer: {answer}", sep="\n###\n"
    )
    assert prompt == "Question: a\nAnswer: b\n###\nQuestion: c\nAnswer:"


def test_few_shot_zero_shot_and_braces_in_text() -> None:
    # Braces inside questions are data, not template fields.
    assert few_shot([], "what is {x}?") == "Q: what is {x}?\nA:"


def test_few_shot_template_must_have_both_fields() -> None:
    with pytest.raises(ValueError, match="answer"):
        few_shot([("a", "b")], "c", template="Q: {question}")


def test_template_fields() -> None:
    assert template_fields("{a} {b.c} {d[0]} {a} {{literal}}") == ["a", "b", "d"]
    assert template_fields("{x:{width}}") == ["x", "width"]
    assert template_fields("no fields") == []


def test_render_fills_fields_and_ignores_extras() -> None:
    assert render("{q} -> {a}", q="x", a="y", unused=1) == "x -> y"


def test_render_names_the_missing_field() -> None:
    with pytest.raises(KeyError) as info:
        render("Question: {question}\nFormat: {format}", question="q")
    message = str(info.value)
    assert "'format'" in message
    assert "['question', 'format']" in message  # the template's fields
    assert "['question']" in message  # what was given


def test_render_positional_field_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="positional"):
        render("{} and {name}", name="x")


class WordTokenizer:
    """The encode/decode surface of a HF tokenizer, one token per word."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.calls: list[dict] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.calls.append({"add_special_tokens": add_special_tokens})
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return ([999] if add_special_tokens else []) + ids

    def decode(self, ids: list[int], **kwargs: object) -> str:
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)


def test_truncate_to_tokens_left_and_right() -> None:
    tok = WordTokenizer()
    text = "one two three four five"
    assert truncate_to_tokens(text, tok, 2) == "four five"
    assert truncate_to_tokens(text, tok, 2, side="right") == "one two"
    assert truncate_to_tokens(text, tok, 5) == text  # fits: unchanged, not re-decoded
    assert truncate_to_tokens(text, tok, 0) == ""
    assert all(call["add_special_tokens"] is False for call in tok.calls)


def test_truncate_to_tokens_validates_arguments() -> None:
    with pytest.raises(ValueError, match="side"):
        truncate_to_tokens("a b", WordTokenizer(), 1, side="middle")
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_to_tokens("a b", WordTokenizer(), -1)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A real HF fast tokenizer: byte-level BPE trained in memory (no hub, no files)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<s>"],
    )
    corpus = ["the quick brown fox jumps over the lazy dog, again and again."] * 20
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>")


def test_truncate_to_tokens_with_a_real_hf_tokenizer(bpe_tokenizer) -> None:
    text = "The lazy dog, said the quick brown fox, jumps over   again!"
    n = len(bpe_tokenizer.encode(text, add_special_tokens=False))
    assert n > 6
    kept_end = truncate_to_tokens(text, bpe_tokenizer, 6)
    kept_start = truncate_to_tokens(text, bpe_tokenizer, 6, side="right")
    # Byte-level BPE decodes a slice of tokens to exactly the matching slice of text.
    assert text.endswith(kept_end) and kept_end != text
    assert text.startswith(kept_start) and kept_start != text
    assert len(bpe_tokenizer.encode(kept_end, add_special_tokens=False)) <= 6
    assert truncate_to_tokens(text, bpe_tokenizer, n) == text
