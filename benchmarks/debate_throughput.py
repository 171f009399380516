"""Debate throughput: a one-prompt-at-a-time loop against the hf and vLLM engines, one run.

Every backend answers the same GSM8K questions with the engine's own prompts, in two settings:

  paper   the paper's setting: sampling at temperature 1 (top_p 1), 256 new tokens per reply,
          3 agents x 2 rounds; no de-duplication (sampled replies differ anyway);
  greedy  greedy decoding, 64 new tokens, de-duplication off too (no credit for shared replies).

Backends, each in its own process so its peak RSS is its own:

  naive       the seed port's way: every agent of every round of every question in sequence,
              ``generate`` on a batch of one (float32, growing cache, as transformers loads a
              checkpoint by default), the whole history re-rendered and re-encoded each turn,
              the reply recovered by splitting the decoded text on the assistant marker;
  hf          ``DebateEngine.run`` over all questions as one window on ``HFChatModel`` (dtype
              "auto" = bf16 on AMX / AVX-512-BF16 CPUs, preallocated "static" KV cache): one
              batched ``chat`` call per round;
  hf-dynamic  the same with the growing ("dynamic") KV cache, to show what the static one buys;
  hf-malloc   ``hf`` after ``tune_glibc_malloc()`` (glibc keeps freed blocks in its heap);
  hf-prefix   ``hf`` with prefix reuse between calls (``prefix_cache_mb``): round 2 starts from
              the KV each agent's round-1 prompt + reply left, and prefills only the rest;
  vllm        ``DebateEngine.run`` on ``VLLMChatModel`` (prefix caching on), run with the
              interpreter of ``.venv-vllm`` (``make setup-vllm``); skipped when that is missing.

Throughput is generated reply tokens (end-of-sequence token included) per second of wall time of
the debate itself; model loading and one short untimed warm-up are outside the clock. Peak RSS is
the whole process tree of the backend's process (vLLM's engine core is a child process), sampled
every 0.2 s, or the kernel's maximum for the process when larger.

Run: ``.venv/bin/python benchmarks/debate_throughput.py [--questions 4 --backends naive,hf,vllm]``.
This is a benchmark, not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peak_rss import tree_rss_bytes  # a sibling script, not a package

ROOT = Path(__file__).resolve().parent.parent
# The targets (2 CPU cores, the embedded model, the paper's setting).
TARGET_BEST = 10.0
TARGET_HF = 4.0
SETTINGS: dict[str, dict[str, Any]] = {
    "paper": {"temperature": 1.0, "max_new_tokens": 256},
    "greedy": {"temperature": 0.0, "max_new_tokens": 64},
}
BACKENDS = ("naive", "hf", "hf-dynamic", "hf-malloc", "hf-prefix", "vllm")
# hf-prefix: room for every sequence of a 24-conversation debate (SmolLM2-135M in bf16 keeps
# ~23 KB of KV per token; 24 x ~1.5k tokens is ~0.8 GB), so nothing is evicted mid-debate.
PREFIX_CACHE_MB = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=4, help="GSM8K test questions (default 4)")
    p.add_argument(
        "--naive-questions",
        type=int,
        default=None,
        help="questions the naive loop answers (default: all); its time grows linearly with "
        "them, so a subset gives its tokens/s at a fraction of the time",
    )
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--settings", default="paper,greedy", help="comma list of: paper, greedy")
    p.add_argument(
        "--backends", default="naive,hf,vllm", help=f"comma list of: {', '.join(BACKENDS)}"
    )
    p.add_argument("--paper-tokens", type=int, default=256, help="new tokens, paper setting")
    p.add_argument("--greedy-tokens", type=int, default=64, help="new tokens, greedy setting")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of every backend")
    p.add_argument(
        "--vllm-python",
        type=Path,
        default=ROOT / ".venv-vllm" / "bin" / "python",
        help="interpreter with vLLM installed (default: .venv-vllm from make setup-vllm)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.settings = [x for x in args.settings.split(",") if x]
    args.backends = [x for x in args.backends.split(",") if x]
    if args.naive_questions is not None and not 1 <= args.naive_questions <= args.questions:
        p.error(f"--naive-questions must be between 1 and --questions ({args.questions})")
    for name in args.settings:
        if name not in SETTINGS:
            p.error(f"unknown setting {name!r}; use paper and/or greedy")
    for name in args.backends:
        if name not in BACKENDS:
            p.error(f"unknown backend {name!r}; use {', '.join(BACKENDS)}")
    return args


def setting_params(name: str, args: argparse.Namespace) -> Any:
    """Return the SamplingParams of a setting."""
    from chorus_shared.models import SamplingParams

    tokens = args.paper_tokens if name == "paper" else args.greedy_tokens
    temperature = SETTINGS[name]["temperature"]
    return SamplingParams(
        max_new_tokens=tokens,
        temperature=temperature,
        seed=None if temperature == 0 else args.seed,
    )


# -- the naive loop (worker side) -----------------------------------------------------------


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

    def __init__(self, chat_model: Any, params: Any) -> None:
        from transformers import GenerationConfig

        self.model = chat_model.model
        self.tokenizer = chat_model.tokenizer
        self.marker = assistant_marker(self.tokenizer)
        self.eos_texts = [self.tokenizer.convert_ids_to_tokens(i) for i in chat_model.eos_token_ids]
        self.config = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=not params.greedy,
            temperature=None if params.greedy else params.temperature,
            top_p=None if params.greedy else params.top_p,
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


def run_naive(chat_model: Any, task: Any, items: list[dict], args: Any, params: Any) -> dict:
    """Return the naive loop's replies [item][round][agent], reply tokens and wall time."""
    import torch

    from chorus_debate.debate import DEBATE_PROMPT, OTHER_AGENT

    agent = NaiveAgent(chat_model, params)
    if params.seed is not None:
        torch.manual_seed(params.seed)
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
    return {"replies": replies, "tokens": tokens, "seconds": time.perf_counter() - start}


