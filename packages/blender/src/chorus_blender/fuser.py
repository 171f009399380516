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

from chorus_shared.models import ChatModel, Completion, Message, SamplingParams

FUSE_REQUEST = (
    "Above are several candidate answers to the same request. Write one answer that keeps "
    "what the candidates get right, fixes what they get wrong, and reads as a single reply."
)


def _cut(text: str, max_words: int) -> str:
    # Words stand in for tokens here: the fuser may be an API model whose tokenizer we lack.
    words = text.split()
    return text if len(words) <= max_words else " ".join(words[:max_words]) + " ..."


def token_cutter(tokenizer: Any, max_tokens: int, *, marker: str = " ...") -> Callable[[str], str]:
    """Return a function that cuts a text to its first ``max_tokens`` tokens (the paper's cut)
    and appends ``marker`` to a text it cut (the original GenFuser appends "...")."""
    if max_tokens < 1:
        raise ValueError(f"candidate_max_tokens must be >= 1, got {max_tokens}")

    def cut(text: str) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= max_tokens:
            return text
        return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True) + marker

    return cut


# The original GenFuser's request line (blender_utils.GenFuserDataset), which the released
# weights (llm-blender/gen_fuser_3b) were trained to follow.
GENFUSER_REQUEST = "Summarize candidates into a better one for the given instruction:"
FUSE_FORMATS = ("chat", "genfuser")


def genfuser_input(
    instruction: str,
    candidates: Sequence[str],
    *,
    input_text: str = "",
    cut: Callable[[str], str] | None = None,
) -> str:
    """Return the original GenFuser's input text for one instruction and its top-K candidates.

    The parts are joined by ``</s>``: ``Instruction: ...``, ``Input: ...``, then
    ``Candidate i: <extra_id_i>:`` + the candidate (i from 0; each cut by ``cut``, the paper's
    128 tokens + "..."), then the request line. Use it for the released seq2seq fusers; the
    tokenizer is then called without special tokens, as the original does.
    """
    if not candidates:
        raise ValueError("the fuser needs at least one candidate")
    keep = cut or (lambda text: text)
    joined = "</s>".join(
        f"Candidate {i}: <extra_id_{i}>:" + keep(c) for i, c in enumerate(candidates)
    )
    parts = ["Instruction: " + instruction, "Input: " + input_text, joined]
    return "</s>".join(parts) + "</s>" + GENFUSER_REQUEST


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
    fuse_format: str = "chat",
) -> list[str]:
    """Return one fused answer per instruction (a failed generation returns an empty string).

    See :func:`fuse_completions`; use that to tell a failed reply from an empty one.
    """
    completions = fuse_completions(
        model,
        instructions,
        topk_candidates,
        params,
        inputs=inputs,
        max_words=max_words,
        candidate_max_tokens=candidate_max_tokens,
        fuse_format=fuse_format,
    )
    return [c.text if c.error is None else "" for c in completions]


def fuse_completions(
    model: ChatModel | Seq2SeqGenFuser,
    instructions: Sequence[str],
    topk_candidates: Sequence[Sequence[str]],
    params: SamplingParams | None = None,
    *,
    inputs: Sequence[str] | None = None,
    max_words: int = 128,
    candidate_max_tokens: int | None = None,
    fuse_format: str = "chat",
) -> list[Completion]:
    """Return the fuser's reply per instruction (``error`` set on a failed one), one batch.

    ``fuse_format``: ``chat`` (our prompt, :func:`fuser_prompt`, for chat and self-trained
    fusers) or ``genfuser`` (the original's input, :func:`genfuser_input`, for the released
    seq2seq weights; candidates cut to ``candidate_max_tokens`` tokens + "..."). A
    :class:`Seq2SeqGenFuser` generates as the original does (4 beams); any ChatModel gets the
    text as one user turn. ``candidate_max_tokens`` cuts each candidate with the fuser's own
    tokenizer (a local model); without it ``chat`` cuts to ``max_words`` words.
    """
    if fuse_format not in FUSE_FORMATS:
        raise ValueError(f"fuse_format must be one of {FUSE_FORMATS}, got {fuse_format!r}")
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
        marker = "..." if fuse_format == "genfuser" else " ..."
        cut = token_cutter(tokenizer, candidate_max_tokens, marker=marker)
    extra = list(inputs) if inputs is not None else [""] * len(instructions)
    if fuse_format == "genfuser":
        texts = [
            genfuser_input(ins, cands, input_text=x, cut=cut)
            for ins, cands, x in zip(instructions, topk_candidates, extra, strict=True)
        ]
    else:
        texts = [
            fuser_prompt(ins, cands, input_text=x, max_words=max_words, cut=cut)
            for ins, cands, x in zip(instructions, topk_candidates, extra, strict=True)
        ]
    if isinstance(model, Seq2SeqGenFuser):
        return model.generate(texts, params)
    conversations: list[list[Message]] = [[{"role": "user", "content": t}] for t in texts]
    return model.chat(conversations, params or SamplingParams(max_new_tokens=256))


