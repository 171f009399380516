"""Debate throughput: the seed port's one-prompt-at-a-time loop against our batched engine.

Both sides answer the same GSM8K questions with the same model object, the same prompts (the
engine's own templates), the same token budget and greedy decoding:

  naive   the seed port's way: every agent of every round of every question in sequence,
          ``generate`` on a batch of one, the whole history re-rendered and re-encoded each
          turn, the reply recovered by decoding the full sequence and splitting it on the
          chat template's assistant marker (the original ``--split``);
  engine  ``DebateEngine.run`` over all questions as one window: each round is one batched
          ``chat`` call (length-sorted, left-padded micro-batches), replies read from the
          generated token ids.

Throughput is generated reply tokens per second of wall time (the end-of-sequence token
included on both sides). With greedy de-duplication on (identical prompts generated once and
the reply shared), the engine *delivers* more reply tokens than it computes; both figures
are printed and the speedup of that variant is labelled as delivered tokens.

Run: ``.venv/bin/python benchmarks/debate_throughput.py [--questions 8 --agents 3 ...]``.
This is a benchmark, not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The acceptance figure for this benchmark, on 2 CPU cores with the default model.
TARGET_SPEEDUP = 8.0
DEDUPE_ATTRS = ("dedupe_greedy", "dedupe")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=8, help="GSM8K test questions (default 8)")
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="token budget per reply (default 64 keeps a run near 6 min on 2 cores; "
        "the issue's setting is 128)",
    )
    p.add_argument("--model", default="default", help="an hf model spec (default: embedded)")
    p.add_argument("--batch-size", type=int, default=32, help="engine micro-batch size")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    return p.parse_args(argv)


@dataclass
class Timing:
    """What one side produced: replies [item][round][agent], tokens and seconds."""

    name: str
    replies: list[list[list[str]]]
    tokens: int
    seconds: float
    computed_tokens: int | None = None  # set when it differs from ``tokens`` (de-duplication)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# -- the naive loop --------------------------------------------------------------------------


def assistant_marker(tokenizer: Any) -> str:
    """Return the text the chat template appends to open the assistant's turn."""
    conv = [{"role": "user", "content": "x"}]
    with_prompt = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    without = tokenizer.apply_chat_template(conv, add_generation_prompt=False, tokenize=False)
    if not with_prompt.startswith(without) or with_prompt == without:
        raise SystemExit("cannot find this chat template's assistant marker for the naive loop")
    return with_prompt[len(without) :]


class NaiveAgent:
    """One reply per ``generate`` call, as the seed port did it."""

    def __init__(self, chat_model: Any, max_new_tokens: int) -> None:
        from transformers import GenerationConfig

        self.model = chat_model.model
        self.tokenizer = chat_model.tokenizer
        self.marker = assistant_marker(self.tokenizer)
        self.eos_texts = [self.tokenizer.convert_ids_to_tokens(i) for i in chat_model.eos_token_ids]
        self.config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=chat_model.pad_token_id,
            eos_token_id=chat_model.eos_token_ids,
        )

    def reply(self, history: list[dict[str, str]]) -> tuple[str, int]:
        """Return the reply to ``history`` and the number of new tokens generated."""
        import torch

        text = self.tokenizer.apply_chat_template(
            history, add_generation_prompt=True, tokenize=False
        )
        enc = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=enc["input_ids"].to(self.model.device),
                attention_mask=enc["attention_mask"].to(self.model.device),
                generation_config=self.config,
            )
        new_tokens = out.shape[1] - enc["input_ids"].shape[1]
        # The seed port's --split: decode prompt + reply, keep what follows the last marker.
        decoded = self.tokenizer.decode(out[0], skip_special_tokens=False)
        reply = decoded.split(self.marker)[-1]
        for eos in self.eos_texts:
            reply = reply.split(eos)[0]
        return reply.strip(), new_tokens


