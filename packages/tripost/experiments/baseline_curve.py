"""Baseline SFT learning curve on TriPosT word sorting (issue 23's first gate).

Trains the embedded SmolLM2-135M-Instruct on the original's 433 word-sorting rationales
(``training/word_sorting/word_sorting_baseline_rationale_1-7.jsonl``, 2-7 words, the whole text
trained as the original's ``mask_before_att_start_text False``), one checkpoint per epoch, through
``chorus_shared.training`` (bf16 autocast on CPU). Then ``evaluate`` a checkpoint: greedy
accuracy on the raw file's validation rows, seen (<= 7 words) and unseen (8+ words).

    python packages/tripost/experiments/baseline_curve.py train runs/tripost/ws-sft 5 2e-4
    python packages/tripost/experiments/baseline_curve.py evaluate \
        runs/tripost/ws-sft/checkpoints/checkpoint-165 40 40

Resumable: ``train`` continues from the newest checkpoint in the folder.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# $CHORUS_DATA_DIR, else the ../shared/data beside the checkout (as chorus_shared.data looks).
DATA = Path(
    os.environ.get("CHORUS_DATA_DIR") or Path(__file__).resolve().parents[4] / "shared/data"
)


def _rows(relative: str) -> list[dict]:
    path = DATA / "tripost" / relative
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train(out: Path, epochs: float, lr: float) -> None:
    """Fine-tune with one checkpoint per epoch; returns None."""
    from chorus_shared.training import TrainRecipe
    from chorus_shared.training import train as run_training

    rows = _rows("training/word_sorting/word_sorting_baseline_rationale_1-7.jsonl")
    records = [
        {"id": f"ws-{i}", "segments": [{"text": r["text"], "weight": 1.0}], "add_eos": True}
        for i, r in enumerate(rows)
    ]
    recipe = TrainRecipe(
        model="default",
        max_length=768,
        num_train_epochs=epochs,
        learning_rate=lr,
        per_device_train_batch_size=8,
        warmup_ratio=0.03,
        bf16=True,
        extra_args={"use_cpu": True},
        report_to="none",
        save_steps=-(-len(records) // 8),  # one checkpoint per epoch
        save_total_limit=None,
    )
    start = time.time()
    run_training(recipe, records, out)
    print(f"trained in {time.time() - start:.0f} s", flush=True)


def _answer(text: str) -> list[str] | None:
    if "So the answer is" not in text:
        return None  # unparseable: counted, and wrong
    tail = text.split("So the answer is")[-1].strip(": \n")
    return tail.split("\n")[0].strip().rstrip(".").split()


def evaluate(checkpoint: str, n_seen: int, n_unseen: int) -> dict:
    """Greedy accuracy on the first n seen / unseen validation items; returns the counts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    raw = _rows("raw/word_sorting_scripted_rationales.jsonl")
    val = [r for r in raw if r["meta_data"]["new_split"] == "validation"]

    def words(r: dict) -> int:
        return len(r["question"].split("List:")[1].split())

    splits = {
        "seen": [r for r in val if words(r) <= 7][:n_seen],
        "unseen": [r for r in val if words(r) >= 8][:n_unseen],
    }
    tok = AutoTokenizer.from_pretrained(checkpoint)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16).eval()
    result: dict = {"checkpoint": checkpoint}
    for name, items in splits.items():
        right = unparseable = 0
        for k in range(0, len(items), 16):
            batch = items[k : k + 16]
            prompts = [
                r["question"].strip() + "\nAnswer: Let's think step by step.\n" for r in batch
            ]
            enc = tok(prompts, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = model.generate(
                    **enc, max_new_tokens=600, do_sample=False, pad_token_id=tok.pad_token_id
                )
            for r, ids in zip(batch, out[:, enc["input_ids"].shape[1] :], strict=True):
                got = _answer(tok.decode(ids, skip_special_tokens=True))
                unparseable += got is None
                right += got == r["correct_answer"]
        result[name] = {"n": len(items), "correct": right, "unparseable": unparseable}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    if verb == "train":
        train(Path(args[0]), float(args[1]), float(args[2]))
    else:
        evaluate(args[0], int(args[1]), int(args[2]))
