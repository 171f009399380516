"""Constrained choice: make a local model answer with one of a few fixed strings.

A 135M model asked for "a score and a verdict" writes anything but them; asked to *continue*
its own critique with one of the allowed strings, it always gives one. ``ConstrainedChooser``
runs greedy decoding restricted to a trie of the allowed strings' token ids (transformers'
``prefix_allowed_tokens_fn``): at every step only tokens that keep the text on some allowed
string are kept, so the result is the allowed string the model prefers token by token. It is
one batched ``generate`` call for all prompts, a few steps long.

Used offline for the teacher's score + verdict (``teacher_verdict: constrained``) and the
judge's "a b" score line (``judge_scores: constrained``); API models keep free text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chorus_selfee.enforce import left_pad
from chorus_shared.models import Message


class ConstrainedChooser:
    """Pick one of ``choices`` per prompt with a transformers chat model (``HFChatModel``:
    ``.model``, ``.tokenizer``, ``.render``)."""

    def __init__(self, chat_model: Any, *, batch_size: int = 16) -> None:
        for attr in ("model", "tokenizer", "render"):
            if not hasattr(chat_model, attr):
                raise ValueError(
                    f"constrained choice needs a local transformers model (spec default or "
                    f"hf:…), got {getattr(chat_model, 'spec', chat_model)!r}; with an API "
                    "model use the free-text path (teacher_verdict: generate, judge_scores: "
                    "review)"
                )
        self.chat = chat_model
        self.batch_size = batch_size
        self.calls = 0

    def choose(
        self,
        conversations: Sequence[list[Message]],
        assistant_prefixes: Sequence[str],
        choices: Sequence[str],
    ) -> list[int]:
        """Return, per conversation, the index in ``choices`` of the string the model writes
        after ``assistant_prefix`` (the start of its own reply) when held to ``choices``."""
        if not choices or len(set(choices)) != len(choices):
            raise ValueError(f"choices must be distinct and non-empty, got {list(choices)!r}")
        if len(conversations) != len(assistant_prefixes):
            raise ValueError("one assistant prefix per conversation is required")
        tok = self.chat.tokenizer
        seqs = [tuple(tok(c, add_special_tokens=False)["input_ids"]) for c in choices]
        if any(not s for s in seqs) or any(a != b and a == b[: len(a)] for a in seqs for b in seqs):
            # A choice that is a token prefix of another could stop early; never ambiguous.
            raise ValueError(
                f"choices must tokenize to non-empty, prefix-free sequences: {choices}"
            )
        prompts = [
            self.chat.render(conv) + tok(prefix, add_special_tokens=False)["input_ids"]
            for conv, prefix in zip(conversations, assistant_prefixes, strict=True)
        ]
        out: list[int] = []
        for k in range(0, len(prompts), self.batch_size):
            out.extend(self._choose_batch(prompts[k : k + self.batch_size], seqs))
        return out

    def token_logprobs(
        self,
        conversations: Sequence[list[Message]],
        assistant_prefixes: Sequence[str],
        choices: Sequence[str],
    ) -> list[list[float]]:
        """Return, per conversation, the model's log-probability of each single-token choice
        as the next token after ``assistant_prefix`` (one batched forward pass, no decoding)."""
        import torch

        tok = self.chat.tokenizer
        ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        if any(len(x) != 1 for x in ids) or len({x[0] for x in ids}) != len(ids):
            raise ValueError(f"choices must be distinct single tokens, got {list(choices)!r}")
        prompts = [
            self.chat.render(conv) + tok(prefix, add_special_tokens=False)["input_ids"]
            for conv, prefix in zip(conversations, assistant_prefixes, strict=True)
        ]
        pad = self.chat.pad_token_id if hasattr(self.chat, "pad_token_id") else 0
        model = self.chat.model
        out: list[list[float]] = []
        for k in range(0, len(prompts), self.batch_size):
            input_ids, attention = left_pad(prompts[k : k + self.batch_size], pad)
            self.calls += 1
            with torch.inference_mode():
                logits = model(
                    input_ids=input_ids.to(model.device),
                    attention_mask=attention.to(model.device),
                    logits_to_keep=1,
                ).logits[:, -1]
            logp = torch.log_softmax(logits.float(), dim=-1)[:, [x[0] for x in ids]]
            out.extend(logp.tolist())
        return out

    def _choose_batch(self, prompts: list[list[int]], seqs: list[tuple[int, ...]]) -> list[int]:
        import torch
        from transformers import GenerationConfig

        pad = self.chat.pad_token_id if hasattr(self.chat, "pad_token_id") else 0
        eos = self.chat.tokenizer.eos_token_id
        input_ids, attention = left_pad(prompts, pad)
        width = input_ids.shape[1]
        # Trie: generated prefix -> tokens allowed next; a complete choice allows only EOS.
        nxt: dict[tuple[int, ...], set[int]] = {}
        for s in seqs:
            for i in range(len(s)):
                nxt.setdefault(s[:i], set()).add(s[i])
            nxt.setdefault(s, set()).add(eos)
        allowed = {k: sorted(v) for k, v in nxt.items()}

        def allowed_tokens(row: int, ids: Any) -> list[int]:
            done = tuple(ids[width:].tolist())
            return allowed.get(done, [eos])

        config = GenerationConfig(
            max_new_tokens=max(len(s) for s in seqs) + 1,
            do_sample=False,
            top_k=None,
            top_p=None,
            temperature=None,
            pad_token_id=pad,
            eos_token_id=eos,
        )
        self.calls += 1
        model = self.chat.model
        with torch.inference_mode():
            gen = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                generation_config=config,
                prefix_allowed_tokens_fn=allowed_tokens,
            )
        index = {s: i for i, s in enumerate(seqs)}
        picks = []
        for row in gen[:, width:].tolist():
            if eos in row:
                row = row[: row.index(eos)]
            picks.append(index[tuple(row)])
        return picks
