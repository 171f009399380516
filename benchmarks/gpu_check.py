"""The GPU check's sections, one per process (``benchmarks/gpu_check.sh`` runs them), and its table.

Every model is random-initialised from a config written out below (nothing is downloaded):
Mistral-7B-v0.1 and Llama-2-7B for generation and training, DeBERTa-v3-large for the ranker.
The tokenizer is a word-level one made here with the config's vocabulary size (``w<id>``
words, ChatML template), so a prompt of N words is exactly N tokens and every generated id
decodes. ``--dry-run`` shrinks every model to a few layers of width 64 so that the whole check
runs on a CPU in seconds; a section that cannot run says why (no GPU, vLLM or DeepSpeed not
installed) instead of failing.

    python benchmarks/gpu_check.py section hf_generate --out DIR [--dry-run]
    python benchmarks/gpu_check.py table DIR

A section writes ``DIR/<name>.json``: ``{"section", "status": ok|skipped|failed, "reason",
"seconds", "rows": [{"what", "value", "note"}]}``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("env", "matmul", "ranker", "hf_generate", "vllm", "fsdp", "zero3")

# Real shapes (the models' published config.json values that set the compute).
MISTRAL_7B: dict[str, Any] = {
    "model_type": "mistral", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "max_position_embeddings": 32768, "rope_theta": 10000.0,
    "sliding_window": 4096, "rms_norm_eps": 1e-5, "hidden_act": "silu",
    "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip
LLAMA2_7B: dict[str, Any] = {
    "model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "max_position_embeddings": 4096, "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
    "bos_token_id": 1, "eos_token_id": 2,
}  # fmt: skip
DEBERTA_V3_LARGE: dict[str, Any] = {
    "model_type": "deberta-v2", "vocab_size": 128100, "hidden_size": 1024,
    "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512, "type_vocab_size": 0, "layer_norm_eps": 1e-7,
    "relative_attention": True, "max_relative_positions": -1, "position_buckets": 256,
    "norm_rel_ebd": "layer_norm", "share_att_key": True, "pos_att_type": ["p2c", "c2p"],
    "position_biased_input": False, "pad_token_id": 0,
}  # fmt: skip
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "vocab_size": 1000}  # fmt: skip
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>", "[CLS]", "[SEP]"]
CHATML = (
    "{% for m in messages %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class Skip(Exception):
    """A section that cannot run here; the message says why."""


def shape(base: dict[str, Any], dry_run: bool, **override: Any) -> dict[str, Any]:
    """Returns the config dict, shrunk to TINY widths under ``dry_run``."""
    config = dict(base)
    if dry_run:
        config.update(TINY)
        if "num_key_value_heads" in config:
            config["num_key_value_heads"] = min(config["num_key_value_heads"], 2)
        if "position_buckets" in config:
            config["position_buckets"] = 32
    config.update(override)
    return config


def auto_config(values: dict[str, Any]) -> Any:
    """Returns the transformers config for a config dict (``model_type`` picks the class)."""
    from transformers import AutoConfig

    values = dict(values)
    return AutoConfig.for_model(values.pop("model_type"), **values)


def word_tokenizer(vocab_size: int) -> Any:
    """Returns a word-level tokenizer of exactly ``vocab_size`` ids, with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIALS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIALS), vocab_size)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", cls_token="[CLS]", sep_token="[SEP]",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )  # fmt: skip
    tokenizer.chat_template = CHATML
    return tokenizer


def words(rng: random.Random, n: int, vocab_size: int) -> str:
    """Returns ``n`` random vocabulary words (= ``n`` tokens)."""
    return " ".join(f"w{rng.randrange(len(SPECIALS), vocab_size)}" for _ in range(n))


