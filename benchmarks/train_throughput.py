"""Fine-tuning throughput of chorus_shared.training against the plain HF Trainer, with MFU.

One process, same records, same optimizer steps, same examples in each step (both samplers draw
the same seeded permutation; an effective batch of 8 examples per step on both sides):

- ``plain``: the plain ``transformers.Trainer`` with its defaults: fp32, the model's own loss,
  each batch of 8 padded to its longest example (what a user writes first);
- ``ours``: ``chorus_shared.training.train``: packed micro-batches (no padding, attention per
  example), logits only where trained, bf16 autocast;
- ``ours-fp32``: the same in fp32 (what packing alone buys; a recipe's default on a CPU);
- ``ours-bf16w``: the same with ``bf16_weights: true`` (bf16 model, fp32 master AdamW);
- ``ours-compile``: ``ours`` under ``torch_compile`` (not in the default list; see README).

Before them it measures this machine's bf16 (and fp32) matmul peak in FLOP/s, with as many
threads as training uses. For each variant it prints input tokens/s (padding excluded) over the
optimizer steps after a warm-up step, the model FLOPs utilisation
``MFU = 6 * N * tokens / time / peak_bf16`` (N = the model's parameters, the tied embedding
counted once as the LM head; attention FLOPs are not counted), the padding share of the
processed tokens, the time spent collating batches, and the other processes' share of the CPU
(a WARNING above 5 %). Then ``ratio vs plain Trainer: N.Nx (goal >= 3x)`` for each variant.

Records: TriPosT's word-sorting rationales (433 records, 104-660 tokens, mean 237 with the
embedded tokenizer; the question is context, the rationale + EOS is trained) or synthetic ones
of 150-600 tokens (``--records synthetic``).

    .venv/bin/python benchmarks/train_throughput.py                      # the real measurement
    .venv/bin/python benchmarks/train_throughput.py --model tiny --steps 2 --peak-seconds 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from machine_load import machine_busy_seconds, own_cpu_seconds

VARIANTS = ("plain", "ours-fp32", "ours", "ours-bf16w", "ours-compile")
BATCH = 8  # examples per optimizer step on every side: the plain Trainer's batch of 8
TRIPOST_FILE = "tripost/training/word_sorting/word_sorting_baseline_rationale_1-7.jsonl"
GOAL = 3.0


# --------------------------------------------------------------------------- machine peak


def matmul_peak(dtype_name: str, size: int, seconds: float) -> float:
    """Returns the best FLOP/s of ``size``-cubed matmuls in ``dtype_name`` over ``seconds``."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    for _ in range(2):  # warm-up: oneDNN/AMX kernel selection and page faults
        a @ b
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        a @ b
        elapsed = time.perf_counter() - start
        best = max(best, 2 * size**3 / elapsed)
        if time.perf_counter() > deadline:
            return best


# --------------------------------------------------------------------------- records


def _read_word_sorting(root: Path, split: str) -> list[dict]:
    path = root / TRIPOST_FILE if root.is_dir() else root
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        text, marker = row["text"], row["text_att_start_text"]
        cut = text.index(marker) + len(marker)
        records.append(
            {
                "id": f"word_sorting-{i}",
                "segments": [
                    {"text": text[:cut], "weight": 0},  # the question: context
                    {"text": text[cut:], "weight": 1},  # the rationale and answer: trained
                ],
                "add_eos": True,
            }
        )
    return records


def tripost_records(data_dir: str | None) -> list[dict]:
    """Returns TriPosT's word-sorting rationales as segment records (question = context)."""
    from chorus_shared.data import load_dataset_records, register_dataset

    register_dataset("bench-tripost-word-sorting", _read_word_sorting, splits=("train",))
    try:
        return load_dataset_records("bench-tripost-word-sorting", "train", path=data_dir)
    except (OSError, ValueError) as err:
        raise SystemExit(f"train_throughput: error: {err}\n(or use --records synthetic)") from None


