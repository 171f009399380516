"""Prompt helpers. The templates themselves live next to the method that uses them."""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["few_shot", "render", "template_fields", "to_chat", "truncate_to_tokens"]


class _Tokenizer(Protocol):
    def encode(self, text: str, *args: Any, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: list[int], *args: Any, **kwargs: Any) -> str: ...


def to_chat(user: str, system: str | None = None) -> list[dict]:
    """Return an OpenAI-style message list: an optional system message, then the user turn."""
    messages: list[dict] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    return messages


def template_fields(template: str) -> list[str]:
    """Return the names of the replacement fields of a format string, in order, without repeats.

    ``"{a.b} {c[0]} {a}"`` gives ``["a", "c"]``; positional fields come back as ``"0"``, ``"1"``,
    and so on (an automatically numbered ``{}`` is reported as ``""``).
    """
    names: list[str] = []
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        base = field.split(".", 1)[0].split("[", 1)[0]
        if base not in names:
            names.append(base)
        # A format spec may itself hold fields, as in "{x:{width}}".
        if spec:
            names.extend(n for n in template_fields(spec) if n not in names)
    return names


def render(template: str, **fields: Any) -> str:
    """Return ``template.format(**fields)``.

    A missing field raises KeyError naming the field, the fields the template uses and the
    fields that were given, instead of the bare ``KeyError: 'x'`` of ``str.format``. Extra
    fields are ignored, as with ``str.format``.
    """
    try:
        return template.format(**fields)
    except (KeyError, IndexError) as err:
        missing = err.args[0] if isinstance(err, KeyError) and err.args else "positional {}"
        raise KeyError(
            f"template field {missing!r} was not given; the template uses "
            f"{template_fields(template)} and the call gave {sorted(fields)}"
        ) from None


def few_shot(
    examples: Sequence[tuple[str, str]],
    query: str,
    template: str = "Q: {question}\nA: {answer}",
    sep: str = "\n\n",
) -> str:
    """Return a few-shot prompt: each (question, answer) example rendered, then the query.

    The query is rendered with an empty answer and trailing spaces removed, so the prompt ends
    with "A:" rather than "A: " (a trailing space tokenizes badly for most BPE vocabularies).
    The template must use both ``{question}`` and ``{answer}``.
    """
    names = template_fields(template)
    for needed in ("question", "answer"):
        if needed not in names:
            raise ValueError(f"few-shot template must contain {{{needed}}}: {template!r}")
    shots = [render(template, question=q, answer=a) for q, a in examples]
    shots.append(render(template, question=query, answer="").rstrip(" \t"))
    return sep.join(shots)


def truncate_to_tokens(
    text: str, tokenizer: _Tokenizer, max_tokens: int, side: str = "left"
) -> str:
    """Return ``text`` cut to at most ``max_tokens`` tokens of ``tokenizer``.

    ``side="left"`` drops tokens from the start (keeps the end, as for a chat history that
    must fit a context window); ``side="right"`` drops them from the end. Text that already
    fits comes back unchanged. Special tokens are neither added nor counted.
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    ids = list(tokenizer.encode(text, add_special_tokens=False))
    if len(ids) <= max_tokens:
        return text
    if max_tokens == 0:
        return ""
    kept = ids[-max_tokens:] if side == "left" else ids[:max_tokens]
    # Tokenizer "clean-up" would rewrite spaces around punctuation; we want the text as written.
    return tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