def device_or_skip(dry_run: bool) -> str:
    """Returns ``cuda``; under ``dry_run`` without a GPU ``cpu``; else raises Skip."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if dry_run:
        return "cpu"
    raise Skip("no CUDA GPU (run with --dry-run on a CPU)")


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def row(what: str, value: Any, note: str = "") -> dict[str, Any]:
    return {"what": what, "value": value, "note": note}


# --------------------------------------------------------------------------- sections


def section_env(dry_run: bool, work: Path) -> list[dict]:
    import torch

    rows = [row("python", sys.version.split()[0]), row("torch", torch.__version__)]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        memory = f"{props.total_memory / 2**30:.0f} GiB"
        count = torch.cuda.device_count()
        rows.append(row("gpu", props.name, f"{memory}, sm_{props.major}{props.minor}, x{count}"))
    else:
        rows.append(row("gpu", "none", "CUDA not available"))
    for name in ("transformers", "accelerate", "peft", "deepspeed", "vllm", "flash_attn"):
        try:
            version = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        rows.append(row(name, version))
    return rows


def section_matmul(dry_run: bool, work: Path) -> list[dict]:
    import torch

    device = device_or_skip(dry_run)
    size = 256 if dry_run else 8192
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        reps = 3 if dry_run else 10
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        rate = 2 * size**3 * reps / (time.perf_counter() - start)
        note = f"{size}^3, random data, mean of {reps}"
        if dtype == torch.float32:
            note += f", TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
        value = f"{rate / 1e12:.1f} TFLOP/s" if rate > 1e11 else f"{rate / 1e9:.1f} GFLOP/s"
        rows.append(row(f"matmul {str(dtype).split('.')[-1]}", value, note))
    return rows


def _generation_workload(dry_run: bool) -> tuple[int, int, int]:
    """Returns (prompts, prompt tokens, new tokens): the debate's paper setting.

    16 questions x 3 agents in one round, a ~200-token prompt, 256 new tokens at T = 1.
    """
    return (4, 16, 8) if dry_run else (48, 200, 256)


def _conversations(n: int, length: int, vocab: int) -> list[list[dict]]:
    rng = random.Random(0)
    return [[{"role": "user", "content": words(rng, length, vocab)}] for _ in range(n)]


def section_hf_generate(dry_run: bool, work: Path) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    from chorus_shared.models import SamplingParams
    from chorus_shared.models.hf import HFChatModel

    device = device_or_skip(dry_run)
    values = shape(MISTRAL_7B, dry_run)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(auto_config(values), dtype=torch.bfloat16)
    tokenizer = word_tokenizer(values["vocab_size"])
    chat = HFChatModel(model, tokenizer, spec="hf:random-mistral-7b", batch_size=64)
    prompts, length, new = _generation_workload(dry_run)
    params = SamplingParams(max_new_tokens=new, temperature=1.0, seed=0)
    chat.chat(_conversations(2, length, values["vocab_size"]), SamplingParams(max_new_tokens=4))
    sync(device)
    start = time.perf_counter()
    replies = chat.chat(_conversations(prompts, length, values["vocab_size"]), params)
    sync(device)
    seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in replies)
    note = (f"Mistral-7B shapes, random bf16, {prompts} prompts x {length} tokens, "
            f"{new} new at T=1, one chat() call")  # fmt: skip
    return [
        row("hf generate", f"{tokens / seconds:.0f} tok/s", note),
        row("hf generate wall", f"{seconds:.1f} s", f"{tokens} tokens generated"),
    ]


def _save_model_folder(values: dict[str, Any], folder: Path, weights: bool) -> Path:
    """Writes config (+ random bf16 weights when ``weights``) and the tokenizer to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    config = auto_config(values)
    if weights:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
    else:
        config.save_pretrained(folder)
    word_tokenizer(values["vocab_size"]).save_pretrained(folder)
    return folder