def synthetic_records(n: int, seed: int = 0) -> list[dict]:
    """Returns ``n`` word-sorting-like records of ~150-600 tokens (embedded tokenizer)."""
    rng = random.Random(seed)
    words = ["apple", "river", "cobalt", "sharpshoot", "irwin", "embedded", "osteology", "vilify"]
    records = []
    for i in range(n):
        k = rng.randint(6, 26)  # ~23 tokens per rationale line
        chosen = [rng.choice(words) for _ in range(k)]
        question = f"Q: Sort the following words alphabetically:\nList: {' '.join(chosen)}\nAnswer:"
        lines = [f'({j + 1}) "{w}"="{w[0]}" ({ord(w[0]) - 96}).' for j, w in enumerate(chosen)]
        answer = " Let's think step by step.\n" + "\n".join(lines)
        answer += f"\nSo the answer is: {' '.join(sorted(chosen))}."
        records.append(
            {
                "id": f"synthetic-{i}",
                "segments": [{"text": question, "weight": 0}, {"text": answer, "weight": 1}],
                "add_eos": True,
            }
        )
    return records


# --------------------------------------------------------------------------- timing


@dataclass
class Mark:
    wall: float
    own_cpu: float
    machine_busy: float | None
    tokens: int


@dataclass
class Result:
    variant: str
    micro_batch: int
    timed_steps: int
    tokens: int
    wall_s: float
    tokens_per_s: float
    step_s: float
    mfu: float
    padding_share: float
    collate_ms_per_step: float
    own_cpu_s: float
    others_share: float | None
    first_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Collation:
    """Counts the real and processed (padded) tokens and the time spent in a collator."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.real = 0
        self.processed = 0

    def wrap(self, collate: Callable[[Sequence[Any]], dict]) -> Callable[[Sequence[Any]], dict]:
        def timed(features: Sequence[Any]) -> dict:
            start = time.perf_counter()
            batch = collate(features)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            self.real += sum(len(f["input_ids"]) for f in features)
            self.processed += int(batch["input_ids"].numel())
            return batch

        return timed


def _clock(marks: list[Mark]) -> Any:
    from transformers import TrainerCallback

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

    return Clock()


def summarise(
    variant: str,
    micro: int,
    marks: list[Mark],
    collation: Collation,
    n_params: int,
    peak: float,
    first_loss: float | None,
) -> Result:
    """Returns the rates over the steps after the first (warm-up) step."""
    first, last = marks[0], marks[-1]
    wall = last.wall - first.wall
    own = last.own_cpu - first.own_cpu
    tokens = int(last.tokens - first.tokens)
    share = None
    if first.machine_busy is not None and last.machine_busy is not None:
        others = max(0.0, (last.machine_busy - first.machine_busy) - own)
        share = others / (wall * (os.cpu_count() or 1))
    steps = len(marks) - 1
    rate = tokens / wall
    return Result(
        variant=variant,
        micro_batch=micro,
        timed_steps=steps,
        tokens=tokens,
        wall_s=round(wall, 2),
        tokens_per_s=round(rate, 1),
        step_s=round(wall / steps, 3),
        mfu=round(6 * n_params * rate / peak, 4),
        padding_share=round(1 - collation.real / max(collation.processed, 1), 3),
        collate_ms_per_step=round(1000 * collation.seconds / max(len(marks), 1), 2),
        own_cpu_s=round(own, 2),
        others_share=None if share is None else round(share, 3),
        first_loss=first_loss,
    )


# --------------------------------------------------------------------------- the two sides


def _examples(model_path: str, records: list[dict], max_length: int) -> tuple[Any, list]:
    from transformers import AutoTokenizer

    from chorus_shared.training import build_examples

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples, _ = build_examples(records, tokenizer, max_length=max_length)
    return tokenizer, examples


def run_plain(
    model_path: str, records: list[dict], steps: int, max_length: int, peak: float, threads: int
) -> Result:
    """The plain HF Trainer with its defaults (fp32, pad to longest, batch 8), same tokens."""
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    tokenizer, examples = _examples(model_path, records, max_length)
    rows = [
        {
            "input_ids": e.input_ids,
            "labels": [t if w > 0 else -100 for t, w in zip(e.input_ids, e.weights, strict=True)],
        }
        for e in examples
    ]

    def pad_to_longest(features: Sequence[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.tensor(f["input_ids"])
            labels[r, :n] = torch.tensor(f["labels"])
            mask[r, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    collation = Collation()
    marks: list[Mark] = []
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype="float32")
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=BATCH,
            max_steps=steps,
            use_cpu=True,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=1_000_000,
            logging_first_step=True,  # the first step's loss, to compare with ours
            include_num_input_tokens_seen="non_padding",  # counts tokens; costs nothing
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=rows,
            data_collator=collation.wrap(pad_to_longest),
            callbacks=[_clock(marks)],
        )
        torch.set_num_threads(threads)
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    n_params = sum(p.numel() for p in model.parameters())  # unique: a tied head counts once
    del trainer, model
    gc.collect()
    first = float(losses[0]) if losses else None
    return summarise("plain", BATCH, marks, collation, n_params, peak, first)


@contextlib.contextmanager
def _timed_collators(collation: Collation) -> Iterator[None]:
    """Times chorus_shared.training's collators (the train() call builds its own)."""
    from chorus_shared.training import packing, trainer

    classes = (packing.PackedCollator, trainer.WeightedCollator)
    saved = [cls.__call__ for cls in classes]

    def timed(call: Callable) -> Callable:
        def __call__(self: Any, features: Sequence[Any]) -> dict:
            return collation.wrap(lambda f: call(self, f))(features)

        return __call__

    for cls, call in zip(classes, saved, strict=True):
        cls.__call__ = timed(call)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, call in zip(classes, saved, strict=True):
            cls.__call__ = call  # type: ignore[method-assign]


