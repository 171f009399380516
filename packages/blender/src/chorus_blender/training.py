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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from chorus_blender.ranker import PairRanker
from chorus_blender.recipes import LOSSES
from chorus_blender.records import record_source

__all__ = [
    "Pair",
    "PairStats",
    "RankerTrainArgs",
    "pairwise_accuracy",
    "pairwise_loss",
    "ranker_loss",
    "record_source",
    "sample_pairs",
    "train_ranker",
]


@dataclass
class Pair:
    """One training comparison: ``label`` = +1 when A is better, -1 when B is.

    ``gold_a`` / ``gold_b`` are the candidates' gold metric scores (the MSE loss regresses
    onto them); a preference pair has none and stands for 1 / 0.
    """

    source: str
    a: str
    b: str
    label: float
    gold_a: float | None = None
    gold_b: float | None = None


@dataclass
class PairStats:
    """What sampling kept and why it dropped the rest (reported, never silent)."""

    records: int = 0
    pairs: int = 0
    ties_skipped: int = 0
    records_without_pairs: int = 0
    bad_records: list[str] = field(default_factory=list)


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
            pairs.append(Pair(source, ta, tb, 1.0 if ga > gb else -1.0, ga, gb))
            kept += 1
        if kept == 0:
            stats.records_without_pairs += 1
    stats.pairs = len(pairs)
    return pairs, stats


def pairwise_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the mean of ``-log sigmoid(label * logit)`` (the paper's default ranking loss)."""
    return F.softplus(-labels * logits).mean()


def ranker_loss(
    loss: str,
    scores1: torch.Tensor,
    scores2: torch.Tensor,
    labels: torch.Tensor,
    gold1: torch.Tensor,
    gold2: torch.Tensor,
) -> torch.Tensor:
    """Return the ranker's training loss on the head's per-candidate scores (B, n_tasks).

    ``pairwise``: ``-log sigmoid(sign * (s1 - s2))`` on the task mean (the original's
    "instructgpt"); ``bce``: each candidate's score is a logit of "this one is better"
    (labels from the sign, the two BCE terms averaged); ``mse``: each score regresses onto
    its gold metric, minus twice the mean product of the predicted and gold differences.
    """
    if loss == "pairwise":
        return pairwise_loss((scores1 - scores2).mean(dim=-1), labels)
    if loss == "bce":
        left = (labels > 0).to(scores1.dtype).unsqueeze(-1).expand_as(scores1)
        right = (labels < 0).to(scores2.dtype).unsqueeze(-1).expand_as(scores2)
        return (
            F.binary_cross_entropy_with_logits(scores1, left)
            + F.binary_cross_entropy_with_logits(scores2, right)
        ) / 2
    if loss == "mse":
        g1 = gold1.to(scores1.dtype).unsqueeze(-1).expand_as(scores1)
        g2 = gold2.to(scores2.dtype).unsqueeze(-1).expand_as(scores2)
        return (
            F.mse_loss(scores1, g1)
            + F.mse_loss(scores2, g2)
            - (2 * (scores1 - scores2) * (g1 - g2)).mean()
        )
    raise ValueError(f"unknown ranker loss {loss!r}; use one of {LOSSES}")


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, ranker: PairRanker, pairs: Sequence[Pair]) -> None:
        self.items = []
        for p in pairs:
            # A preference pair has no metric: the better one stands for 1, the other for 0.
            gold_a = p.gold_a if p.gold_a is not None else float(p.label > 0)
            gold_b = p.gold_b if p.gold_b is not None else float(p.label < 0)
            ids = ranker.encode_triple(p.source, p.a, p.b)
            self.items.append((ids, float(p.label), float(gold_a), float(gold_b)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        ids, label, gold_a, gold_b = self.items[index]
        return {"ids": ids, "label": label, "gold_a": gold_a, "gold_b": gold_b}


def _trainer_class(loss_name: str = "pairwise") -> type:
    from transformers import Trainer

    class PairwiseTrainer(Trainer):
        """HF Trainer whose loss is the ranker's loss (:func:`ranker_loss`) on the head."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.pop("labels")
            gold1, gold2 = inputs.pop("gold_a"), inputs.pop("gold_b")
            outputs = model(**inputs)
            dtype = outputs["logits"].dtype
            loss = ranker_loss(
                loss_name,
                outputs["scores1"],
                outputs["scores2"],
                labels.to(dtype),
                gold1.to(dtype),
                gold2.to(dtype),
            )
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
    loss: str = "pairwise"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")


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
        tensors["gold_a"] = torch.tensor([b["gold_a"] for b in batch], dtype=torch.float)
        tensors["gold_b"] = torch.tensor([b["gold_b"] for b in batch], dtype=torch.float)
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
        label_names=["labels", "gold_a", "gold_b"],
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = _trainer_class(args.loss)(
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