def section_vllm(dry_run: bool, work: Path) -> list[dict]:
    if importlib.util.find_spec("vllm") is None:
        raise Skip("vllm is not installed in this Python (make setup-vllm; the GPU image has none)")
    device = device_or_skip(dry_run)
    if device != "cuda":
        raise Skip("dry run without a GPU: vLLM on CPU compiles for ~90 s, outside this check")
    from chorus_shared.models import SamplingParams
    from chorus_shared.models.vllm_backend import VLLMChatModel

    values = shape(MISTRAL_7B, dry_run)
    folder = _save_model_folder(values, work / "mistral-7b-config", weights=False)
    start = time.perf_counter()
    # load_format=dummy: vLLM initialises random weights itself; no checkpoint is read.
    chat = VLLMChatModel(str(folder), dtype="bfloat16", load_format="dummy",
                         gpu_memory_utilization=0.85, max_model_len=4096)  # fmt: skip
    startup = time.perf_counter() - start
    prompts, length, new = _generation_workload(dry_run)
    params = SamplingParams(max_new_tokens=new, temperature=1.0, seed=0)
    chat.chat(_conversations(2, length, values["vocab_size"]), SamplingParams(max_new_tokens=4))
    start = time.perf_counter()
    replies = chat.chat(_conversations(prompts, length, values["vocab_size"]), params)
    seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in replies)
    note = (f"Mistral-7B shapes, dummy weights, {prompts} prompts x {length} tokens, {new} new "
            "at T=1, engine warm")  # fmt: skip
    return [
        row("vllm generate", f"{tokens / seconds:.0f} tok/s", note),
        row("vllm engine start", f"{startup:.0f} s", "load_format=dummy, compile included"),
    ]


def section_ranker(dry_run: bool, work: Path) -> list[dict]:
    import torch
    from transformers import AutoModel

    from chorus_blender.ranker import (
        CAND1_TOKEN,
        CAND2_TOKEN,
        SOURCE_TOKEN,
        PairRanker,
        RankerConfig,
        _marker_ids,
    )
    from chorus_blender.ranking import compare_matrix

    device = device_or_skip(dry_run)
    values = shape(DEBERTA_V3_LARGE, dry_run)
    torch.manual_seed(0)
    with torch.device(device):
        encoder = AutoModel.from_config(auto_config(values))
    tokenizer = word_tokenizer(values["vocab_size"])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [SOURCE_TOKEN, CAND1_TOKEN, CAND2_TOKEN]}
    )
    # as PairRanker.from_backbone does; random rows are as good as mean-resized ones here
    encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    ranker = PairRanker(encoder, tokenizer, RankerConfig(), _marker_ids(tokenizer)).to(device)
    ranker.eval()
    n_inputs, n_cands = (2, 3) if dry_run else (16, 8)
    rng = random.Random(0)
    vocab = values["vocab_size"]
    # A ~100-word instruction and 80-300-word candidates (MixInstruct-like); 10s under dry run.
    (s_lo, s_hi), (c_lo, c_hi) = ((5, 15), (5, 20)) if dry_run else ((60, 140), (80, 300))
    sources = [words(rng, rng.randint(s_lo, s_hi), vocab) for _ in range(n_inputs)]
    cands = [[words(rng, rng.randint(c_lo, c_hi), vocab) for _ in range(n_cands)]
             for _ in range(n_inputs)]  # fmt: skip
    # warm-up of both paths (kernel selection, allocator growth)
    ranker.pair_logits(sources[:1], cands[0][:1], cands[0][1:2], precision="fp32")
    compare_matrix(ranker, sources[:1], [cands[0][:2]], batch_size=32, precision="bf16")

    def loop(precision: str) -> float:
        sync(device)
        start = time.perf_counter()
        for source, cs in zip(sources, cands, strict=True):
            for i in range(len(cs)):
                for j in range(len(cs)):
                    if i != j:
                        ranker.pair_logits([source], [cs[i]], [cs[j]], precision=precision)
        sync(device)
        return time.perf_counter() - start

    def batched(precision: str) -> float:
        sync(device)
        start = time.perf_counter()
        compare_matrix(ranker, sources, cands, batch_size=32, precision=precision)
        sync(device)
        return time.perf_counter() - start

    pairs = n_inputs * n_cands * (n_cands - 1)
    times = {"loop fp32": loop("fp32"), "batched fp32": batched("fp32"),
             "batched bf16": batched("bf16")}  # fmt: skip
    note = f"DeBERTa-v3-large shapes, random, {n_inputs} inputs x {n_cands} candidates"
    rows = [row(f"ranker {k}", f"{pairs / v:.0f} pairs/s", note) for k, v in times.items()]
    same = times["loop fp32"] / times["batched fp32"]
    ratio = times["loop fp32"] / times["batched bf16"]
    rows.append(row("ranker batched bf16 / loop fp32", f"{ratio:.1f}x", f"fp32 both: {same:.1f}x"))
    return rows


