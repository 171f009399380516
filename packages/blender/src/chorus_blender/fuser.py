"""GenFuser: merge the top-K ranked candidates into one answer with a generative model.

The input follows the paper: the instruction, the input, then ``Candidate i: ...`` for each
candidate (each cut to 128 tokens in the paper: ``candidate_max_tokens`` with the fuser's own
tokenizer, or ``max_words`` words when the fuser is an API model without a local tokenizer),
then the request to fuse them. The fuser is any chorus ChatModel: a seq2seq model as in the
paper (Flan-T5; ``hf:`` loads an encoder-decoder checkpoint as one), a causal LM (the offline
path: no T5 weights are reachable here), an OpenAI-compatible server, vLLM. All inputs go in
one batched ``chat`` call. ``train_fuser`` fine-tunes either kind through
``chorus_shared.training`` (source = the fuser input, target = the reference answer; the
architecture is read from the model's config).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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


def token_cutter(tokenizer: Any, max_tokens: int) -> Callable[[str], str]:
    """Return a function that cuts a text to its first ``max_tokens`` tokens (the paper's cut)."""
    if max_tokens < 1:
        raise ValueError(f"candidate_max_tokens must be >= 1, got {max_tokens}")

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True) + " ..."

    return cut


def fuser_prompt(
    instruction: str,
    candidates: Sequence[str],
    *,
    input_text: str = "",
    max_words: int = 128,
    cut: Callable[[str], str] | None = None,
) -> str:
    """Return the fuser's input text for one instruction and its top-K candidates.

    Each candidate is cut with ``cut`` when given (e.g. :func:`token_cutter`), else to
    ``max_words`` words.
    """
    if not candidates:
        raise ValueError("the fuser needs at least one candidate")
    cut = cut or (lambda text: _cut(text, max_words))
    parts = [f"Instruction: {instruction.strip()}"]
    if input_text.strip():
        parts.append(f"Input: {input_text.strip()}")
    parts += [f"Candidate {i}: {cut(c)}" for i, c in enumerate(candidates, 1)]
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
    candidate_max_tokens: int | None = None,
) -> list[str]:
    """Return one fused answer per instruction (a failed generation returns an empty string).

    ``candidate_max_tokens`` cuts each candidate with the fuser's own tokenizer (a local
    ``hf:`` model); without it candidates are cut to ``max_words`` words.
    """
    if len(instructions) != len(topk_candidates):
        raise ValueError("give one candidate list per instruction")
    cut = None
    if candidate_max_tokens is not None:
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                f"candidate_max_tokens needs the fuser's tokenizer, and {model.spec} has none "
                "here (an API model): cut by words with max_words instead"
            )
        cut = token_cutter(tokenizer, candidate_max_tokens)
    extra = list(inputs) if inputs is not None else [""] * len(instructions)
    conversations: list[list[Message]] = [
        [
            {
                "role": "user",
                "content": fuser_prompt(ins, cands, input_text=x, max_words=max_words, cut=cut),
            }
        ]
        for ins, cands, x in zip(instructions, topk_candidates, extra, strict=True)
    ]
    completions = model.chat(conversations, params or SamplingParams(max_new_tokens=256))
    return [c.text if c.error is None else "" for c in completions]


# --------------------------------------------------------------------------- training


@dataclass
class FuserRecipe:
    """GenFuser training: which candidates go into the prompt, and the training-core recipe.

    ``rank_by`` orders each training item's candidates by that gold metric (best first) and
    keeps ``top_k``; the target is the item's reference ``output``. Candidates are cut to
    ``candidate_max_tokens`` tokens of the fuser's tokenizer when set (the paper: 128), else
    to ``max_words`` words. ``train`` is a ``chorus_shared.training`` recipe: a causal LM or a
    seq2seq model (Flan-T5; ``architecture`` auto-detected), where ``max_length`` is the
    source budget and ``max_target_length`` the target's (the paper: 1024 / 128).
    """

    top_k: int = 3
    rank_by: str = "bertscore"
    max_words: int = 128
    candidate_max_tokens: int | None = None
    train: dict = field(default_factory=lambda: {"model": "default"})

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.candidate_max_tokens is not None and self.candidate_max_tokens < 1:
            raise ValueError("candidate_max_tokens must be >= 1")


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
    cut: Callable[[str], str] | None = None,
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
            cut=cut,
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
    from chorus_shared.training import load_train_recipe, resolve_architecture, train

    train_recipe = load_train_recipe(recipe.train)
    causal = resolve_architecture(train_recipe) == "causal"
    if causal and "truncation" not in recipe.train:
        # One causal sequence holds prompt + reference: cut from the left so the reference
        # (the target) is always kept. A seq2seq target has its own budget, and the source
        # keeps the recipe's truncation (K candidates of 128 tokens fit the paper's 1024).
        train_recipe = load_train_recipe({**recipe.train, "truncation": "left"})
    cut = None
    if recipe.candidate_max_tokens is not None:
        from transformers import AutoTokenizer

        from chorus_shared.training.trainer import resolve_model_path

        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(train_recipe.model))
        cut = token_cutter(tokenizer, recipe.candidate_max_tokens)
    examples, skipped = fuser_training_records(
        records, top_k=recipe.top_k, rank_by=recipe.rank_by, max_words=recipe.max_words, cut=cut
    )
    if not examples:
        raise ValueError("no fuser training examples: every record lacked a reference or scores")
    return train(train_recipe, examples, out_dir), skipped
