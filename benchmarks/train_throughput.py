"""Training throughput of chorus_shared.training on the embedded model: tokens/s and peak RSS.

Runs a few optimizer steps of the weighted-loss Trainer in fp32 and in bf16 (this CPU has
AVX-512 BF16/AMX) on synthetic segment records, and prints input tokens/s of wall time for the
steps after a warm-up step, plus the process's peak RSS. A script, not a test.

Because a shared machine makes wall-clock rates meaningless, each timed part also reports the
CPU-seconds this process used, the CPU-seconds every other process used meanwhile (from
/proc/stat), and tokens per CPU-second of this process.

    .venv/bin/python benchmarks/train_throughput.py --steps 4 --seq 128 --batch 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from machine_load import machine_busy_seconds, own_cpu_seconds


def _records(n: int, words: int) -> list[dict]:
    text = "Compute 3+4*5-2 step by step and give the final answer. " * (words // 10 + 1)
    return [
        {"id": str(i), "segments": [{"text": f"{i}. " + text, "weight": 0},
                                    {"text": f"The answer is {i}.", "weight": 1}]}
        for i in range(n)
    ]  # fmt: skip


@dataclass
class Mark:
    wall: float
    own_cpu: float
    machine_busy: float | None
    tokens: int


@dataclass
class Result:
    precision: str
    timed_steps: int
    tokens: int
    wall_s: float
    tokens_per_s: float
    own_cpu_s: float
    tokens_per_cpu_s: float
    others_cpu_s: float | None
    others_share: float | None


def measure(bf16: bool, steps: int, seq: int, batch: int) -> Result:
    """Returns the rates over the steps after the first (warm-up) step."""
    from transformers import TrainerCallback

    from chorus_shared.training import train

    marks: list[Mark] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            marks.append(
                Mark(
                    time.perf_counter(),
                    own_cpu_seconds(),
                    machine_busy_seconds(),
                    state.num_input_tokens_seen,
                )
            )

    with tempfile.TemporaryDirectory() as out:
        recipe = {
            "model": "default", "max_length": seq, "truncation": "left",
            "max_steps": steps, "per_device_train_batch_size": batch, "bf16": bf16,
            "report_to": "none", "save_steps": 10_000, "logging_steps": 10_000,
            "extra_args": {"use_cpu": True, "disable_tqdm": True},
        }  # fmt: skip
        records = _records(batch * steps, seq)
        train(recipe, records, Path(out) / "run", resume=False, callbacks=[Clock()])
    first, last = marks[0], marks[-1]
    wall = last.wall - first.wall
    own = last.own_cpu - first.own_cpu
    tokens = last.tokens - first.tokens
    others = None
    share = None
    if first.machine_busy is not None and last.machine_busy is not None:
        others = max(0.0, (last.machine_busy - first.machine_busy) - own)
        share = others / (wall * (os.cpu_count() or 1))
    return Result(
        "bf16" if bf16 else "fp32",
        len(marks) - 1,
        tokens,
        round(wall, 2),
        round(tokens / wall, 1),
        round(own, 2),
        round(tokens / own, 1) if own else 0.0,
        None if others is None else round(others, 1),
        None if share is None else round(share, 3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps (first = warm-up)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per example")
    parser.add_argument("--batch", type=int, default=2, help="examples per step")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (one warm-up step, then timed steps)")
    import torch

    results = []
    for name in args.precisions.split(","):
        if name not in ("fp32", "bf16"):
            parser.error(f"unknown precision {name!r}; use fp32 and/or bf16")
        result = measure(name == "bf16", args.steps, args.seq, args.batch)
        results.append(result)
        print(
            f"{result.precision}: {result.tokens_per_s:.1f} input tokens/s "
            f"({result.tokens} tokens in {result.wall_s:.1f} s over {result.timed_steps} steps); "
            f"{result.tokens_per_cpu_s:.1f} tokens per CPU-s of this process "
            f"({result.own_cpu_s:.1f} CPU-s); other processes used {result.others_cpu_s} CPU-s "
            f"({(result.others_share or 0):.0%} of the machine)",
            flush=True,
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"SmolLM2-135M full fine-tuning, seq {args.seq}, batch {args.batch}, {args.steps} steps "
        f"(1 warm-up); torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rates = {r.precision: r for r in results}
    if "fp32" in rates and "bf16" in rates:
        wall_ratio = rates["bf16"].tokens_per_s / rates["fp32"].tokens_per_s
        cpu_ratio = rates["bf16"].tokens_per_cpu_s / rates["fp32"].tokens_per_cpu_s
        print(f"bf16 / fp32: {wall_ratio:.2f}x (wall), {cpu_ratio:.2f}x (per CPU-s)")
    print(f"peak RSS {peak:.0f} MiB")
    busiest = max((r.others_share or 0.0) for r in results)
    if busiest > 0.05:
        print(
            f"WARNING: other processes used up to {busiest:.0%} of the CPU during a timed part; "
            "the wall-clock rates are lower bounds"
        )
    if args.json:
        payload = {"results": [asdict(r) for r in results], "peak_rss_mib": round(peak)}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
