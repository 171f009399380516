"""Training a PairRanker on MixInstruct-format records or preference pairs.

Supervision, as in the paper: every candidate carries metric scores against the reference
(``candidates[i].scores[metric]``), a few pairs are sampled per instruction with a random
left/right swap, and the loss is ``-log sigmoid(sign(gold_A - gold_B) * (s_A - s_B))``.
Preference records (``{"id", "instruction", "input"?, "chosen", "rejected"}``) give the sign
directly. Pairs whose gold scores tie carry no signal and are skipped (counted).

The loop is the Hugging Face ``Trainer`` with the pairwise loss in ``compute_loss``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from chorus_blender.ranker import PairRanker


@dataclass
class Pair:
    """One training comparison: ``label`` = +1 when A is better, -1 when B is."""

    source: str
    a: str
    b: str
    label: float


@dataclass
class PairStats:
    """What sampling kept and why it dropped the rest (reported, never silent)."""

    records: int = 0
    pairs: int = 0
    ties_skipped: int = 0
    records_without_pairs: int = 0
    bad_records: list[str] = field(default_factory=list)


def record_source(record: Mapping[str, Any]) -> str:
    """Return the ranker's source text of a record: instruction, then input when present."""
    instruction = str(record.get("instruction", "")).strip()
    extra = str(record.get("input", "") or "").strip()
    return f"{instruction}\n{extra}" if extra else instruction


def sample_pairs(
    records: Iterable[dict[str, Any]],
    *,
    metric: str = "bertscore",
    pairs_per_record: int = 4,
    seed: int = 0,
) -> tuple[list[Pair], PairStats]:
    """Return training pairs (random order swaps) and counts of what was kept and skipped."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    stats = PairStats()
    for record in records:
        stats.records += 1
        rid = str(record.get("id", stats.records))
        source = record_source(record)
        if "chosen" in record and "rejected" in record:
            a, b, label = str(record["chosen"]), str(record["rejected"]), 1.0
            if rng.random() < 0.5:
                a, b, label = b, a, -1.0
            pairs.append(Pair(source, a, b, label))
            continue
        cands = record.get("candidates")
        if not source or not isinstance(cands, list) or len(cands) < 2:
            stats.bad_records.append(rid)
            continue
        try:
            scored = [(str(c["text"]), float(c["scores"][metric])) for c in cands]
        except (KeyError, TypeError, ValueError):
            stats.bad_records.append(rid)
            continue
        all_pairs = [(i, j) for i in range(len(scored)) for j in range(i + 1, len(scored))]
        rng.shuffle(all_pairs)
        kept = 0
        for i, j in all_pairs:
            if kept == pairs_per_record:
                break
            (ta, ga), (tb, gb) = scored[i], scored[j]
            if ga == gb:
                stats.ties_skipped += 1
                continue
            if rng.random() < 0.5:
                (ta, ga), (tb, gb) = (tb, gb), (ta, ga)
            pairs.append(Pair(source, ta, tb, 1.0 if ga > gb else -1.0))
            kept += 1
        if kept == 0:
            stats.records_without_pairs += 1
    stats.pairs = len(pairs)
    return pairs, stats


def pairwise_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the mean of ``-log sigmoid(label * logit)`` (the paper's default ranking loss)."""
    return F.softplus(-labels * logits).mean()


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, ranker: PairRanker, pairs: Sequence[Pair]) -> None:
        self.items = [(ranker.encode_triple(p.source, p.a, p.b), float(p.label)) for p in pairs]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ids, label = self.items[index]
        return {"ids": ids, "label": label}


def _trainer_class() -> type:
    from transformers import Trainer

    class PairwiseTrainer(Trainer):
        """HF Trainer whose loss is the pairwise ranking loss on the ranker's logits."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = pairwise_loss(outputs["logits"], labels.to(outputs["logits"].dtype))
            return (loss, outputs) if return_outputs else loss

    return PairwiseTrainer


@dataclass
class RankerTrainArgs:
    """The hyper-parameters the ranker's trainer reads (recipes map onto these)."""

    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 500
    report_to: str = "none"


def train_ranker(
    ranker: PairRanker, pairs: Sequence[Pair], out_dir: str | Path, args: RankerTrainArgs
) -> dict[str, Any]:
    """Train ``ranker`` in place on ``pairs``; save it to ``out_dir/model``; return train metrics.

    Checkpoints go to ``out_dir/checkpoints`` and a re-run resumes from the last one.
    """
    from transformers import TrainingArguments
    from transformers.trainer_utils import get_last_checkpoint

    if not pairs:
        raise ValueError("no training pairs: every record was a tie or malformed (see counts)")
    out_dir = Path(out_dir)

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tensors = ranker.collate([b["ids"] for b in batch])
        tensors["labels"] = torch.tensor([b["label"] for b in batch], dtype=torch.float)
        return tensors

    checkpoints = out_dir / "checkpoints"
    training_args = TrainingArguments(
        output_dir=str(checkpoints),
        learning_rate=args.learning_rate,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float < 1 is a ratio of all steps
        weight_decay=args.weight_decay,
        seed=args.seed,
        logging_steps=args.logging_steps,
        save_steps=args.save_steps,
        save_total_limit=2,
        report_to=[] if args.report_to == "none" else [args.report_to],
        remove_unused_columns=False,
        # The model returns a dict without "loss"; the trainer must not look for label names.
        label_names=["labels"],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = _trainer_class()(
        model=ranker,
        args=training_args,
        train_dataset=_PairDataset(ranker, pairs),
        data_collator=collate,
    )
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    result = trainer.train(resume_from_checkpoint=last)
    ranker.eval()
    ranker.save_pretrained(out_dir / "model")
    history = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "train_loss": float(result.training_loss),
        "steps": int(result.global_step),
        "pairs": len(pairs),
        "loss_curve": [(int(h["step"]), float(h["loss"])) for h in history],
    }


def pairwise_accuracy(ranker: Any, pairs: Sequence[Pair], **batching: Any) -> float:
    """Return the share of pairs whose both-orders logit has the gold sign (ties count wrong)."""
    from chorus_blender.ranking import compare

    if not pairs:
        raise ValueError("no pairs to score")
    logits = compare(
        ranker,
        [p.source for p in pairs],
        [p.a for p in pairs],
        [p.b for p in pairs],
        return_logits=True,
        **batching,
    )
    right = sum(1 for x, p in zip(logits, pairs, strict=True) if x * p.label > 0)
    return right / len(pairs)
