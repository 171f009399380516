"""PairRanker `full` ranking: our batched all-pairs pass vs the original's one forward per pair.

The original ranks n candidates with a Python double loop, one model call per ordered pair
(i, j). Ours sends all n(n-1) pairs of all inputs through the encoder in length-sorted batches.
Same model (the offline all-MiniLM-L6-v2 backbone with an untrained head), same inputs, one run;
prints both times, the ratio, and peak RSS.

    .venv/bin/python benchmarks/ranker_full.py [--inputs 16] [--candidates 8]
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import torch

from chorus_blender.ranker import PairRanker, RankerConfig
from chorus_blender.ranking import compare_matrix
from chorus_blender.recipes import resolve_backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    torch.set_grad_enabled(False)
    # MiniLM reads 512 positions: the offline recipe's budgets.
    budgets = RankerConfig(source_max_length=128, candidate_max_length=160, max_length=480)
    ranker = PairRanker.from_backbone(resolve_backbone("minilm"), budgets).eval()
    rng = random.Random(0)
    words = ["the", "model", "answers", "each", "question", "with", "a", "short", "and"]
    words += ["careful", "explanation", "of", "it"]
    sources = [" ".join(rng.choices(words, k=rng.randint(10, 40))) for _ in range(args.inputs)]
    cands = [
        [" ".join(rng.choices(words, k=rng.randint(5, 80))) for _ in range(args.candidates)]
        for _ in range(args.inputs)
    ]

    start = time.perf_counter()
    naive = []
    for source, cs in zip(sources, cands, strict=True):
        m = torch.zeros(len(cs), len(cs))
        for i in range(len(cs)):
            for j in range(len(cs)):
                if i != j:
                    m[i, j] = ranker.pair_logits([source], [cs[i]], [cs[j]])[0]
        naive.append(m)
    t_naive = time.perf_counter() - start

    start = time.perf_counter()
    batched = compare_matrix(ranker, sources, cands, batch_size=args.batch_size)
    t_batched = time.perf_counter() - start

    diff = max(
        float((torch.tensor(b) - n).abs().max()) for b, n in zip(batched, naive, strict=True)
    )
    pairs = args.inputs * args.candidates * (args.candidates - 1)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"full ranking, {args.inputs} inputs x {args.candidates} candidates = {pairs} pairs")
    print(f"  naive (one forward per pair): {t_naive:7.2f} s  ({pairs / t_naive:6.1f} pairs/s)")
    print(f"  batched all pairs:            {t_batched:7.2f} s  ({pairs / t_batched:6.1f} pairs/s)")
    print(f"  ratio: {t_naive / t_batched:.1f}x   max |logit diff|: {diff:.2e}")
    print(f"  peak RSS: {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
