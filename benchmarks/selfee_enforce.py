"""SelFee revision-enforced inference: the original's token-by-token loop vs our batched rounds.

Both sides answer the same Vicuna-80 questions with the same model object, the same SelFee
prompt, greedy decoding, the same per-question token budget and the same K:

  naive    the original's way: one question at a time, one token per Python step (KV cache
           kept), the text decoded after every token and searched for the "no revision needed"
           verdict; before K revisions it is replaced and the whole text re-encoded.
  batched  ``enforce_generate`` with ``HFContinuer``: each round one batched ``generate`` over
           every row still running, rows stopped by a stop string, at most K+1 rounds.

So that revisions are really forced with an untrained model, each prompt starts (``--prompt
fewshot``, the default) with four short worked SelFee chains whose feedbacks end in a verdict;
the model imitates them and writes "Revision is not needed" early, which both sides replace
until K revisions exist (at most K times per question on both sides). The forced count of each
side is printed per question; they must agree (same model, same greedy decoding), else the
script exits with status 1. ``--prompt plain`` is the bare SelFee prompt (an untrained model
then writes no verdict, and nothing is forced).

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

# (instruction, answer, feedback 1, revision 1 or None, feedback 2 or None)
_SHOTS = (
    (
        "Give one tip for better sleep.",
        "Sleep.",
        "The answer is too short. Revision is needed.",
        "Go to bed at the same time every night.",
        "The answer is good. Revision is not needed.",
    ),
    (
        "What colour is the sky on a clear day?",
        "Blue.",
        "The answer is good. Revision is not needed.",
    ),
    (
        "What is 2 + 3?",
        "2 + 3 = 6.",
        "The answer is wrong. Revision is needed.",
        "2 + 3 = 5.",
        "The answer is good. Revision is not needed.",
    ),
    (
        "Name the capital of France.",
        "The capital of France is Paris.",
        "The answer is good. Revision is not needed.",
    ),
)


def fewshot_prefix() -> str:
    """Return worked SelFee chains (prompt + chain) to put before each benchmark prompt."""
    from chorus_selfee.chain import Chain, build_prompt

    parts = []
    for instruction, answer, fb1, *rest in _SHOTS:
        chain = Chain(answer=answer, feedbacks=[fb1], revisions=[])
        if rest:
            chain.revisions.append(rest[0])
            chain.feedbacks.append(rest[1])
        parts.append(build_prompt(instruction) + chain.render() + "\n\n")
    return "".join(parts)


def naive(
    model, tok, prompts: list[str], budget: int, k: int, limit_s: float | None = None
) -> tuple[list[str], int, list[int]]:
    """Return the texts, total tokens and forced revisions per question of the token-by-token
    loop; with ``limit_s``, stop starting new questions once that many seconds have passed
    (fewer texts come back)."""
    import torch

    from chorus_selfee.chain import NEEDED
    from chorus_selfee.enforce import STOP_VERDICTS, revisions_written

    texts, total, forced_all = [], 0, []
    eos = tok.eos_token_id
    start = time.perf_counter()
    for prompt in prompts:
        if limit_s is not None and time.perf_counter() - start > limit_s:
            break
        text, used, past, ids, forced = "", 0, None, None, 0
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
            # Any verdict stops the row (as the stop strings do); only one inside a feedback
            # section, before K revisions and K forcings, is replaced (as in enforce_prompts).
            if hit:
                in_feedback = text.rfind("### Feedback ") > text.rfind("### Revision ")
                if in_feedback and revisions_written(text) < k and forced < k:
                    n = revisions_written(text) + 1
                    text = text[: -len(hit)] + f"{NEEDED}.\n\n### Revision {n}:\n"
                    forced += 1
                    past = None  # re-encode, as the original does after editing the text
                else:
                    break
        texts.append(text)
        total += used
        forced_all.append(forced)
    return texts, total, forced_all


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
        "--dtype",
        default="float32",
        help="model dtype for both sides (default float32: in bfloat16 a left-padded batch row "
        "and a single row round differently, greedy decoding can diverge, and the forced "
        "counts of the two sides could differ for that reason alone)",
    )
    parser.add_argument(
        "--prompt",
        choices=("fewshot", "plain"),
        default="fewshot",
        help="fewshot: worked chains before each prompt, so an untrained model writes verdicts "
        "and revisions are really forced; plain: the bare SelFee prompt",
    )
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
    from chorus_selfee.enforce import HFContinuer, enforce_prompts
    from chorus_shared.models import load_chat_model

    chat = load_chat_model(args.model, dtype=args.dtype)
    qs = load_instructions("vicuna80")[: args.questions]
    items = [(q["instruction"], "") for q in qs]

    prefix = fewshot_prefix() if args.prompt == "fewshot" else ""
    prompts = [prefix + build_prompt(*i) for i in items]
    # Untimed warm-up of both shapes (a batch of all rows, one row token by token).
    enforce_prompts(HFContinuer(chat.model, chat.tokenizer), prompts, max_new_tokens=4)
    naive(chat.model, chat.tokenizer, prompts[:1], 4, args.k)

    cont = HFContinuer(chat.model, chat.tokenizer)
    res, t_batched, others_batched = timed(
        lambda: enforce_prompts(cont, prompts, max_num_revision=args.k, max_new_tokens=args.budget)
    )
    tok_batched = sum(r.tokens for r in res)
    # Printed at once, so a run cut short by a time limit still reports the batched side.
    print(
        f"batched: {t_batched:.1f} s, {tok_batched} tokens, {cont.calls} generate calls, "
        f"other processes {others_batched} CPU-s",
        file=sys.stderr,
        flush=True,
    )
    (naive_texts, tok_naive, naive_forced), t_naive, others_naive = timed(
        lambda: naive(chat.model, chat.tokenizer, prompts, args.budget, args.k, args.naive_limit_s)
    )
    complete = len(naive_texts) == len(prompts)
    ratio = t_naive / t_batched if complete else None
    tps_ratio = (tok_batched / t_batched) / (tok_naive / t_naive) if tok_naive else None
    cores = os.cpu_count() or 1
    batched_forced = [r.forced for r in res]
    # Compare on the questions both sides answered (the naive loop may be cut short).
    same_forced = batched_forced[: len(naive_forced)] == naive_forced
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
                "prompt": args.prompt,
                "dtype": args.dtype,
                "forced_revisions": {
                    "batched": sum(batched_forced[: len(naive_forced)]),
                    "naive": sum(naive_forced),
                    "batched_all_questions": sum(batched_forced),
                    "same_per_question": same_forced,
                },
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
    if not same_forced:
        print(
            f"forced revisions differ per question: batched {batched_forced}, naive "
            f"{naive_forced} (greedy decoding diverged between the two sides)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
