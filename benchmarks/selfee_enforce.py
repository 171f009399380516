"""SelFee revision-enforced inference: the original's token-by-token loop vs our batched rounds.

Both sides answer the same Vicuna-80 questions with the same model object, the same SelFee
prompt, greedy decoding, the same per-question token budget and the same K:

  naive    the original's way: one question at a time, one token per Python step (KV cache
           kept), the text decoded after every token and searched for the "no revision needed"
           verdict; before K revisions it is replaced and the whole text re-encoded.
  batched  ``enforce_generate`` with ``HFContinuer``: each round one batched ``generate`` over
           every row still running, rows stopped by a stop string, at most K+1 rounds.

Before timing, one short untimed pass of each side warms the kernels and the allocator.
Printed: wall time of each, the ratio (wall time; tokens/s when --naive-limit-s cut the naive
loop short), generated tokens, the CPU seconds other processes used
during each timed part (a shared machine makes the ratio meaningless above a few percent),
and peak RSS of the process.
Run: ``.venv/bin/python benchmarks/selfee_enforce.py [--questions 16 --budget 128 --k 2]``.
A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

from machine_load import machine_busy_seconds, own_cpu_seconds

TARGET_RATIO = 5.0


def naive(
    model, tok, prompts: list[str], budget: int, k: int, limit_s: float | None = None
) -> tuple[list[str], int]:
    """Return the texts and total tokens of the token-by-token loop; with ``limit_s``, stop
    starting new questions once that many seconds have passed (fewer texts come back)."""
    import torch

    from chorus_selfee.chain import NEEDED
    from chorus_selfee.enforce import STOP_VERDICTS, revisions_written

    texts, total = [], 0
    eos = tok.eos_token_id
    start = time.perf_counter()
    for prompt in prompts:
        if limit_s is not None and time.perf_counter() - start > limit_s:
            break
        text, used, past, ids = "", 0, None, None
        while used < budget:
            if past is None:
                ids = torch.tensor([tok(prompt + text, add_special_tokens=False)["input_ids"]])
            with torch.inference_mode():
                out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            nxt = int(out.logits[0, -1].argmax())
            used += 1
            if nxt == eos:
                break
            ids = torch.tensor([[nxt]])
            text += tok.decode([nxt])
            hit = next((s for s in STOP_VERDICTS if text.endswith(s)), None)
            if hit:
                if revisions_written(text) < k:
                    n = revisions_written(text) + 1
                    text = text[: -len(hit)] + f"{NEEDED}.\n\n### Revision {n}:\n"
                    past = None  # re-encode, as the original does after editing the text
                else:
                    break
        texts.append(text)
        total += used
    return texts, total


def timed(run: Callable[[], Any]) -> tuple[Any, float, float | None]:
    """Return ``(result, wall seconds, CPU seconds other processes used meanwhile)``."""
    busy0, own0, t0 = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - t0
    busy1, own1 = machine_busy_seconds(), own_cpu_seconds()
    others = None
    if busy0 is not None and busy1 is not None:
        others = round(max(0.0, (busy1 - busy0) - (own1 - own0)), 1)
    return result, wall, others


def _share(others: float | None, wall: float, cores: int) -> float | None:
    # Fraction of the machine's CPU other processes used while one side was timed.
    return None if others is None else round(others / (wall * cores), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument(
        "--naive-limit-s",
        type=float,
        help="stop the naive loop after the question running at this many seconds; the ratio "
        "is then one of tokens/s (the naive side answered fewer questions)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads for both sides (default: torch's); 1 is far steadier on a shared "
        "machine, where OpenMP threads of a descheduled process wait on each other",
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from chorus_selfee.chain import build_prompt
    from chorus_selfee.datasets import load_instructions
    from chorus_selfee.enforce import HFContinuer, enforce_generate
    from chorus_shared.models import load_chat_model

    chat = load_chat_model(args.model)
    qs = load_instructions("vicuna80")[: args.questions]
    items = [(q["instruction"], "") for q in qs]

    prompts = [build_prompt(*i) for i in items]
    # Untimed warm-up of both shapes (a batch of all rows, one row token by token).
    enforce_generate(HFContinuer(chat.model, chat.tokenizer), items, max_new_tokens=4)
    naive(chat.model, chat.tokenizer, prompts[:1], 4, args.k)

    cont = HFContinuer(chat.model, chat.tokenizer)
    res, t_batched, others_batched = timed(
        lambda: enforce_generate(cont, items, max_num_revision=args.k, max_new_tokens=args.budget)
    )
    tok_batched = sum(r.tokens for r in res)
    # Printed at once, so a run cut short by a time limit still reports the batched side.
    print(
        f"batched: {t_batched:.1f} s, {tok_batched} tokens, {cont.calls} generate calls, "
        f"other processes {others_batched} CPU-s",
        file=sys.stderr,
        flush=True,
    )
    (naive_texts, tok_naive), t_naive, others_naive = timed(
        lambda: naive(chat.model, chat.tokenizer, prompts, args.budget, args.k, args.naive_limit_s)
    )
    complete = len(naive_texts) == len(prompts)
    ratio = t_naive / t_batched if complete else None
    tps_ratio = (tok_batched / t_batched) / (tok_naive / t_naive) if tok_naive else None
    cores = os.cpu_count() or 1
    print(
        json.dumps(
            {
                "model": args.model,
                "questions": len(items),
                "budget": args.budget,
                "k": args.k,
                "torch_threads": torch.get_num_threads(),
                "naive_questions": len(naive_texts),
                "naive_s": round(t_naive, 2),
                "naive_tokens": tok_naive,
                "batched_s": round(t_batched, 2),
                "batched_tokens": tok_batched,
                "batched_generate_calls": cont.calls,
                "forced_revisions": sum(r.forced for r in res),
                "ratio": None if ratio is None else round(ratio, 2),
                "tokens_per_s": {
                    "naive": round(tok_naive / t_naive, 2),
                    "batched": round(tok_batched / t_batched, 2),
                },
                "tokens_per_s_ratio": None if tps_ratio is None else round(tps_ratio, 2),
                "other_processes_cpu_s": {"naive": others_naive, "batched": others_batched},
                "other_processes_share": {
                    "naive": _share(others_naive, t_naive, cores),
                    "batched": _share(others_batched, t_batched, cores),
                },
                "target": TARGET_RATIO,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
