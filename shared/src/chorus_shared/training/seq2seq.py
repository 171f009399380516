"""The seq2seq (encoder-decoder) path of the training core: Flan-T5-style models.

Same records, recipe and run folder as the causal path; what differs is the example: the
encoder reads a *source* and the decoder learns a *target*, so there is no chat template and
no per-token weights, only the target's tokens in the loss. A record gives them as

- ``{"id", "source", "target"}``; or
- ``{"id", "messages": [...]}``: the target is the last message with a positive weight (an
  assistant message unless weighted otherwise), the source is every message before it, its
  contents joined by blank lines (seq2seq models such as T5 have no chat template); or
- ``{"id", "segments": [...]}``: the weight-0 segments before the first weighted one are the
  source, the weighted segments after them the target.

The source is tokenized with the tokenizer's own special tokens (T5 appends ``</s>``); the
target's ids end with the end-of-sequence id, which teaches the decoder to stop. The source is
cut to ``max_length`` (``truncation``: right keeps its start, left its end), the target to
``max_target_length``; both cuts are counted in the build stats. Loss: the mean cross-entropy
over the effective batch's target tokens (``sum CE / #targets``, the causal path's ``token``
normalisation).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chorus_shared.training.examples import TRUNCATIONS, BuildStats, NoTrainableTokensError
from chorus_shared.training.trainer import divide_by_items


@dataclass
class Seq2SeqExample:
    """One tokenized seq2seq example: encoder ids and decoder target ids."""

    id: str
    input_ids: list[int]
    labels: list[int]


def source_and_target(record: Mapping[str, Any]) -> tuple[str, str]:
    """Return ``(source, target)`` texts of a record; ``ValueError`` says what to fix."""
    rid = record.get("id", "?")
    if "source" in record or "target" in record:
        if "source" not in record or "target" not in record:
            raise ValueError(f"record {rid!r}: a seq2seq record needs both 'source' and 'target'")
        return str(record["source"]), str(record["target"])
    if "messages" in record:
        messages = list(record["messages"])
        weighted = [
            i
            for i, m in enumerate(messages)
            if float(m.get("weight", 1.0 if m.get("role") == "assistant" else 0.0)) > 0
        ]
        if not weighted:
            raise ValueError(f"record {rid!r}: no message with a positive weight to learn")
        last = weighted[-1]
        source = "\n\n".join(str(m["content"]) for m in messages[:last])
        return source, str(messages[last]["content"])
    if "segments" in record:
        segments = list(record["segments"])
        first = next((i for i, s in enumerate(segments) if float(s.get("weight", 1.0)) > 0), None)
        if first is None:
            raise ValueError(f"record {rid!r}: no segment with a positive weight to learn")
        source = "".join(str(s["text"]) for s in segments[:first])
        target = "".join(str(s["text"]) for s in segments[first:] if float(s.get("weight", 1.0)))
        return source, target
    raise ValueError(
        f"record {rid!r} needs 'source' and 'target', 'messages' or 'segments' for seq2seq"
    )


def build_seq2seq_examples(
    records: Iterable[Mapping[str, Any]],
    tokenizer: Any,
    *,
    max_length: int,
    max_target_length: int,
    truncation: str = "right",
) -> tuple[list[Seq2SeqExample], BuildStats]:
    """Tokenize records into seq2seq examples; returns ``(examples, stats)``.

    Records with an empty target are dropped and counted (``n_empty``); a cut source or
    target counts as truncated. Raises :class:`NoTrainableTokensError` when none is left.
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    if max_length < 2 or max_target_length < 2:
        raise ValueError("max_length and max_target_length must be at least 2")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the seq2seq tokenizer defines no end-of-sequence token")
    stats = BuildStats()
    examples: list[Seq2SeqExample] = []
    for index, record in enumerate(records):
        stats.n_records += 1
        rid = str(record.get("id", index))
        source, target = source_and_target(record)
        ids = tokenizer(source)["input_ids"]
        labels = tokenizer(target, add_special_tokens=False)["input_ids"]
        if not labels:
            stats.n_empty += 1
            stats.empty_ids.append(rid)
            continue
        labels = [*labels, eos]
        cut = False
        if len(ids) > max_length:
            ids = ids[:max_length] if truncation == "right" else ids[-max_length:]
            cut = True
        if len(labels) > max_target_length:
            labels = labels[:max_target_length]
            cut = True
        if cut:
            stats.n_truncated += 1
            stats.truncated_ids.append(rid)
        examples.append(Seq2SeqExample(rid, ids, labels))
        stats.n_examples += 1
        stats.n_tokens += len(ids) + len(labels)
        stats.n_target_tokens += len(labels)
    if not examples:
        raise NoTrainableTokensError(
            f"no seq2seq example has a target ({stats.summary()}); check the records' targets"
        )
    return examples, stats


class Seq2SeqCollator:
    """Pads a batch: input_ids + attention_mask (right padding), labels padded with -100."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        n = len(features)
        width = max(len(f["input_ids"]) for f in features)
        target = max(len(f["labels"]) for f in features)
        ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, target), -100, dtype=torch.long)
        for row, f in enumerate(features):
            ids[row, : len(f["input_ids"])] = torch.tensor(f["input_ids"], dtype=torch.long)
            mask[row, : len(f["input_ids"])] = 1
            labels[row, : len(f["labels"])] = torch.tensor(f["labels"], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def seq2seq_token_loss(logits: Any, labels: Any, num_items: Any = None) -> Any:
    """Returns ``sum(CE over target tokens) / num_items`` (default: this batch's targets)."""
    import torch.nn.functional as F

    flat = logits.float().reshape(-1, logits.size(-1))
    total = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100, reduction="sum")
    return divide_by_items(total, labels.ne(-100).sum() if num_items is None else num_items)


def _trainer_class() -> type:
    from transformers import Trainer

    class Seq2SeqLossTrainer(Trainer):
        """HF Trainer for encoder-decoder models: target-token CE over the effective batch."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # As on the causal path: the loss divides by num_items_in_batch itself.
            self.model_accepts_loss_kwargs = True

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # The model shifts the labels right into decoder inputs (-100 becomes padding).
            outputs = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                labels=inputs["labels"],
            )
            loss = seq2seq_token_loss(outputs.logits, inputs["labels"], num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

    return Seq2SeqLossTrainer


def Seq2SeqLossTrainer(*args: Any, **kwargs: Any) -> Any:
    """Returns an HF ``Trainer`` whose loss is the seq2seq target-token cross-entropy."""
    return _trainer_class()(*args, **kwargs)


class Seq2SeqDataset:
    """The examples as the dicts the collator takes."""

    def __init__(self, examples: list[Seq2SeqExample]) -> None:
        self.rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]
