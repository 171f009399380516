"""SelFee revision-enforced inference: the original's token-by-token loop vs our batched rounds.

Both sides answer the same Vicuna-80 questions with the same model object, the same SelFee
prompt, greedy decoding, the same per-question token budget and the same K:

  naive    the original's way: one question at a time, one token per Python step (KV cache
           kept), the text decoded after every token and searched for the "no revision needed"
           verdict; before K revisions it is replaced and the whole text re-encoded.
  batched  ``enforce_generate`` with ``HFContinuer``: each round one batched ``generate`` over
           every row still running, rows stopped by a stop string, at most K+1 rounds.

Printed: wall time of each, the ratio, generated tokens, and peak RSS of the process.
Run: ``.venv/bin/python benchmarks/selfee_enforce.py [--questions 16 --budget 128 --k 2]``.
A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

TARGET_RATIO = 5.0


def naive(model, tok, prompts: list[str], budget: int, k: int) -> tuple[list[str], int]:
    """Return the texts and total tokens of the token-by-token loop."""
    import torch

    from chorus_selfee.chain import NEEDED
    from chorus_selfee.enforce import STOP_VERDICTS, revisions_written

    texts, total = [], 0
    eos = tok.eos_token_id
    for prompt in prompts:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default")
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--budget", type=int, default=128)
    parser.add_argument("--k", type=int, default=2)
    args = parser.parse_args()

    import torch

    from chorus_selfee.chain import build_prompt
    from chorus_selfee.datasets import load_instructions
    from chorus_selfee.enforce import HFContinuer, enforce_generate
    from chorus_shared.models import load_chat_model

    chat = load_chat_model(args.model)
    qs = load_instructions("vicuna80")[: args.questions]
    items = [(q["instruction"], "") for q in qs]

    t0 = time.perf_counter()
    cont = HFContinuer(chat.model, chat.tokenizer)
    res = enforce_generate(cont, items, max_num_revision=args.k, max_new_tokens=args.budget)
    t_batched = time.perf_counter() - t0
    tok_batched = sum(r.tokens for r in res)

    t0 = time.perf_counter()
    _, tok_naive = naive(
        chat.model, chat.tokenizer, [build_prompt(*i) for i in items], args.budget, args.k
    )
    t_naive = time.perf_counter() - t0

    ratio = t_naive / t_batched
    print(
        json.dumps(
            {
                "model": args.model,
                "questions": len(items),
                "budget": args.budget,
                "k": args.k,
                "torch_threads": torch.get_num_threads(),
                "naive_s": round(t_naive, 2),
                "naive_tokens": tok_naive,
                "batched_s": round(t_batched, 2),
                "batched_tokens": tok_batched,
                "batched_generate_calls": cont.calls,
                "forced_revisions": sum(r.forced for r in res),
                "ratio": round(ratio, 2),
                "target": TARGET_RATIO,
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
