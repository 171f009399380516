"""Chat models behind one batched protocol, chosen by a spec string.

Specs:
  ``default``                    the embedded SmolLM2-135M-Instruct (offline, see ``embedded``)
  ``hf:<hub id or local path>``  transformers ``generate`` (a training run folder loads its model/)
  ``vllm:<hub id or local path>`` vLLM offline engine (optional extra ``chorus-shared[vllm]``)
  ``openai:<model>[@<base url>]`` any OpenAI-compatible server; key from ``$OPENAI_API_KEY``
"""

from __future__ import annotations

from typing import Any

from chorus_shared.models.base import (
    ChatModel,
    ChatTemplateError,
    Completion,
    Message,
    ModelSpecError,
    SamplingParams,
    TextModel,
    model_load_error,
)
from chorus_shared.redact import redact_urls

__all__ = [
    "ChatModel",
    "ChatTemplateError",
    "Completion",
    "Message",
    "ModelSpecError",
    "SamplingParams",
    "TextModel",
    "load_chat_model",
    "model_load_error",
    "parse_spec",
]

BACKENDS = ("hf", "vllm", "openai")


def parse_spec(spec: str) -> tuple[str, str]:
    """Return ``(backend, target)`` of a model spec without loading anything.

    ``"default"`` gives ``("default", "")``. Raises ``ModelSpecError`` listing the accepted forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(_usage(f"empty model spec {spec!r}"))
    spec = spec.strip()
    if spec == "default":
        return "default", ""
    backend, sep, target = spec.partition(":")
    if not sep or not target:
        raise ModelSpecError(_usage(f"unknown model spec {redact_urls(spec)!r}"))
    if backend not in BACKENDS:
        raise ModelSpecError(
            _usage(f"unknown backend {backend!r} in model spec {redact_urls(spec)!r}")
        )
    return backend, target


def load_chat_model(spec: str, **options: Any) -> ChatModel:
    """Return a ready ``ChatModel`` for ``spec``; ``options`` go to the backend's constructor.

    Raises ``ModelSpecError`` with the accepted forms when the spec is not understood.
    """
    backend, target = parse_spec(spec)
    if backend == "default":
        from chorus_shared.models.hf import HFChatModel

        return HFChatModel.from_default(**options)
    if backend in ("hf", "vllm"):
        from chorus_shared.training.rundir import resolve_trained_model

        # A chorus training run folder loads its trained model (``<run>/model``).
        target = resolve_trained_model(target)
    if backend == "hf":
        from chorus_shared.models.hf import HFChatModel

        return HFChatModel.from_pretrained(target, **options)
    if backend == "vllm":
        from chorus_shared.models.vllm_backend import VLLMChatModel

        return VLLMChatModel(target, **options)
    from chorus_shared.models.openai_api import OpenAIChatModel

    model, _, base_url = target.partition("@")
    return OpenAIChatModel(model, base_url=base_url or None, **options)


def _usage(problem: str) -> str:
    return (
        f"{problem}. Use one of: 'default' (embedded SmolLM2-135M-Instruct), "
        "'hf:<hub id or local path>', 'vllm:<hub id or local path>', "
        "'openai:<model>[@<base url>]' (key from $OPENAI_API_KEY)."
    )
