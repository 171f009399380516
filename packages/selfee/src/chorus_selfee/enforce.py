"""Autonomous and revision-enforced SelFee inference, batched, on raw prompts.

A SelFee model is a plain language model: it continues the original's Alpaca header (no chat
template). Revision-enforce follows the original (``generate_with_enforced_revisions``): when
the model writes one of its six "no revision needed" phrases while fewer than K ``### Revision``
headers exist, the phrase is replaced by "Revision is needed" and the model continues from
there (it writes the next revision itself). Nothing else triggers a forced revision, and we
never write a verdict the model did not produce.

The original does this with a token-by-token Python loop. Here every round is one batched
continuation: rows that may still be forced stop at the six phrases (a stop string: the
vectorised ``StopStringCriteria`` on the hf backend); a continuer without stop strings (API
completions) runs on and the phrase is found in what came back, everything after it being
dropped. Tokens generated and then dropped count against the budget, as in the original,
whose step counter keeps running after it truncates. So a row is bounded by its budget.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chorus_selfee.chain import NEEDED, NOT_NEEDED_PHRASES, REVISION_MARK, build_prompt

# Kept under its old name for the benchmark script.
STOP_VERDICTS: tuple[str, ...] = NOT_NEEDED_PHRASES


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """Returns ``(input_ids, attention_mask)``: the token lists left-padded to one width.

    Decoder-only generation continues from the last column, so every row ends there.
    """
    import torch

    width = max(len(x) for x in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, x in enumerate(sequences):
        input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
        attention[row, width - len(x) :] = 1
    return input_ids, attention


@dataclass(frozen=True)
class Piece:
    """One row's continuation. ``text`` holds everything generated (a matched stop string
    included); ``finish`` is "eos", "length", "stop_string" or "error" (then ``error`` says
    why)."""

    text: str
    tokens: int
    finish: str
    error: str | None = None


class Continuer(Protocol):
    """Raw-text continuation of many prefixes in one batched call."""

    temperature: float

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[Piece]:
        """Return one :class:`Piece` per prefix (``stop`` may be ignored by a backend that
        cannot report which string stopped it)."""
        ...


class HFContinuer:
    """Continue raw prompts (no chat template) with a transformers causal LM, whole batch at
    once; ``temperature`` 0 is greedy, otherwise plain sampling (top-k/top-p off), as the
    original samples from the softmax at that temperature."""

    def __init__(self, model: Any, tokenizer: Any, *, temperature: float = 0.0) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.temperature = temperature
        self.pad_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self.calls = 0  # generate() calls made; tests and benchmarks read it

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[Piece]:
        """Return one :class:`Piece` per prefix (see :class:`Continuer`)."""
        import torch
        from transformers import GenerationConfig

        if not prefixes:
            return []
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prefixes]
        input_ids, attention = left_pad(ids, self.pad_id)
        width = input_ids.shape[1]
        greedy = self.temperature == 0
        config = GenerationConfig(
            max_new_tokens=max(max_new_tokens),
            do_sample=not greedy,
            temperature=None if greedy else self.temperature,
            top_k=None if greedy else 0,
            top_p=None,
            pad_token_id=self.pad_id,
            eos_token_id=self.tokenizer.eos_token_id,
            stop_strings=list(stop) or None,
        )
        if seed is not None:
            torch.manual_seed(seed)
        self.calls += 1
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=attention.to(self.model.device),
                generation_config=config,
                tokenizer=self.tokenizer,
            )
        results = []
        eos = self.tokenizer.eos_token_id
        for row, tokens in enumerate(out[:, width:].tolist()):
            tokens = tokens[: max_new_tokens[row]]
            finish = "length"
            if eos in tokens:
                tokens, finish = tokens[: tokens.index(eos)], "eos"
            elif self.pad_id != eos and tokens and tokens[-1] == self.pad_id:
                while tokens and tokens[-1] == self.pad_id:
                    tokens.pop()
                finish = "eos"  # padded: the row ended early (a stop string, checked below)
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            if stop and finish == "eos" and _first_phrase(text, stop) is not None:
                # The stop criteria end a row at the token that completes a phrase (and pad
                # it, with EOS when pad = EOS): the phrase is whole only with the last token.
                before = self.tokenizer.decode(tokens[:-1], skip_special_tokens=True)
                if _first_phrase(before, stop) is None:
                    finish = "stop_string"
            results.append(Piece(text, len(tokens), finish))
        return results


class CompletionContinuer:
    """Continue raw prompts through an OpenAI-compatible ``/v1/completions`` endpoint (vLLM
    serve, TGI, llama.cpp server, ...): the prompt is sent as it is, never as a chat turn.

    No stop strings are sent (the API does not say which one stopped a reply); the phrases
    are found in the returned text instead. Requests run concurrently; a failed request is a
    ``Piece`` with ``finish="error"``, never an exception.
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        temperature: float = 0.0,
        timeout_s: float = 600.0,
        concurrency: int = 16,
        max_retries: int = 2,
    ) -> None:
        import openai

        self.model = model
        self.temperature = temperature
        self.concurrency = concurrency
        # The key comes from the environment only (never a flag, never stored).
        self._client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
            timeout=timeout_s,
            max_retries=max_retries,
        )
        self.calls = 0

    def _one(self, prompt: str, budget: int, seed: int | None) -> Piece:
        import openai

        try:
            response = self._client.completions.create(
                model=self.model,
                prompt=prompt,
                max_tokens=budget,
                temperature=self.temperature,
                seed=seed,
            )
        except openai.APIError as exc:
            status = getattr(exc, "status_code", None)
            return Piece(
                "", 0, "error", f"completions request failed ({status or type(exc).__name__})"
            )
        choice = response.choices[0]
        used = response.usage.completion_tokens if response.usage else len(choice.text.split())
        finish = "length" if choice.finish_reason == "length" else "eos"
        return Piece(choice.text or "", int(used), finish)

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[Piece]:
        """Return one :class:`Piece` per prefix (``stop`` is not sent; see the class)."""
        if not prefixes:
            return []
        self.calls += 1
        workers = max(1, min(self.concurrency, len(prefixes)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            futures = [
                pool.submit(self._one, p, b, None if seed is None else seed + k)
                for k, (p, b) in enumerate(zip(prefixes, max_new_tokens, strict=True))
            ]
            return [f.result() for f in futures]


class VLLMContinuer:
    """Continue raw prompts with a vLLM engine's ``generate`` (no chat template)."""

    def __init__(self, llm: Any, *, temperature: float = 0.0) -> None:
        self.llm = llm
        self.temperature = temperature
        self.calls = 0

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[Piece]:
        """Return one :class:`Piece` per prefix; vLLM reports the stop string it matched."""
        from vllm import SamplingParams as VSamplingParams

        if not prefixes:
            return []
        self.calls += 1
        params = [
            VSamplingParams(
                max_tokens=budget,
                temperature=self.temperature,
                stop=list(stop) or None,
                include_stop_str_in_output=True,
                seed=None if seed is None else seed + k,
            )
            for k, budget in enumerate(max_new_tokens)
        ]
        outs = self.llm.generate(prefixes, params, use_tqdm=False)
        pieces = []
        for out in outs:
            c = out.outputs[0]
            if isinstance(c.stop_reason, str):
                finish = "stop_string"
            else:
                finish = "length" if c.finish_reason == "length" else "eos"
            pieces.append(Piece(c.text, len(c.token_ids), finish))
        return pieces


@dataclass
class InferResult:
    """One item's generation: the whole text after ``### Answer:`` and the counts."""

    text: str
    forced: int  # "no revision needed" phrases replaced by "Revision is needed"
    rounds: int
    tokens: int
    finish: str  # "stop" (EOS), "length" (budget spent) or "error"
    error: str | None = None
    capped: bool = False  # serve: cut at the demo's maximum number of revisions


def revisions_written(text: str) -> int:
    """Return the number of ``### Revision`` headers in ``text``, the count the original's
    trigger compares with K (a revision still being written counts)."""
    return text.count(REVISION_MARK.strip())


def _first_phrase(text: str, phrases: Sequence[str]) -> tuple[int, str] | None:
    """Return ``(position, phrase)`` of the earliest "no revision needed" phrase, or None."""
    hits = [(text.find(p), p) for p in phrases if p and p in text]
    return min(hits) if hits else None


def _needed_for(phrase: str) -> str:
    # The original swaps the ids of the phrase's tail for "Revision is needed"; the case of
    # the first letter follows the phrase the model wrote.
    return NEEDED if phrase[:1].isupper() else NEEDED[0].lower() + NEEDED[1:]


def enforce_generate(
    continuer: Continuer,
    items: Sequence[tuple[str, str]],
    *,
    max_num_revision: int = 0,
    max_new_tokens: int = 2048,
    seed: int | None = None,
) -> list[InferResult]:
    """Return one InferResult per ``(instruction, input)``, in order (see
    :func:`enforce_prompts`)."""
    return enforce_prompts(
        continuer,
        [build_prompt(ins, inp) for ins, inp in items],
        max_num_revision=max_num_revision,
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def enforce_prompts(
    continuer: Continuer,
    prompts: Sequence[str],
    *,
    max_num_revision: int = 0,
    max_new_tokens: int | Sequence[int] = 2048,
    seed: int | None = None,
    max_revisions: int | None = None,
) -> list[InferResult]:
    """Return one InferResult per rendered SelFee prompt (ending in ``### Answer:\\n``).

    ``max_num_revision`` K = 0 is autonomous: one continuation, nothing replaced. Otherwise a
    "no revision needed" phrase written while fewer than K ``### Revision`` headers exist is
    replaced by "Revision is needed" and the row continues in the next batched round.
    ``max_revisions`` (serve, as the original's demo) ends a row when it starts a section
    after its ``max_revisions``-th revision; the text is cut there. ``max_new_tokens`` is one
    budget for all rows or one per row.
    """
    if max_num_revision < 0:
        raise ValueError(f"max_num_revision must be >= 0, got {max_num_revision}")
    budget = (
        [max_new_tokens] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(b) for b in max_new_tokens]
    )
    if len(budget) != len(prompts) or any(b < 1 for b in budget):
        raise ValueError(f"max_new_tokens must be >= 1, one value or one per prompt: {budget}")
    n = len(prompts)
    results = [InferResult("", 0, 0, 0, "length") for _ in range(n)]
    active = list(range(n))
    round_no = 0
    while active:
        # Rows that may still be forced stop at the phrases; the others run to EOS.
        enforcing = [i for i in active if revisions_written(results[i].text) < max_num_revision]
        free = [i for i in active if i not in enforcing]
        still: list[int] = []
        for rows, stop in ((enforcing, NOT_NEEDED_PHRASES), (free, ())):
            if not rows:
                continue
            pieces = continuer.continue_batch(
                [prompts[i] + results[i].text for i in rows],
                [budget[i] - results[i].tokens for i in rows],
                stop,
                None if seed is None else seed + round_no,
            )
            for i, piece in zip(rows, pieces, strict=True):
                if _advance(results[i], piece, max_num_revision, budget[i], max_revisions):
                    still.append(i)
        active = sorted(still)
        round_no += 1
    return results


def _advance(
    res: InferResult, piece: Piece, k: int, budget: int, max_revisions: int | None
) -> bool:
    """Apply one continuation to a row; return whether the row goes on to another round."""
    res.rounds += 1
    res.tokens += piece.tokens
    if piece.finish == "error":
        res.finish, res.error = "error", piece.error or "the backend reported an error"
        return False
    old, new = res.text, piece.text
    hit = _first_phrase(new, NOT_NEEDED_PHRASES) if k > 0 else None
    if hit is not None and revisions_written(old + new[: hit[0]]) < k:
        # The model said no revision is needed before K revisions: force one, and drop what
        # it wrote after the phrase (those tokens stay spent, as in the original).
        res.text = old + new[: hit[0]] + _needed_for(hit[1])
        res.forced += 1
        going = res.tokens < budget
        res.finish = "length" if not going else res.finish
        return going
    res.text = old + new
    if max_revisions is not None and _cap(res, max_revisions):
        return False
    if piece.finish == "stop_string" and res.tokens < budget:
        return True  # a verdict the model keeps (K reached): let it finish its own text
    res.finish = "length" if piece.finish == "length" or res.tokens >= budget else "stop"
    return False


def _cap(res: InferResult, max_revisions: int) -> bool:
    """Cut ``res.text`` before the section that follows revision ``max_revisions`` (the demo's
    bubble limit); return whether it was cut."""
    marks = [p for p in _section_starts(res.text)]
    limit = 2 * max_revisions  # feedback + revision sections after the answer
    if len(marks) <= limit:
        return False
    res.text = res.text[: marks[limit]]
    res.finish, res.capped = "stop", True
    return True


def _section_starts(text: str) -> list[int]:
    """Return the positions of every ``\\n\\n### `` section start in a generation."""
    out, start = [], 0
    while (pos := text.find("\n\n### ", start)) >= 0:
        out.append(pos)
        start = pos + 1
    return out


def load_raw_lm(spec: str) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` of a local causal LM for raw-prompt continuation.

    ``default`` is the embedded model; ``hf:<id or folder>`` (a chorus training run folder
    loads its ``model``) needs no chat template: SelFee models are plain LMs (a base LLaMA
    fine-tuned on the Alpaca header). A model that cannot load is one ``ModelSpecError``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chorus_shared.models import parse_spec
    from chorus_shared.models.base import model_load_error

    backend, target = parse_spec(spec)
    if backend == "default":
        from chorus_shared.models.embedded import default_model_dir

        source = str(default_model_dir())
    elif backend == "hf":
        from chorus_shared.training.rundir import resolve_trained_model

        source = str(resolve_trained_model(target))
    else:
        raise ValueError(f"{spec!r} is not a local transformers model (default or hf:...)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        dtype: Any = torch.float32 if device == "cpu" else "auto"
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as exc:
        raise model_load_error(source, exc) from exc
    return model.to(device).eval(), tokenizer


def load_continuer(
    spec: str, *, temperature: float = 0.0, timeout_s: float = 600.0, window: int = 16
) -> Continuer:
    """Return the raw-prompt :class:`Continuer` for a model spec: transformers for
    ``default``/``hf:``, the vLLM engine's ``generate`` for ``vllm:``, the ``/v1/completions``
    endpoint for ``openai:<model>@<url>``. Raises ``ModelSpecError`` for a bad spec."""
    from chorus_shared.models import parse_spec

    backend, target = parse_spec(spec)
    if backend in ("default", "hf"):
        model, tokenizer = load_raw_lm(spec)
        return HFContinuer(model, tokenizer, temperature=temperature)
    if backend == "vllm":
        from chorus_shared.models.vllm_backend import _import_vllm, resolve_vllm_model
        from chorus_shared.training.rundir import resolve_trained_model

        vllm = _import_vllm()
        llm = vllm.LLM(model=resolve_vllm_model(str(resolve_trained_model(target))))
        return VLLMContinuer(llm, temperature=temperature)
    model, _, base_url = target.partition("@")
    base = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return CompletionContinuer(
        model, base, temperature=temperature, timeout_s=timeout_s, concurrency=window
    )
