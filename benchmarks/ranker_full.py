"""PairRanker `full` ranking: our batched all-pairs pass vs the original's one forward per pair.

The original ranks n candidates with a Python double loop, one model call per ordered pair
(i, j), in fp32. Ours sends all n(n-1) pairs of all inputs through the encoder in
length-sorted batches, each text tokenized once, under ``torch.inference_mode`` and, where the
CPU runs bf16 natively (AMX / AVX-512 BF16), bf16 autocast. Same model (the offline
all-MiniLM-L6-v2 backbone with an untrained head), same inputs, one run. Prints the headline
ratio (ours vs the original's fp32 loop) and, to be fair about what the dtype alone buys, the
same-dtype ratios (fp32 loop vs fp32 batched, bf16 loop vs bf16 batched), each path's largest
logit difference from the fp32 loop, and peak RSS.

    .venv/bin/python benchmarks/ranker_full.py [--inputs 16] [--candidates 8] [--precision auto]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import time

import torch
from machine_load import machine_busy_seconds, own_cpu_seconds

from chorus_blender.ranker import PairRanker, RankerConfig, use_bf16
from chorus_blender.ranking import compare_matrix
from chorus_blender.recipes import resolve_backbone


class Watch:
    """Wall time of a block and the share of the machine other processes used meanwhile.

    On 2 shared cores another torch job slows a timing far more than its share; the share is
    printed so that a contaminated run can be told apart.
    """

    def __enter__(self) -> Watch:
        self.machine, self.own, self.start = (
            machine_busy_seconds(),
            own_cpu_seconds(),
            time.perf_counter(),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start
        after = machine_busy_seconds()
        self.others = None
        if self.machine is not None and after is not None:
            others_s = (after - self.machine) - (own_cpu_seconds() - self.own)
            self.others = max(0.0, others_s) / (self.seconds * (os.cpu_count() or 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="our batched path's precision (auto: bf16 on AMX / AVX-512 BF16 CPUs)",
    )
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

    ours = args.precision
    if use_bf16(ours, "cpu") and ours == "auto":
        ours = "bf16"
    elif ours == "auto":
        ours = "fp32"
    # Untimed warm-up of every shape and dtype (one pair alone, one full batch): first calls
    # pay for allocator growth and kernel selection, which would otherwise land on one side.
    for precision in {"fp32", ours}:
        ranker.pair_logits([sources[0]], [cands[0][0]], [cands[0][1]], precision=precision)
        compare_matrix(
            ranker,
            sources[:2],
            [c[:4] for c in cands[:2]],
            batch_size=args.batch_size,
            precision=precision,
        )

    def naive_loop(precision: str) -> tuple[list[torch.Tensor], Watch]:
        # The original's loop: one model call per ordered pair (i, j) of each input.
        with Watch() as watch:
            out = []
            for source, cs in zip(sources, cands, strict=True):
                m = torch.zeros(len(cs), len(cs))
                for i in range(len(cs)):
                    for j in range(len(cs)):
                        if i != j:
                            m[i, j] = ranker.pair_logits(
                                [source], [cs[i]], [cs[j]], precision=precision
                            )[0]
                out.append(m)
                # Progress, so that a run stopped on a busy machine still shows the pace.
                print(
                    f"  naive {precision}: input {len(out)}/{args.inputs} "
                    f"at {time.perf_counter() - watch.start:.1f} s",
                    flush=True,
                )
        return out, watch

    def batched_pass(precision: str) -> tuple[list, Watch]:
        with Watch() as watch:
            out = compare_matrix(
                ranker, sources, cands, batch_size=args.batch_size, precision=precision
            )
        return out, watch

    runs: dict[str, tuple[list, Watch]] = {}
    runs["naive fp32"] = naive_loop("fp32")
    runs["batched fp32"] = batched_pass("fp32")
    if ours != "fp32":
        runs[f"naive {ours}"] = naive_loop(ours)
        runs[f"batched {ours}"] = batched_pass(ours)

    reference = runs["naive fp32"][0]

    def diff(matrices: list) -> float:
        return max(
            float((torch.as_tensor(b, dtype=torch.float32) - n).abs().max())
            for b, n in zip(matrices, reference, strict=True)
        )

    pairs = args.inputs * args.candidates * (args.candidates - 1)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"full ranking, {args.inputs} inputs x {args.candidates} candidates = {pairs} pairs")
    for name, (matrices, watch) in runs.items():
        print(
            f"  {name:14s} {watch.seconds:7.2f} s  ({pairs / watch.seconds:6.1f} pairs/s)  "
            f"max |logit - naive fp32|: {diff(matrices):.1e}"
        )
    t = {name: watch.seconds for name, (_, watch) in runs.items()}
    print(
        f"  ratio, ours ({ours} batched) vs the original (fp32, one forward per pair): "
        f"{t['naive fp32'] / t[f'batched {ours}']:.1f}x"
    )
    print(f"  same-dtype ratio fp32: {t['naive fp32'] / t['batched fp32']:.1f}x")
    if ours != "fp32":
        print(f"  same-dtype ratio {ours}: {t[f'naive {ours}'] / t[f'batched {ours}']:.1f}x")
    print(f"  peak RSS: {rss_mb:.0f} MiB   torch threads: {torch.get_num_threads()}")
    for name, (_, watch) in runs.items():
        if watch.others is not None:
            print(f"  other processes during {name}: {watch.others:.0%} of the machine's CPU")
    busiest = max((watch.others or 0.0) for _, watch in runs.values())
    if busiest > 0.05:
        print(f"  WARNING: other processes used up to {busiest:.0%} of the CPU: not comparable")


if __name__ == "__main__":
    main()
