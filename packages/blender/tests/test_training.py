"""Ranker training: pair sampling with swaps, the paper's loss, and accuracy that improves."""

from __future__ import annotations

import math
import random

import pytest
import torch

from chorus_blender.ranker import PairRanker, RankerConfig
from chorus_blender.training import (
    Pair,
    RankerTrainArgs,
    pairwise_accuracy,
    pairwise_loss,
    sample_pairs,
    train_ranker,
)


def _record(i: int, scores: list[float]) -> dict:
    return {
        "id": f"r{i}",
        "instruction": f"question {i}",
        "input": "",
        "output": "ref",
        "candidates": [
            {"model": f"m{k}", "text": f"cand {k}", "scores": {"bleu": s}}
            for k, s in enumerate(scores)
        ],
    }


def test_sample_pairs_labels_follow_the_metric_and_swaps_happen():
    records = [_record(i, [0.1, 0.5, 0.9, 0.3]) for i in range(50)]
    pairs, stats = sample_pairs(records, metric="bleu", pairs_per_record=3, seed=1)
    assert stats.pairs == len(pairs) == 150
    gold = {"cand 0": 0.1, "cand 1": 0.5, "cand 2": 0.9, "cand 3": 0.3}
    for p in pairs:
        assert p.label == (1.0 if gold[p.a] > gold[p.b] else -1.0)
    assert 0.3 < sum(p.label > 0 for p in pairs) / len(pairs) < 0.7  # random order swaps


def test_ties_and_bad_records_are_counted_not_silently_dropped():
    records = [
        _record(0, [0.5, 0.5]),
        {"id": "broken", "instruction": "x", "candidates": [{"text": "a"}]},
        {"id": "pref", "instruction": "x", "chosen": "good", "rejected": "bad"},
    ]
    pairs, stats = sample_pairs(records, metric="bleu")
    assert stats.ties_skipped == 1 and stats.records_without_pairs == 1
    assert stats.bad_records == ["broken"]
    assert len(pairs) == 1 and {pairs[0].a, pairs[0].b} == {"good", "bad"}


def test_loss_is_minus_log_sigmoid_of_signed_logit():
    logits = torch.tensor([2.0, -1.0, 0.5])
    labels = torch.tensor([1.0, 1.0, -1.0])
    expected = -sum(math.log(1 / (1 + math.exp(-y * x))) for x, y in [(2, 1), (-1, 1), (0.5, -1)])
    assert float(pairwise_loss(logits, labels)) == pytest.approx(expected / 3, rel=1e-5)


def _toy_pairs(n: int, seed: int, good_word: str, bad_word: str) -> list[Pair]:
    """The better answer holds ``good_word``, the worse ``bad_word``: learnable from the text."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        good, bad = f"the answer is {good_word} {i}", f"the answer is {bad_word} {i}"
        if rng.random() < 0.5:
            pairs.append(Pair(f"question {i}", good, bad, 1.0))
        else:
            pairs.append(Pair(f"question {i}", bad, good, -1.0))
    return pairs


def test_training_raises_held_out_pairwise_accuracy(tiny_bert, tmp_path):
    ranker = PairRanker.from_backbone(tiny_bert, RankerConfig(dropout=0.0), seed=1)
    # Make "good" the word the untrained ranker dislikes, so training must flip its preference.
    probe = _toy_pairs(20, seed=5, good_word="correct", bad_word="wrong")
    words = ("correct", "wrong") if pairwise_accuracy(ranker, probe) < 0.5 else ("wrong", "correct")
    held_out = _toy_pairs(40, seed=99, good_word=words[0], bad_word=words[1])
    before = pairwise_accuracy(ranker, held_out)
    args = RankerTrainArgs(
        learning_rate=1e-3, max_steps=60, per_device_train_batch_size=16, logging_steps=10
    )
    metrics = train_ranker(ranker, _toy_pairs(200, 0, *words), tmp_path / "run", args)
    after = pairwise_accuracy(ranker, held_out)
    assert metrics["steps"] == 60
    # No assertion on the untrained ranker alone: its held-out accuracy hinges on exact ties
    # (0.5 under bf16 on some CPUs). What must hold is that training moves it far, and high.
    assert after >= 0.9 and after - before >= 0.3, (before, after)
    # The learning shows in exact fp32 arithmetic too (the default is bf16 on AMX CPUs).
    after_fp32 = pairwise_accuracy(ranker, held_out, precision="fp32")
    assert after_fp32 >= 0.9, after_fp32
    reloaded = PairRanker.from_pretrained(tmp_path / "run" / "model")
    assert pairwise_accuracy(reloaded, held_out) == after
