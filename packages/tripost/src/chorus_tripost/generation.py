"""Raw-text generation for the model TriPosT trains.

The paper trains plain language models on raw text (``Q: ...\\nAnswer: Let's think step by
step.\\n(1) ...``), so the model's attempts are generated from the SAME raw text, never through
a chat template: a prompt is a list of text pieces, each tokenized on its own without special
tokens, exactly as ``chorus_shared.training`` tokenizes a record's segments. The prompt of an
attempt is therefore a token-for-token prefix of every training record built from it (tested).

Batching, left padding, length-sorted micro-batches and greedy de-duplication come from
``chorus_shared.models.hf.HFChatModel``; only the rendering differs (and a base model without
a chat template is accepted).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chorus_shared.models.base import Completion, Message, SamplingParams, model_load_error
from chorus_shared.models.hf import HFChatModel, _pick_device, _pick_dtype

__all__ = ["RawTextModel", "load_raw_model", "prompt_ids"]


def prompt_ids(pieces: list[str], tokenizer: Any) -> list[int]:
    """Return the token ids of a raw prompt: each piece tokenized alone, no special tokens."""
    ids: list[int] = []
    for text in pieces:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids


class RawTextModel(HFChatModel):
    """A causal LM that continues raw text pieces (no chat template), batched."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str,
        batch_size: int = 16,
        max_batch_tokens: int = 32768,
    ) -> None:
        # HFChatModel.__init__ refuses a tokenizer without a chat template, and a base model
        # (LLaMA-7B in the paper) has none; raw text never renders one, so a placeholder
        # stands in during the parent's checks only. Every attribute (also ones the backend
        # adds later) comes from the parent; no prefix reuse between calls (its default).
        placeholder = getattr(tokenizer, "chat_template", None) is None
        if placeholder:
            tokenizer.chat_template = "{{ '' }}"
        try:
            super().__init__(
                model, tokenizer, spec=spec, batch_size=batch_size,
                max_batch_tokens=max_batch_tokens,
            )  # fmt: skip
        finally:
            if placeholder:
                tokenizer.chat_template = None

    def render(self, conversation: list[Message]) -> list[int]:
        """Return the ids of the messages' contents concatenated as raw text (no template)."""
        return prompt_ids([m["content"] for m in conversation], self.tokenizer)

    def complete(  # type: ignore[override]  # pieces, not whole prompts (token boundaries)
        self, prompts: list[list[str]], params: SamplingParams
    ) -> list[Completion]:
        """Return one continuation per prompt (a list of raw text pieces), in input order."""
        import torch

        if not prompts:
            return []
        ids = [prompt_ids(p, self.tokenizer) for p in prompts]
        source = list(range(len(ids)))
        if params.greedy:
            unique: dict[tuple[int, ...], int] = {}
            source = [unique.setdefault(tuple(p), i) for i, p in enumerate(ids)]
        todo = sorted(set(source))
        if params.seed is not None:
            torch.manual_seed(params.seed)
        results: dict[int, Completion] = {}
        for batch in self._micro_batches([ids[i] for i in todo], params.max_new_tokens):
            outputs = self._generate([ids[todo[b]] for b in batch], params)
            for b, completion in zip(batch, outputs, strict=True):
                results[todo[b]] = completion
        return [
            results[j] if j == i else replace(results[j], extra={"shared_with": j})
            for i, j in enumerate(source)
        ]


def load_raw_model(spec: str, *, dtype: str = "auto", **options: Any) -> RawTextModel:
    """Return the raw-text model for ``spec``: ``default``, ``hf:<id or dir>``, a plain id or
    dir, or a chorus training run folder (its ``model/`` is loaded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chorus_shared.training.trainer import resolve_model_path

    if spec.startswith(("vllm:", "openai:")):
        raise ValueError(
            f"model {spec!r}: the model TriPosT trains is loaded with transformers; give "
            "'default', 'hf:<id or dir>' or a training run folder (LLM helpers take any spec)"
        )
    path = resolve_model_path(spec)
    device = _pick_device(None)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=_pick_dtype(dtype, device))
    except OSError as exc:
        # One clear line naming the spec (and whether it is a missing folder), not a hub
        # traceback; ModelSpecError is a ValueError, which the CLI reports with exit 2.
        raise model_load_error(path, exc) from exc
    # transformers decorates PreTrainedModel.to with functools.wraps, whose typeshed type
    # (_Wrapped) is not a descriptor: mypy then expects ``self`` as the first argument.
    model.to(device)  # type: ignore[arg-type]
    return RawTextModel(model, tokenizer, spec=spec, **options)
