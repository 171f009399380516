"""Autonomous and revision-enforced SelFee inference, batched.

The original enforces revisions with a token-by-token Python loop. Here every round is one
batched generation that stops each row at its own "Revision is not needed" verdict (a stop
string: transformers' vectorised ``StopStringCriteria`` on the hf backend, the server's
``stop`` on openai/vllm). Rows with fewer than K revisions get "Revision is needed." in place
of the verdict and continue in the next round's batch; rows with K or more keep the verdict
and are finished. At most K + 1 rounds per call, and a shared token budget per row: a model
that never stops revising is cut by the budget, never looped on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chorus_selfee.chain import NEEDED, NOT_NEEDED, Chain, build_prompt, parse_chain
from chorus_shared.models import ChatModel, SamplingParams


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


# Every spelling we stop at; the model is trained on NOT_NEEDED, the others catch drift.
STOP_VERDICTS: tuple[str, ...] = (NOT_NEEDED, "revision is not needed", "No revision is needed")


class Continuer(Protocol):
    """Raw-text continuation of many prefixes in one batched call."""

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[tuple[str, int, str]]:
        """Return ``(new_text, new_tokens, finish)`` per prefix; ``finish`` is "stop" when a
        stop string or EOS ended it (the stop string itself is not in ``new_text``)."""
        ...


class HFContinuer:
    """Continue raw prompts (no chat template) with a transformers model, whole batch at once.

    Works on the ``model``/``tokenizer`` of a chorus ``HFChatModel`` or any causal LM pair.
    """

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
    ) -> list[tuple[str, int, str]]:
        """Return ``(new_text, new_tokens, finish)`` per prefix (see ``Continuer``)."""
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
            top_k=None,
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
        for row, tokens in enumerate(out[:, width:].tolist()):
            tokens = tokens[: max_new_tokens[row]]
            finish = "length"
            if self.tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(self.tokenizer.eos_token_id)]
                finish = "stop"
            while tokens and tokens[-1] == self.pad_id:
                tokens.pop()
                finish = "stop"
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            cut = min((p for p in (text.find(s) for s in stop) if p >= 0), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            results.append((text, len(tokens), finish))
        return results


class ChatContinuer:
    """Continuation through any ChatModel (openai, vllm): the prefix is sent as the user turn
    and the server's ``stop`` strings end each reply; one batched ``chat`` call per round."""

    def __init__(self, model: ChatModel, *, temperature: float = 0.0) -> None:
        self.model = model
        self.temperature = temperature
        self.calls = 0

    def continue_batch(
        self, prefixes: list[str], max_new_tokens: list[int], stop: Sequence[str], seed: int | None
    ) -> list[tuple[str, int, str]]:
        """Return ``(new_text, new_tokens, finish)`` per prefix (see ``Continuer``)."""
        if not prefixes:
            return []
        self.calls += 1
        params = SamplingParams(
            max_new_tokens=max(max_new_tokens),
            temperature=self.temperature,
            stop=tuple(stop),
            seed=seed,
        )
        out = self.model.chat([[{"role": "user", "content": p}] for p in prefixes], params)
        return [(c.text, c.completion_tokens, c.finish_reason) for c in out]


@dataclass
class InferResult:
    """One item's generation: the whole text after ``### Answer:``, its chain, the counts."""

    text: str
    chain: Chain
    forced: int  # verdicts replaced by "Revision is needed"
    rounds: int
    tokens: int
    finish: str  # "stop" (verdict kept / EOS) or "length" (budget spent)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (answer = the last complete revision)."""
        return {
            "answer": self.chain.final_answer,
            "chain": self.text,
            "revisions": len(self.chain.revisions),
            "forced": self.forced,
            "rounds": self.rounds,
            "tokens": self.tokens,
            "finish": self.finish,
        }


def revisions_written(text: str) -> int:
    """Return the number of complete ``### Revision k:`` sections in a generated chain."""
    return len(parse_chain(text).revisions)


def enforce_generate(
    continuer: Continuer,
    items: Sequence[tuple[str, str]],
    *,
    max_num_revision: int = 0,
    max_new_tokens: int = 1024,
    seed: int | None = None,
) -> list[InferResult]:
    """Return one InferResult per ``(instruction, input)``, in order.

    ``max_num_revision = 0`` is autonomous mode. Each round is one ``continue_batch`` call over
    every row still running; a row stopped at a verdict before K revisions exist gets the
    verdict replaced and continues, otherwise it is done.
    """
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
    max_new_tokens: int | Sequence[int] = 1024,
    seed: int | None = None,
) -> list[InferResult]:
    """Return one InferResult per already-rendered SelFee prompt (ending in ``### Answer:``),
    in order; ``max_new_tokens`` is one budget for all rows or one per row. See
    ``enforce_generate``."""
    if max_num_revision < 0:
        raise ValueError(f"max_num_revision must be >= 0, got {max_num_revision}")
    budget = (
        [max_new_tokens] * len(prompts)
        if isinstance(max_new_tokens, int)
        else [int(b) for b in max_new_tokens]
    )
    if len(budget) != len(prompts) or any(b < 1 for b in budget):
        raise ValueError(f"max_new_tokens must be >= 1, one value or one per prompt: {budget}")
    texts = [""] * len(prompts)
    used = [0] * len(prompts)
    forced = [0] * len(prompts)
    rounds = [0] * len(prompts)
    finish = ["length"] * len(prompts)
    active = list(range(len(prompts)))
    for round_no in range(max_num_revision + 1):
        active = [i for i in active if used[i] < budget[i]]
        if not active:
            break
        outs = continuer.continue_batch(
            [prompts[i] + texts[i] for i in active],
            [budget[i] - used[i] for i in active],
            STOP_VERDICTS,
            None if seed is None else seed + round_no,
        )
        still = []
        for i, (new, n_tok, fin) in zip(active, outs, strict=True):
            rounds[i] += 1
            used[i] += n_tok
            texts[i] += new
            at_verdict = fin == "stop" and _ends_in_feedback(texts[i])
            if not at_verdict:  # EOS without a verdict, or the budget: done as it is
                finish[i] = fin
                continue
            # forced[i] < K: a chain whose headers went out of order never parses K revisions;
            # it is forced at most K times, like a well-formed one, never left dangling.
            if (
                revisions_written(texts[i]) < max_num_revision
                and forced[i] < max_num_revision
                and used[i] < budget[i]
            ):
                texts[i] += f"{NEEDED}.\n\n### Revision {revisions_written(texts[i]) + 1}:\n"
                forced[i] += 1
                still.append(i)
            else:
                texts[i] += f"{NOT_NEEDED}."
                finish[i] = "stop"
        active = still
    return [
        InferResult(
            text=texts[i],
            chain=parse_chain(texts[i]),
            forced=forced[i],
            rounds=rounds[i],
            tokens=used[i],
            finish=finish[i],
        )
        for i in range(len(prompts))
    ]


def _ends_in_feedback(text: str) -> bool:
    # The stop fired inside a feedback section (not, say, in an answer quoting the phrase).
    last_fb = text.rfind("### Feedback ")
    return last_fb >= 0 and text.rfind("### Revision ") < last_fb
