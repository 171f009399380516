"""GenFuser: merge the top-K ranked candidates into one answer with a generative model.

The input follows the paper: the instruction, the input, then ``Candidate i: ...`` for each
candidate (each cut to ``candidate_max_tokens``, 128 in the paper), then the request to fuse
them. The paper fine-tunes Flan-T5-XL; no T5 weights are reachable offline here, so the fuser
is any chorus ChatModel (a causal LM, an OpenAI-compatible server, vLLM). All inputs go in one
batched ``chat`` call. ``train_fuser`` fine-tunes a causal LM as the fuser through
``chorus_shared.training`` (prompt = the fuser input, target = the reference answer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


# --------------------------------------------------------------------------- training


@dataclass
class FuserRecipe:
    """GenFuser training: which candidates go into the prompt, and the training-core recipe.

    ``rank_by`` orders each training item's candidates by that gold metric (best first) and
    keeps ``top_k``; the target is the item's reference ``output``. ``train`` is a
    ``chorus_shared.training`` recipe (causal LM; the core has no seq2seq path, so the paper's
    Flan-T5 fuser is not trainable through it).
    """

    top_k: int = 3
    rank_by: str = "bertscore"
    max_words: int = 128
    train: dict = field(default_factory=lambda: {"model": "default"})

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")


def load_fuser_recipe(name_or_path: str, **overrides: Any) -> FuserRecipe:
    """Return the fuser recipe at a path or with a shipped name, overrides applied."""
    from chorus_shared import config

    return config.load_recipe(
        FuserRecipe,
        name_or_path,
        "chorus_blender",
        overrides={k: v for k, v in overrides.items() if v is not None},
    )


def fuser_training_records(
    records: Iterable[Mapping[str, Any]],
    *,
    top_k: int = 3,
    rank_by: str = "bertscore",
    max_words: int = 128,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Return chat records for ``chorus_shared.training`` and the ids of records left out.

    Each record becomes ``user: fuser_prompt(top-K candidates by rank_by)`` (no loss) and
    ``assistant: reference output`` (the loss). Records without a reference, candidates or
    the ``rank_by`` score are left out and their ids returned.
    """
    out, skipped = [], []
    for n, r in enumerate(records):
        rid = str(r.get("id", n))
        cands = r.get("candidates")
        reference = str(r.get("output") or "").strip()
        try:
            ordered = sorted(cands or [], key=lambda c: -float(c["scores"][rank_by]))
            texts = [str(c["text"]) for c in ordered[:top_k]]
        except (KeyError, TypeError, ValueError):
            skipped.append(rid)
            continue
        if not reference or not texts:
            skipped.append(rid)
            continue
        prompt = fuser_prompt(
            str(r.get("instruction", "")),
            texts,
            input_text=str(r.get("input") or ""),
            max_words=max_words,
        )
        out.append(
            {
                "id": rid,
                "messages": [
                    {"role": "user", "content": prompt, "weight": 0.0},
                    {"role": "assistant", "content": reference, "weight": 1.0},
                ],
            }
        )
    return out, skipped


def train_fuser(
    recipe: FuserRecipe, records: Sequence[Mapping[str, Any]], out_dir: str | Path
) -> tuple[Any, list[str]]:
    """Train the GenFuser with ``chorus_shared.training.train``; resumes from a checkpoint.

    Returns the core's ``TrainResult`` (its ``model_dir`` loads as ``hf:<dir>``) and the ids
    of records left out.
    """
    from chorus_shared.training import load_train_recipe, train

    examples, skipped = fuser_training_records(
        records, top_k=recipe.top_k, rank_by=recipe.rank_by, max_words=recipe.max_words
    )
    if not examples:
        raise ValueError("no fuser training examples: every record lacked a reference or scores")
    # Long fuser prompts: cut from the left so the reference (the target) is always kept.
    train_recipe = load_train_recipe({"truncation": "left", **recipe.train})
    return train(train_recipe, examples, out_dir), skipped
