"""GenFuser: merge the top-K ranked candidates into one answer with a generative model.

The input follows the paper: the instruction, the input, then ``Candidate i: ...`` for each
candidate (each cut to ``candidate_max_tokens``, 128 in the paper), then the request to fuse
them. The paper fine-tunes Flan-T5-XL; no T5 weights are reachable offline here, so the fuser
is any chorus ChatModel (a causal LM, an OpenAI-compatible server, vLLM). All inputs go in one
batched ``chat`` call.
"""

from __future__ import annotations

from collections.abc import Sequence

from chorus_shared.models import ChatModel, Message, SamplingParams

FUSE_REQUEST = (
    "Above are several candidate answers to the same request. Write one answer that keeps "
    "what the candidates get right, fixes what they get wrong, and reads as a single reply."
)


def _cut(text: str, max_words: int) -> str:
    # Words stand in for tokens here: the fuser may be an API model whose tokenizer we lack.
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def fuser_prompt(
    instruction: str, candidates: Sequence[str], *, input_text: str = "", max_words: int = 128
) -> str:
    """Return the fuser's input text for one instruction and its top-K candidates."""
    if not candidates:
        raise ValueError("the fuser needs at least one candidate")
    parts = [f"Instruction: {instruction.strip()}"]
    if input_text.strip():
        parts.append(f"Input: {input_text.strip()}")
    parts += [f"Candidate {i}: {_cut(c, max_words)}" for i, c in enumerate(candidates, 1)]
    parts.append(FUSE_REQUEST)
    return "\n\n".join(parts)


def fuse(
    model: ChatModel,
    instructions: Sequence[str],
    topk_candidates: Sequence[Sequence[str]],
    params: SamplingParams | None = None,
    *,
    inputs: Sequence[str] | None = None,
    max_words: int = 128,
) -> list[str]:
    """Return one fused answer per instruction (a failed generation returns an empty string)."""
    if len(instructions) != len(topk_candidates):
        raise ValueError("give one candidate list per instruction")
    extra = list(inputs) if inputs is not None else [""] * len(instructions)
    conversations: list[list[Message]] = [
        [{"role": "user", "content": fuser_prompt(ins, cands, input_text=x, max_words=max_words)}]
        for ins, cands, x in zip(instructions, topk_candidates, extra, strict=True)
    ]
    completions = model.chat(conversations, params or SamplingParams(max_new_tokens=256))
    return [c.text if c.error is None else "" for c in completions]