class Seq2SeqGenFuser:
    """A seq2seq fuser that generates as the original ``Blender.fuse`` does.

    The input is tokenized without special tokens and cut to ``max_length`` (1024), then
    ``generate`` runs with ``num_beams`` beams (4) and ``max_new_tokens`` new tokens (128,
    the original's candidate length). Load the released ``llm-blender/gen_fuser_3b`` (or any
    seq2seq folder) with :meth:`from_pretrained`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        spec: str = "seq2seq",
        max_length: int = 1024,
        num_beams: int = 4,
        max_new_tokens: int = 128,
        batch_size: int = 4,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = max_length
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str, **options: Any) -> Seq2SeqGenFuser:
        """Return the fuser in a local folder (or hub id), in fp32 (the original's CPU dtype)."""
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from chorus_shared.models.base import model_load_error

        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForSeq2SeqLM.from_pretrained(path)
        except OSError as exc:
            raise model_load_error(path, exc, what="GenFuser", instead="--fuser default") from exc
        return cls(model, tokenizer, spec=f"seq2seq:{path}", **options)

    def generate(
        self, texts: Sequence[str], params: SamplingParams | None = None
    ) -> list[Completion]:
        """Return one beam-searched reply per input text (``params`` may lower the budget)."""
        import torch

        budget = self.max_new_tokens if params is None else params.max_new_tokens
        out: list[Completion] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            batch = self.tokenizer(
                chunk,
                max_length=self.max_length,
                truncation=True,
                padding=True,
                add_special_tokens=False,
                return_tensors="pt",
            )
            with torch.inference_mode():
                ids = self.model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    num_beams=self.num_beams,
                    max_new_tokens=budget,
                    do_sample=False,
                )
            out += [
                Completion(text=t)
                for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)
            ]
        return out


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


SEQ2SEQ_PREFIX = "seq2seq:"


def check_fuser_spec(spec: str) -> None:
    """Raises ValueError when ``spec`` is not a fuser spec (checked before any run folder):
    ``seq2seq:<folder or hub id>`` (:class:`Seq2SeqGenFuser`, the original's generation) or
    any chat-model spec (``default``, ``hf:...``, ``openai:...``, ``vllm:...``)."""
    if spec.startswith(SEQ2SEQ_PREFIX):
        if not spec[len(SEQ2SEQ_PREFIX) :]:
            raise ValueError("seq2seq: needs a folder or hub id after the colon")
        return
    from chorus_shared.models import parse_spec

    parse_spec(spec)


def load_fuser(spec: str) -> ChatModel | Seq2SeqGenFuser:
    """Returns the fuser of ``spec`` (see :func:`check_fuser_spec`)."""
    if spec.startswith(SEQ2SEQ_PREFIX):
        return Seq2SeqGenFuser.from_pretrained(spec[len(SEQ2SEQ_PREFIX) :])
    from chorus_shared.models import load_chat_model

    return load_chat_model(spec)