# -- the engines (worker side) ---------------------------------------------------------------


def run_engine(chat_model: Any, task: Any, items: list[dict], args: Any, params: Any) -> dict:
    """Return the engine's replies, reply tokens, per-call figures and wall time."""
    from chorus_debate.debate import DebateEngine, DebateSetup
    from chorus_debate.methods import plan_method

    setup = DebateSetup(plan=plan_method("debate", args.agents, args.rounds), params=params)
    engine = DebateEngine(task, [chat_model] * args.agents, setup)
    calls: list[dict[str, Any]] = []
    inner_chat = chat_model.chat

    def timed_chat(conversations, p):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        out = inner_chat(conversations, p)
        calls.append(
            {
                "conversations": len(out),
                "prompt_tokens": sum(c.prompt_tokens for c in out),
                "reply_tokens": sum(c.completion_tokens for c in out),
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
        return out

    chat_model.chat = timed_chat
    try:
        start = time.perf_counter()
        records = [r.to_json() for r in engine.run(items)]  # as stored in records.jsonl
        seconds = time.perf_counter() - start
    finally:
        del chat_model.chat  # back to the class's method
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
    tokens = sum(rec["usage"]["completion_tokens"] for rec in records)
    errors = sum(rec.get("errors", 0) for rec in records)
    return {
        "replies": replies,
        "tokens": tokens,
        "seconds": seconds,
        "calls": calls,
        "errors": errors,
    }


def load_backend(name: str) -> Any:
    """Return the chat model of a backend (inside the worker process)."""
    from chorus_shared.models import load_chat_model

    if name == "naive":
        # The seed port loaded checkpoints with transformers' default dtype: float32.
        return load_chat_model("default", dtype="float32", kv_cache="dynamic", batch_size=1)
    if name == "hf-malloc":
        from chorus_shared.models.hf import tune_glibc_malloc

        if not tune_glibc_malloc():
            raise SystemExit("hf-malloc needs glibc's mallopt")
    if name in ("hf", "hf-malloc"):
        return load_chat_model("default", kv_cache="static", dedupe_greedy=False)
    if name == "hf-prefix":
        return load_chat_model(
            "default", kv_cache="static", dedupe_greedy=False, prefix_cache_mb=PREFIX_CACHE_MB
        )
    if name == "hf-dynamic":
        return load_chat_model("default", kv_cache="dynamic", dedupe_greedy=False)
    # The longest debate prompt here is ~1.3k tokens + 256 new: 4k of context is plenty.
    return load_chat_model("vllm:default", max_model_len=4096)


def worker(args: argparse.Namespace) -> int:
    """Run one backend over every setting; write its figures to ``--worker-out``."""
    import torch

    from chorus_debate.tasks import get_task
    from chorus_shared.models import SamplingParams

    load_start = time.perf_counter()
    model = load_backend(args.worker)
    load_s = time.perf_counter() - load_start
    task = get_task("gsm")
    items = task.load(args.questions, 0, None)
    if args.worker == "naive" and args.naive_questions:
        items = items[: args.naive_questions]
    # Untimed warm-up of both shapes (one prompt alone, all first prompts batched): the first
    # generates of a process pay one-off costs (kernel selection, allocator growth, compiles).
    first = [[{"role": "user", "content": task.first_prompt(it)}] for it in items]
    warm = SamplingParams(max_new_tokens=8)
    if args.worker == "naive":
        NaiveAgent(model, warm).reply(first[0])
    else:
        model.chat(first[:1], warm)
        model.chat(first, warm)
        if getattr(model, "prefix_cache", None) is not None:
            model.prefix_cache.clear()  # no credit from the warm-up's prompts
            model.prefix_cache.hit_tokens = model.prefix_cache.miss_tokens = 0
    result: dict[str, Any] = {
        "backend": args.worker,
        "load_s": round(load_s, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": str(getattr(getattr(model, "model", None), "dtype", "")) or None,
        "settings": {},
    }
    if args.worker == "vllm":
        import vllm

        result["vllm"] = vllm.__version__
    for name in args.settings:
        params = setting_params(name, args)
        run = run_naive if args.worker == "naive" else run_engine
        before = _cpu_seconds()
        figures = run(model, task, items, args, params)
        after = _cpu_seconds()
        figures["questions"] = len(items)
        store = getattr(model, "prefix_cache", None)
        if store is not None:  # prompt tokens served from stored KV vs prefilled, this setting
            figures["prefix_hit_tokens"] = store.hit_tokens
            figures["prefix_prefilled_tokens"] = store.miss_tokens
            store.hit_tokens = store.miss_tokens = 0
            store.clear()  # the next setting starts cold, like a fresh run
        if before and after:
            own = after[1] - before[1]
            figures["other_cpu_s"] = round(max(0.0, after[0] - before[0] - own), 1)
        result["settings"][name] = figures
        print(
            f"  [{args.worker}] {name}: {figures['tokens']} tokens in {figures['seconds']:.1f} s",
            flush=True,
        )
    args.worker_out.write_text(json.dumps(result))
    return 0


def _cpu_seconds() -> tuple[float, float] | None:
    """Return (machine busy CPU-s since boot, this process tree's CPU-s); None without /proc."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, _steal = ticks
    busy = (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    # vLLM's engine core is a live child: its CPU time is not in RUSAGE_CHILDREN until it exits.
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            mine += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return busy, mine


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, stack = [], list(children.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


# -- the driver ------------------------------------------------------------------------------


@dataclass
class BackendRun:
    """One backend's process: its figures per setting and its peak RSS."""

    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    peak_rss_mib: float = 0.0
    wall_s: float = 0.0
    skipped: str | None = None


def run_backend(name: str, args: argparse.Namespace) -> BackendRun:
    """Run one backend in a child process; return its figures and the tree's peak RSS."""
    python = sys.executable
    env = dict(os.environ)
    if name == "vllm":
        if not args.vllm_python.exists():
            return BackendRun(name, skipped=f"no {args.vllm_python}: run `make setup-vllm`")
        python = str(args.vllm_python)
        # That environment's editable installs may point at another checkout: import this
        # checkout's code first, so every backend runs the same version of the engine.
        ours = [str(ROOT / "shared" / "src"), str(ROOT / "packages" / "debate" / "src")]
        env["PYTHONPATH"] = os.pathsep.join([*ours, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # A modest KV-cache pool on CPU (GiB); the debate's prompts need far less.
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, __file__, "--worker", name, "--worker-out", str(out)]
        cmd += ["--questions", str(args.questions), "--agents", str(args.agents)]
        cmd += ["--rounds", str(args.rounds), "--settings", ",".join(args.settings)]
        cmd += ["--paper-tokens", str(args.paper_tokens), "--greedy-tokens"]
        cmd += [str(args.greedy_tokens), "--seed", str(args.seed)]
        if args.naive_questions:
            cmd += ["--naive-questions", str(args.naive_questions)]
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env)
        peak = 0
        while True:
            peak = max(peak, tree_rss_bytes(child.pid))
            try:
                child.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        wall = time.perf_counter() - start
        if child.returncode != 0 or not out.exists():
            return BackendRun(name, skipped=f"worker failed with status {child.returncode}")
        result = json.loads(out.read_text())
    # The kernel's figure for the largest waited-for child catches a spike between samples;
    # it is cumulative over this driver's children, so it is only used when it is ours alone.
    return BackendRun(name, figures=result, peak_rss_mib=peak / 2**20, wall_s=wall)


def reply_differences(a: dict, b: dict) -> int:
    """Return how many replies of two runs differ (over the questions both answered)."""
    return sum(
        x != y
        for ia, ib in zip(a["replies"], b["replies"], strict=False)
        for ra, rb in zip(ia, ib, strict=True)
        for x, y in zip(ra, rb, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    """Run every backend, print one table per setting and the ratios; return the exit status."""
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    replies = args.questions * args.agents * args.rounds
    print(
        f"debate throughput: {args.questions} GSM8K questions x {args.agents} agents x "
        f"{args.rounds} rounds = {replies} replies per setting; settings "
        f"{', '.join(args.settings)}; backends {', '.join(args.backends)}; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    runs = []
    for name in args.backends:
        print(f"- {name} ...", flush=True)
        run = run_backend(name, args)
        if run.skipped:
            print(f"  {name} skipped: {run.skipped}", flush=True)
        else:
            print(f"  {name}: process done in {run.wall_s:.0f} s", flush=True)
        runs.append(run)
        if args.json:  # keep the raw figures even if a later backend or the report fails
            args.json.parent.mkdir(parents=True, exist_ok=True)
            partial = {r.name: {"figures": r.figures, "peak_rss_mib": r.peak_rss_mib} for r in runs}
            args.json.with_suffix(".partial.json").write_text(json.dumps(partial))
    done = [r for r in runs if not r.skipped]
    naive = next((r for r in done if r.name == "naive"), None)

    payload: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "load_avg_at_end": os.getloadavg(),
        },
        "settings": {},
        "peak_rss_mib": {r.name: round(r.peak_rss_mib) for r in done},
        "skipped": {r.name: r.skipped for r in runs if r.skipped},
        "backends": {r.name: r.figures for r in done},
    }
    for setting in args.settings:
        p = setting_params(setting, args)
        print(
            f"\n{setting} setting: temperature {p.temperature:g}, {p.max_new_tokens} new tokens, "
            "no de-duplication"
        )
        header = f"{'backend':<12}{'questions':>10}{'wall s':>9}{'tokens':>9}{'tokens/s':>10}"
        header += f"{'vs naive':>10}"
        header += f"{'peak RSS MiB':>14}{'other CPU %':>13}"
        print(header)
        print("-" * len(header))
        rows = {}
        base = naive.figures["settings"][setting] if naive else None
        base_rate = base["tokens"] / base["seconds"] if base else 0.0
        for r in done:
            f = r.figures["settings"][setting]
            rate = f["tokens"] / f["seconds"] if f["seconds"] else 0.0
            ratio = rate / base_rate if base_rate else None
            other = f.get("other_cpu_s", 0.0) / (f["seconds"] * (os.cpu_count() or 1))
            rows[r.name] = {
                "seconds": round(f["seconds"], 2),
                "tokens": f["tokens"],
                "tokens_per_s": round(rate, 2),
                "ratio_vs_naive": None if ratio is None else round(ratio, 2),
                "peak_rss_mib": round(r.peak_rss_mib),
                "other_processes_cpu_share": round(other, 3),
                "questions": f.get("questions", args.questions),
                "errors": f.get("errors", 0),
                "calls": f.get("calls", []),
            }
            shown = "-" if ratio is None else f"{ratio:.2f}x"
            print(
                f"{r.name:<12}{f.get('questions', args.questions):>10}{f['seconds']:>9.1f}"
                f"{f['tokens']:>9}{rate:>10.1f}{shown:>10}"
                f"{r.peak_rss_mib:>14.0f}{other:>12.0%}"
            )
        payload["settings"][setting] = rows
        if setting == "greedy" and "hf" in rows and naive:
            diff = reply_differences(
                naive.figures["settings"][setting],
                next(r for r in done if r.name == "hf").figures["settings"][setting],
            )
            print(f"greedy replies differing, naive (fp32) vs hf (bf16): {diff}/{replies}")
            rows["hf"]["replies_differing_from_naive"] = diff
        if setting == "greedy" and "hf" in rows and "hf-prefix" in rows:
            by_name = {r.name: r.figures["settings"][setting] for r in done}
            diff = reply_differences(by_name["hf"], by_name["hf-prefix"])
            print(f"greedy replies differing, hf vs hf-prefix (both bf16): {diff}/{replies}")
            rows["hf-prefix"]["replies_differing_from_hf"] = diff
        for name, row in rows.items():
            f = next(r for r in done if r.name == name).figures["settings"][setting]
            if "prefix_hit_tokens" in f:
                row["prefix_hit_tokens"] = f["prefix_hit_tokens"]
                row["prefix_prefilled_tokens"] = f["prefix_prefilled_tokens"]
                print(
                    f"{name}: {f['prefix_hit_tokens']} prompt tokens from stored KV, "
                    f"{f['prefix_prefilled_tokens']} prefilled"
                )
        if naive and naive.figures["settings"][setting].get("questions", args.questions) < (
            args.questions
        ):
            print(
                "naive answered the first "
                f"{naive.figures['settings'][setting]['questions']} questions only; its figure "
                "is tokens/s, and every ratio is of tokens/s"
            )
        engines = {k: v for k, v in rows.items() if k != "naive" and v["ratio_vs_naive"]}
        if setting == "paper" and engines:
            best = max(engines, key=lambda k: engines[k]["ratio_vs_naive"])
            b = engines[best]["ratio_vs_naive"]
            print(
                f"target best backend >= {TARGET_BEST:g}x naive: {best} {b:.2f}x -> "
                f"{'met' if b >= TARGET_BEST else 'NOT met'}"
            )
            if "hf" in engines:
                h = engines["hf"]["ratio_vs_naive"]
                print(
                    f"target hf alone >= {TARGET_HF:g}x naive: {h:.2f}x -> "
                    f"{'met' if h >= TARGET_HF else 'NOT met'}"
                )
        busiest = max((v["other_processes_cpu_share"] for v in rows.values()), default=0.0)
        if busiest > 0.05:
            print(
                f"WARNING: other processes used up to {busiest:.0%} of the CPU during a timed "
                "run: timings are not reliable."
            )
    for r in done:
        calls = {s: r.figures["settings"][s].get("calls") for s in args.settings}
        for s, cs in calls.items():
            for k, c in enumerate(cs or [], 1):
                print(
                    f"  {r.name} {s} call {k}: {c['conversations']} conversations, "
                    f"{c['prompt_tokens']} prompt tokens, {c['reply_tokens']} reply tokens, "
                    f"{c['seconds']:.1f} s"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