def _train_launch(dry_run: bool, work: Path, kind: str, layers: int) -> list[dict]:
    """One launch of ``chorus_shared.training`` on 1 GPU: 3 steps, the first a warm-up."""
    import torch
    import yaml

    values = shape(LLAMA2_7B, dry_run)
    if not dry_run:
        values["num_hidden_layers"] = layers
    what = f"Llama-2-7B shapes, {values['num_hidden_layers']} of 32 layers"
    if kind == "zero3" and importlib.util.find_spec("deepspeed") is None:
        raise Skip("deepspeed is not installed in this Python (the GPU image has none; carry "
                   "its wheel and deps, see benchmarks/README.md)")  # fmt: skip
    folder = _save_model_folder(values, work / f"llama-{kind}", weights=True)
    rng = random.Random(0)
    seq = 64 if dry_run else 1024
    with open(work / f"{kind}.jsonl", "w") as f:
        for i in range(16):
            f.write(json.dumps({"id": str(i), "segments": [
                {"text": words(rng, seq // 4, values["vocab_size"]), "weight": 0},
                {"text": words(rng, 3 * seq // 4 - 2, values["vocab_size"]), "weight": 1},
            ]}) + "\n")  # fmt: skip
    recipe = {
        "model": f"hf:{folder}", "max_length": seq, "max_steps": 3,
        "per_device_train_batch_size": 4, "learning_rate": 1e-5, "bf16": True,
        "gradient_checkpointing": True, "report_to": "none", "save_steps": 1_000_000,
        "logging_steps": 1, "warmup_ratio": 0.0,
    }  # fmt: skip
    if kind == "zero3":
        recipe["deepspeed"] = "zero3"
    (work / f"{kind}.yaml").write_text(yaml.safe_dump(recipe))
    from chorus_shared.training import load_train_recipe

    load_train_recipe(work / f"{kind}.yaml")  # a bad key fails here, before any launch
    args = ["-m", "chorus_shared.training", "--recipe", str(work / f"{kind}.yaml"),
            "--data", str(work / f"{kind}.jsonl"), "--out", str(work / f"run-{kind}")]  # fmt: skip
    if kind == "zero3":
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc_per_node", "1", *args]  # fmt: skip
    else:
        from chorus_shared.training import config_path

        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(config_path("fsdp.yaml")), "--num_processes", "1", *args]  # fmt: skip
    shown = " ".join(Path(a).name if "/" in a else a for a in launch[1:])
    if not torch.cuda.is_available():
        raise Skip(f"dry run without a GPU: prepared {what} and would launch `{shown}`")
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    start = time.perf_counter()
    done = subprocess.run(launch, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (work / f"{kind}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"`{shown}` exited {done.returncode}: {' | '.join(tail)}")
    metrics = json.loads((work / f"run-{kind}" / "metrics.json").read_text())
    steps = metrics.get("global_step")
    note = (f"{what}, batch 4 x {seq} tokens, bf16, grad checkpointing; {steps} steps "
            f"(the first a warm-up) in {metrics.get('train_runtime')} s; launch {seconds:.0f} s "
            "all in")  # fmt: skip
    return [
        row(f"{kind} train", f"{metrics.get('tokens_per_s')} tok/s", note),
        row(f"{kind} loss", f"{metrics.get('first_loss')} -> {metrics.get('last_loss')}",
            "random weights: only that it is finite"),
    ]  # fmt: skip


def section_zero3(dry_run: bool, work: Path, layers: int = 4) -> list[dict]:
    return _train_launch(dry_run, work, "zero3", layers)


def section_fsdp(dry_run: bool, work: Path, layers: int = 4) -> list[dict]:
    return _train_launch(dry_run, work, "fsdp", layers)


def _pythonpath() -> str:
    """This checkout's sources first, so the GPU machine's Python imports them uninstalled."""
    parts = [str(REPO / "shared" / "src"), *(str(p) for p in sorted(REPO.glob("packages/*/src")))]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def section_selftest_hang(dry_run: bool, work: Path) -> list[dict]:
    """Hangs (for the test that a section's timeout keeps the table; not run by default)."""
    time.sleep(3600)
    return []


def section_selftest_ok(dry_run: bool, work: Path) -> list[dict]:
    """Returns one row without importing torch (for the same test)."""
    return [row("selftest", "ok")]


RUNNERS: dict[str, Callable[..., list[dict]]] = {
    "env": section_env, "matmul": section_matmul, "ranker": section_ranker,
    "hf_generate": section_hf_generate, "vllm": section_vllm, "fsdp": section_fsdp,
    "zero3": section_zero3, "selftest_hang": section_selftest_hang,
    "selftest_ok": section_selftest_ok,
}  # fmt: skip


def run_section(name: str, out: Path, dry_run: bool, layers: int) -> int:
    """Runs one section, writes ``out/<name>.json``; returns 0 (ok/skipped) or 1 (failed)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result: dict[str, Any] = {"section": name, "rows": []}
    with tempfile.TemporaryDirectory(prefix=f"gpu_check_{name}_") as work:
        try:
            kwargs = {"layers": layers} if name in ("zero3", "fsdp") else {}
            result["rows"] = RUNNERS[name](dry_run, Path(work), **kwargs)
            result["status"] = "ok"
        except Skip as skip:
            result.update(status="skipped", reason=str(skip))
        except Exception as err:  # a failed section is a row of the table, not a lost table
            traceback.print_exc()
            result.update(status="failed", reason=f"{type(err).__name__}: {err}"[:500])
    result["seconds"] = round(time.perf_counter() - start, 1)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return 1 if result["status"] == "failed" else 0


def table(out: Path, sections: list[str]) -> str:
    """Returns the markdown table of every section's result (a missing one says so)."""
    lines = ["| section | status | what | value | note |", "|---|---|---|---|---|"]
    for name in sections:
        path = out / f"{name}.json"
        if not path.is_file():
            lines.append(f"| {name} | no result | | | see {name}.log (killed or crashed) |")
            continue
        result = json.loads(path.read_text())
        status = f"{result['status']} ({result.get('seconds', '?')} s)"
        if result["status"] != "ok":
            reason = str(result.get("reason", "")).replace("|", "/")
            lines.append(f"| {name} | {status} | | | {reason} |")
        for r in result.get("rows", []):
            note = str(r.get("note", "")).replace("|", "/")
            lines.append(f"| {name} | {status} | {r['what']} | {r['value']} | {note} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("section", help="run one section")
    one.add_argument("name", choices=sorted(RUNNERS))
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--dry-run", action="store_true", help="tiny shapes; CPU allowed")
    one.add_argument("--train-layers", type=int, default=4,
                     help="zero3/fsdp: layers of the Llama-2-7B shape (32 = all)")  # fmt: skip
    tab = sub.add_parser("table", help="print (and write table.md) from a results folder")
    tab.add_argument("out", type=Path)
    tab.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args()
    if args.command == "section":
        return run_section(args.name, args.out, args.dry_run, args.train_layers)
    text = table(args.out, [s for s in args.sections.split(",") if s])
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