def run_naive(chat_model: Any, task: Any, items: list[dict], args: argparse.Namespace) -> Timing:
    """Return the naive loop's replies, reply tokens and wall time."""
    from chorus_debate.debate import DEBATE_PROMPT, OTHER_AGENT

    agent = NaiveAgent(chat_model, args.max_new_tokens)
    replies: list[list[list[str]]] = []
    tokens = 0
    start = time.perf_counter()
    for item in items:
        prompt = task.first_prompt(item)
        histories = [[{"role": "user", "content": prompt}] for _ in range(args.agents)]
        per_round: list[list[str]] = []
        for round_ in range(args.rounds):
            if round_ > 0:
                last = per_round[-1]
                for a in range(args.agents):
                    others = "\n\n".join(
                        OTHER_AGENT.format(n=b + 1, text=last[b] or "(no answer)")
                        for b in range(args.agents)
                        if b != a
                    )
                    content = DEBATE_PROMPT.format(others=others, task=prompt)
                    histories[a].append({"role": "user", "content": content})
            this_round = []
            for a in range(args.agents):
                text, n = agent.reply(histories[a])
                tokens += n
                histories[a].append({"role": "assistant", "content": text})
                this_round.append(text)
            per_round.append(this_round)
        replies.append(per_round)
    seconds = time.perf_counter() - start
    return Timing("naive (seed port loop)", replies, tokens, seconds)


# -- the engine ------------------------------------------------------------------------------