def run_ours(
    variant: str,
    model_path: str,
    records: list[dict],
    steps: int,
    micro: int,
    max_length: int,
    peak: float,
    threads: int,
) -> Result:
    """chorus_shared.training.train on the same records and steps (effective batch 8)."""
    import torch
    from transformers import AutoConfig

    from chorus_shared.training import train

    extra: dict[str, Any] = {"use_cpu": True, "disable_tqdm": True}
    if variant == "ours-compile":
        extra["torch_compile"] = True
    recipe = {
        "model": f"hf:{model_path}", "max_length": max_length, "max_steps": steps,
        "per_device_train_batch_size": micro, "gradient_accumulation_steps": BATCH // micro,
        "bf16": variant != "ours-fp32", "bf16_weights": variant == "ours-bf16w",
        "report_to": "none",
        "save_steps": 1_000_000, "logging_steps": 1_000_000, "extra_args": extra,
    }  # fmt: skip
    collation = Collation()
    marks: list[Mark] = []
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out, _timed_collators(collation):
        result = train(recipe, records, Path(out) / "run", resume=False, callbacks=[_clock(marks)])
    config = AutoConfig.from_pretrained(model_path)
    n_params = _param_count(config)
    gc.collect()
    return summarise(
        variant, micro, marks, collation, n_params, peak, result.metrics.get("first_loss")
    )


