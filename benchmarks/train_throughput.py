"""Training throughput of chorus_shared.training on the embedded model: tokens/s and peak RSS.

Runs a few optimizer steps of the weighted-loss Trainer in fp32 and in bf16 (this CPU has
AVX-512 BF16/AMX) on synthetic segment records, and prints input tokens/s of wall time for the
steps after a warm-up step, plus the process's peak RSS. A script, not a test.

    .venv/bin/python benchmarks/train_throughput.py --steps 4 --seq 128 --batch 2
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path


def _records(n: int, words: int) -> list[dict]:
    text = "Compute 3+4*5-2 step by step and give the final answer. " * (words // 10 + 1)
    return [
        {"id": str(i), "segments": [{"text": f"{i}. " + text, "weight": 0},
                                    {"text": f"The answer is {i}.", "weight": 1}]}
        for i in range(n)
    ]  # fmt: skip


def measure(bf16: bool, steps: int, seq: int, batch: int) -> float:
    """Returns input tokens/s over the steps after the first (warm-up) step."""
    from transformers import TrainerCallback

    import chorus_shared.training.trainer as t

    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            marks.append((time.perf_counter(), state.num_input_tokens_seen))

    original = t._throughput_callback
    t._throughput_callback = lambda: Clock()
    try:
        with tempfile.TemporaryDirectory() as out:
            recipe = {
                "model": "default", "max_length": seq, "truncation": "left",
                "max_steps": steps, "per_device_train_batch_size": batch, "bf16": bf16,
                "report_to": "none", "save_steps": 10_000, "logging_steps": 10_000,
                "extra_args": {"use_cpu": True},
            }  # fmt: skip
            t.train(recipe, _records(batch * steps, seq), Path(out) / "run", resume=False)
    finally:
        t._throughput_callback = original
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for bf16 in (False, True):
        rows.append(("bf16" if bf16 else "fp32", measure(bf16, args.steps, args.seq, args.batch)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"SmolLM2-135M, seq {args.seq}, batch {args.batch}, {args.steps} steps (1 warm-up)")
    for name, rate in rows:
        print(f"{name}: {rate:.1f} input tokens/s")
    print(f"bf16 / fp32: {rows[1][1] / rows[0][1]:.2f}x; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