def run_engine(
    chat_model: Any, task: Any, items: list[dict], args: argparse.Namespace, name: str
) -> Timing:
    """Return the engine's replies, delivered and computed reply tokens and wall time."""
    from chorus_debate.debate import DebateEngine, DebateSetup
    from chorus_debate.methods import plan_method
    from chorus_shared.models import SamplingParams

    setup = DebateSetup(
        plan=plan_method("debate", args.agents, args.rounds),
        params=SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0),
    )
    engine = DebateEngine(task, [chat_model] * args.agents, setup)

    # Count the tokens actually generated: a reply shared by de-duplication is marked in
    # Completion.extra["shared_with"] and was not computed again.
    calls: list[dict[str, Any]] = []
    inner_chat = chat_model.chat

    def counting_chat(conversations, params):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = inner_chat(conversations, params)
        unique = [c for c in out if "shared_with" not in c.extra]
        calls.append(
            {
                "conversations": len(out),
                "generated": len(unique),
                "prompt_tokens": sum(c.prompt_tokens for c in unique),
                "computed_tokens": sum(c.completion_tokens for c in unique),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
        return out

    shadowed = vars(chat_model).get("chat")
    chat_model.chat = counting_chat
    try:
        start = time.perf_counter()
        records = [r.to_json() for r in engine.run(items)]  # as stored in records.jsonl
        seconds = time.perf_counter() - start
    finally:
        if shadowed is None:
            del chat_model.chat  # back to the class's method
        else:
            chat_model.chat = shadowed
    delivered = sum(rec["usage"]["completion_tokens"] for rec in records)
    computed = sum(c["computed_tokens"] for c in calls)
    replies = [
        [
            [
                [m["content"] for m in rec["agents"][a]["messages"] if m["role"] == "assistant"][r]
                for a in range(args.agents)
            ]
            for r in range(args.rounds)
        ]
        for rec in records
    ]
    return Timing(
        name,
        replies,
        delivered,
        seconds,
        computed_tokens=computed if computed != delivered else None,
        notes={"chat_calls": calls},
    )


# -- report ----------------------------------------------------------------------------------


def reply_differences(a: Timing, b: Timing) -> list[int]:
    """Return, per round, how many replies of ``a`` and ``b`` differ."""
    rounds = len(a.replies[0]) if a.replies else 0
    return [
        sum(
            x != y
            for ia, ib in zip(a.replies, b.replies, strict=True)
            for x, y in zip(ia[r], ib[r], strict=True)
        )
        for r in range(rounds)
    ]


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _machine_cpu_seconds() -> tuple[float, float] | None:
    """Return (busy, stolen) CPU-seconds of the whole machine since boot; None without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def watched(run: Any, *args: Any) -> Timing:
    """Return ``run(*args)`` with the CPU time other processes used meanwhile in its notes.

    Timings on a busy machine are not comparable: two processes whose OpenMP threads share
    the same cores slow each other down far more than their share.
    """
    before, own_before = _machine_cpu_seconds(), _own_cpu_seconds()
    timing = run(*args)
    after, own_after = _machine_cpu_seconds(), _own_cpu_seconds()
    if before is not None and after is not None:
        others = (after[0] - before[0]) - (own_after - own_before)
        timing.notes["other_processes_cpu_s"] = round(max(0.0, others), 1)
        timing.notes["steal_cpu_s"] = round(after[1] - before[1], 1)
    return timing


def busy_share(t: Timing) -> float:
    """Return the share of the machine's CPU capacity other processes used during ``t``."""
    capacity = t.seconds * (os.cpu_count() or 1)
    return t.notes.get("other_processes_cpu_s", 0.0) / capacity if capacity else 0.0


def report_progress(t: Timing) -> None:
    """Print how long a run took and, for the engine, each batched ``chat`` call."""
    print(f"  {t.name} done in {t.seconds:.1f} s", flush=True)
    if "other_processes_cpu_s" in t.notes:
        print(
            f"    other processes used {t.notes['other_processes_cpu_s']:.1f} CPU-s "
            f"({busy_share(t):.0%} of the machine), steal {t.notes['steal_cpu_s']:.1f} CPU-s",
            flush=True,
        )
    for k, call in enumerate(t.notes.get("chat_calls", []), 1):
        print(
            f"    chat call {k}: {call['conversations']} conversations, {call['generated']} "
            f"generated, {call['prompt_tokens']} prompt tokens, {call['computed_tokens']} "
            f"reply tokens, {call['seconds']:.1f} s",
            flush=True,
        )


def find_dedupe_attr(chat_model: Any) -> str | None:
    """Return the name of the model's greedy de-duplication switch, None when it has none."""
    for name in DEDUPE_ATTRS:
        if isinstance(getattr(chat_model, name, None), bool):
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    """Run both sides, print the table and the speedup; return the exit status."""
    args = parse_args(argv)
    import torch

    from chorus_debate.tasks import get_task
    from chorus_shared.models import SamplingParams, load_chat_model
    from chorus_shared.models.hf import HFChatModel

    load_start = time.perf_counter()
    model = load_chat_model(args.model, batch_size=args.batch_size)
    load_s = time.perf_counter() - load_start
    if not isinstance(model, HFChatModel):
        raise SystemExit(f"the naive loop needs a transformers model; {args.model!r} is not one")
    task = get_task("gsm")
    items = task.load(args.questions, 0, None)
    total_replies = len(items) * args.agents * args.rounds

    # Warm-up, untimed: the first generates of a process pay one-off costs (kernel selection,
    # allocator growth). Warm both shapes: one prompt alone, and all first prompts batched.
    first_prompts = [[{"role": "user", "content": task.first_prompt(it)}] for it in items]
    NaiveAgent(model, 8).reply(first_prompts[0])
    model.chat(first_prompts, SamplingParams(max_new_tokens=8))

    dedupe_attr = find_dedupe_attr(model)
    original_dedupe = getattr(model, dedupe_attr) if dedupe_attr else None
    print(
        f"debate throughput: {len(items)} GSM8K questions x {args.agents} agents x "
        f"{args.rounds} rounds = {total_replies} replies, max {args.max_new_tokens} new tokens, "
        f"greedy, model {args.model!r} (loaded in {load_s:.1f} s), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        flush=True,
    )

    naive = watched(run_naive, model, task, items, args)
    report_progress(naive)
    runs = []
    try:
        if dedupe_attr:
            setattr(model, dedupe_attr, False)
        runs.append(watched(run_engine, model, task, items, args, "engine (batched)"))
        report_progress(runs[-1])
        if dedupe_attr:
            setattr(model, dedupe_attr, True)
            runs.append(watched(run_engine, model, task, items, args, "engine + greedy dedupe"))
            report_progress(runs[-1])
    finally:
        if dedupe_attr:
            setattr(model, dedupe_attr, original_dedupe)

    header = f"{'run':<26}{'wall s':>9}{'reply tokens':>14}{'tokens/s':>10}{'computed tok':>14}"
    print()
    print(header)
    print("-" * len(header))
    for t in [naive, *runs]:
        computed = "" if t.computed_tokens is None else str(t.computed_tokens)
        print(f"{t.name:<26}{t.seconds:>9.1f}{t.tokens:>14}{t.tokens_per_s:>10.1f}{computed:>14}")
    print()

    results: list[dict[str, Any]] = []
    for t in runs:
        speedup = t.tokens_per_s / naive.tokens_per_s if naive.tokens_per_s else 0.0
        wall_ratio = naive.seconds / t.seconds if t.seconds else 0.0
        diffs = reply_differences(naive, t)
        label = "speedup (engine / naive)"
        if t.computed_tokens is not None:
            label = "speedup (engine + greedy dedupe / naive, delivered reply tokens)"
        verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        print(f"{label}: {speedup:.1f}x  [wall-time ratio {wall_ratio:.1f}x]")
        print(f"  target >= {TARGET_SPEEDUP:g}x on 2 CPU cores with the default model: {verdict}")
        print(
            f"  replies differing from naive: {sum(diffs)}/{total_replies} "
            f"(by round: {', '.join(map(str, diffs))}; a round-1 difference changes the "
            "later rounds' prompts)"
        )
        results.append(
            {
                "name": t.name,
                "seconds": round(t.seconds, 3),
                "reply_tokens": t.tokens,
                "computed_tokens": t.computed_tokens if t.computed_tokens is not None else t.tokens,
                "tokens_per_s": round(t.tokens_per_s, 2),
                "speedup_tokens_per_s": round(speedup, 2),
                "wall_time_ratio": round(wall_ratio, 2),
                "replies_differing_by_round": diffs,
                "target_met": speedup >= TARGET_SPEEDUP,
                **t.notes,
            }
        )
    if dedupe_attr is None:
        print("(this model has no greedy de-duplication switch; one engine run only)")
    if os.cpu_count() != 2 or args.model != "default" or args.max_new_tokens != 128:
        print(
            "note: the target is stated for 2 CPU cores, the default model and 128 new tokens "
            f"per reply; this run: {os.cpu_count()} cores, model {args.model!r}, "
            f"{args.max_new_tokens} new tokens"
        )
    busiest = max(busy_share(t) for t in [naive, *runs])
    if busiest > 0.05:
        print(
            f"WARNING: other processes used up to {busiest:.0%} of the CPU during a timed run; "
            "these timings are not reliable. Rerun on an idle machine."
        )
    rss = peak_rss_mb()
    print(f"peak RSS of this process: {rss:.0f} MiB; torch threads: {torch.get_num_threads()}")

    if args.json:
        payload = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([sys.executable, *sys.argv]),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "replies": total_replies,
            "machine": {
                "platform": platform.platform(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
            },
            "target_speedup": TARGET_SPEEDUP,
            "naive": {
                "seconds": round(naive.seconds, 3),
                "reply_tokens": naive.tokens,
                "tokens_per_s": round(naive.tokens_per_s, 2),
                **naive.notes,
            },
            "engine": results,
            "peak_rss_mib": round(rss, 1),
            "max_other_processes_cpu_share": round(busiest, 3),
            "reliable": busiest <= 0.05,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