def _param_count(config: Any) -> int:
    """Returns the parameter count of a model built from ``config`` (meta device: no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- main


def _tiny_model(folder: Path) -> str:
    from chorus_shared.testing import build_tiny_chat_model

    return str(build_tiny_chat_model(folder / "tiny", hidden_size=64))


def _model_path(spec: str, scratch: Path) -> str:
    if spec == "tiny":
        return _tiny_model(scratch)
    from chorus_shared.training.trainer import resolve_model_path

    return resolve_model_path(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--model",
        default="default",
        help="default (SmolLM2-135M-Instruct), tiny (random 2-layer, a smoke "
        "test), or hf:<id or folder>",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=5,
        help="optimizer steps of 8 examples per variant (first = warm-up)",
    )
    parser.add_argument(
        "--variants",
        default="plain,ours,ours-bf16w",
        help=f"comma-separated, from {','.join(VARIANTS)}",
    )
    parser.add_argument(
        "--micro-batches",
        default="8",
        help="ours: examples per packed micro-batch (divisors of 8), e.g. 2,4,8",
    )
    parser.add_argument("--records", choices=("tripost", "synthetic"), default="tripost")
    parser.add_argument("--data-dir", default=None, help="the shared data folder (tripost)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument(
        "--peak-seconds", type=float, default=3.0, help="seconds of matmul per dtype for the peak"
    )
    parser.add_argument("--peak-size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()  # fmt: skip
    variants = [v for v in args.variants.split(",") if v]
    if unknown := sorted(set(variants) - set(VARIANTS)):
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    micros = [int(m) for m in args.micro_batches.split(",")]
    if any(m < 1 or BATCH % m for m in micros):
        parser.error(f"--micro-batches must divide {BATCH}")
    if args.steps < 2:
        parser.error("--steps must be at least 2 (one warm-up step, then timed steps)")
    import torch

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    peak_bf16 = matmul_peak("bfloat16", args.peak_size, args.peak_seconds)
    peak_fp32 = matmul_peak("float32", args.peak_size, args.peak_seconds)
    print(
        f"matmul peak ({args.peak_size}^3, {threads} threads): bf16 {peak_bf16 / 1e9:.1f} "
        f"GFLOP/s, fp32 {peak_fp32 / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    records = (
        tripost_records(args.data_dir) if args.records == "tripost" else synthetic_records(433)
    )
    # The same records in the same order for every variant; enough for the steps asked.
    records = records[: max(BATCH * args.steps, BATCH)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch:
        model_path = _model_path(args.model, Path(scratch))
        for variant in variants:
            for micro in [BATCH] if variant == "plain" else micros:
                if variant == "plain":
                    row = run_plain(
                        model_path, records, args.steps, args.max_length, peak_bf16, threads
                    )
                else:
                    row = run_ours(variant, model_path, records, args.steps, micro,
                                   args.max_length, peak_bf16, threads)  # fmt: skip
                results.append(row)
                print(
                    f"{row.variant:13s} micro-batch {row.micro_batch}: "
                    f"{row.tokens_per_s:8.1f} tokens/s ({row.tokens} tokens in {row.wall_s:.1f} s, "
                    f"{row.timed_steps} steps, {row.step_s:.2f} s/step); MFU {row.mfu:.1%} "
                    f"(6*N*tokens vs the bf16 peak, attention not counted); padding "
                    f"{row.padding_share:.0%} of processed tokens; collate "
                    f"{row.collate_ms_per_step:.1f} ms/step; other processes "
                    f"{(row.others_share or 0):.0%} of the CPU; first-step loss {row.first_loss}",
                    flush=True,
                )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model {args.model}, records {args.records} ({len(records)} used), batch {BATCH} per "
        f"step, {args.steps} steps (1 warm-up); torch {torch.__version__}, {threads} threads; "
        f"peak RSS {peak_rss:.0f} MiB"
    )
    plain = next((r for r in results if r.variant == "plain"), None)
    ratios = {}
    if plain is not None:
        for r in results:
            if r.variant != "plain":
                ratio = r.tokens_per_s / plain.tokens_per_s
                ratios[f"{r.variant}/mb{r.micro_batch}"] = round(ratio, 2)
                met = "met" if ratio >= GOAL else "NOT met"
                print(
                    f"{r.variant} (micro-batch {r.micro_batch}): ratio vs plain Trainer: "
                    f"{ratio:.1f}x (goal >= {GOAL:.0f}x: {met})"
                )
    busiest = max((r.others_share or 0.0) for r in results) if results else 0.0
    if busiest > 0.05:
        print(
            f"WARNING: other processes used up to {busiest:.0%} of the CPU during a timed part; "
            "the wall-clock rates are lower bounds"
        )
    if args.json:
        payload = {
            "peak_flops": {"bf16": peak_bf16, "fp32": peak_fp32},
            "results": [asdict(r) for r in results],
            "ratios_vs_plain": ratios,
            "peak_rss_mib": round(peak_rss),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
