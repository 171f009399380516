"""evaluate / report: each method's pick and score on hand-built items; the CLI end to end."""

from __future__ import annotations

import json

import pytest

from chorus_blender.cli import main
from chorus_blender.evaluate import (
    BEST_SINGLE,
    FUSED,
    GPT_RANK,
    PAIRRANKER,
    POINTWISE,
    RANDOM,
    evaluate_window,
    oracle_name,
    summarise,
)
from chorus_blender.ranker import PairRanker
from chorus_shared.models import Completion


def _cand(gen, text, bert, bleu, rouge):
    return {
        "generator": gen,
        "text": text,
        "scores": {"bertscore": bert, "bleu": bleu, "rougeL": rouge},
    }


ITEMS = [
    {
        "id": "a",
        "instruction": "q1",
        "output": "ref one",
        "candidates": [_cand("g1", "a-low", 10, 30, 5), _cand("g2", "a-high", 40, 0, 20)],
    },
    {
        "id": "b",
        "instruction": "q2",
        "output": "ref two",
        "candidates": [_cand("g1", "b-mid", 20, 10, 10), _cand("g2", "b-top", 30, 20, 0)],
    },
]


class _Cosine:
    def scores(self, sources, candidates):
        # Prefers the first candidate always.
        return [[1.0] + [0.0] * (len(c) - 1) for c in candidates]


class _Fuser:
    spec = "fake"

    def __init__(self):
        self.calls = []

    def chat(self, conversations, params):
        self.calls.append(len(conversations))
        return [
            Completion(text="fused") if k == 0 else Completion(text="", error="boom")
            for k in range(len(conversations))
        ]


class _Scorer:
    def score(self, cands, refs):
        return [{"bertscore": 50.0 if c else 0.0, "bleu": 5.0, "rougeL": 7.0} for c in cands]


def test_methods_pick_and_score_as_defined(order_scorer):
    ranker = order_scorer({"a-low": 2.0, "a-high": 1.0, "b-mid": 0.0, "b-top": 3.0})
    fuser = _Fuser()
    records = evaluate_window(
        ITEMS, ranker=ranker, pointwise=_Cosine(), fuser=fuser, scorer=_Scorer(), top_k=2
    )
    a, b = records
    assert a["scores"][RANDOM] == {"bertscore": 25.0, "bleu": 15.0, "rougeL": 12.5}
    assert (
        a["scores"][oracle_name("bleu")]["bleu"] == 30
        and a["scores"][oracle_name("bertscore")]["bertscore"] == 40
    )
    assert a["choices"][PAIRRANKER] == 0 and b["choices"][PAIRRANKER] == 1
    assert a["scores"][PAIRRANKER]["bertscore"] == 10 and b["scores"][PAIRRANKER]["bertscore"] == 30
    assert a["choices"][POINTWISE] == 0 and b["scores"][POINTWISE]["bertscore"] == 20
    assert fuser.calls == [2]  # one batched fuser call for the window
    assert a["fused"] == "fused" and a["scores"][FUSED]["bertscore"] == 50.0
    assert b["fuse_error"] and b["scores"][FUSED]["bertscore"] == 0.0

    summary = summarise(records)
    table = summary["table"]
    assert summary["best_single"] == "g2"  # mean BERTScore 35 vs 15
    assert table[BEST_SINGLE]["bertscore"]["mean"] == 35.0
    assert table[BEST_SINGLE]["bertscore"]["se"] == pytest.approx(5.0)  # std(40, 30) / sqrt(2)
    assert table[PAIRRANKER]["bertscore"]["mean"] == 20.0
    assert table[oracle_name("bertscore")]["bertscore"]["mean"] == 35.0
    assert summary["fuse_errors"] == 1


# The judge's taste, by answer text: it prefers the higher quality in either order.
QUALITY = {"a-low": 1, "a-high": 3, "fused": 2, "b-mid": 1, "b-top": 2}


def _judge_reply(conversation):
    body = conversation[-1]["content"]
    a = body.split("Response A:\n", 1)[1].split("\n\nResponse B:", 1)[0]
    b = body.split("Response B:\n", 1)[1].split("\n\nWhich response", 1)[0]
    return "A" if QUALITY[a] > QUALITY[b] else "B"


def test_gpt_rank_column_on_hand_computed_ranks(order_scorer, fake_chat_model):
    ranker = order_scorer({"a-low": 2.0, "a-high": 1.0, "b-mid": 0.0, "b-top": 3.0})
    judge = fake_chat_model(_judge_reply)
    records = evaluate_window(
        ITEMS,
        ranker=ranker,
        pointwise=_Cosine(),
        fuser=_Fuser(),
        scorer=_Scorer(),
        top_k=2,
        judge=judge,
    )
    # Item a: a-high (4 points) 1, fused (2) 2, a-low (0) 3. Item b: the fused answer failed
    # (empty, never judged, loses): b-top 1, b-mid 2, fused 3. One judge call: 6 + 2 pairs.
    assert judge.batch_sizes == [8]
    a, b = records
    assert a[GPT_RANK]["ranks"] == [3.0, 1.0, 2.0] and b[GPT_RANK]["ranks"] == [2.0, 1.0, 3.0]
    assert a["scores"][PAIRRANKER][GPT_RANK] == 3.0 and b["scores"][PAIRRANKER][GPT_RANK] == 1.0
    assert a["scores"][RANDOM][GPT_RANK] == 2.0 and b["scores"][RANDOM][GPT_RANK] == 1.5
    assert a["scores"][FUSED][GPT_RANK] == 2.0 and b["scores"][FUSED][GPT_RANK] == 3.0
    assert a["scores"][POINTWISE][GPT_RANK] == 3.0  # picks the first candidate
    assert a["scores"][oracle_name("bleu")][GPT_RANK] == 3.0  # a-low has the best BLEU
    assert a["scores"][oracle_name("bertscore")][GPT_RANK] == 1.0

    summary = summarise(records)
    assert summary["metrics"][-1] == GPT_RANK
    table = summary["table"]
    assert table[PAIRRANKER][GPT_RANK]["mean"] == 2.0
    assert table[PAIRRANKER][GPT_RANK]["se"] == pytest.approx(1.0)  # std(3, 1) / sqrt(2)
    assert table[RANDOM][GPT_RANK]["mean"] == 1.75
    assert table[FUSED][GPT_RANK]["mean"] == 2.5
    assert table[BEST_SINGLE][GPT_RANK]["mean"] == 1.0  # g2: a-high and b-top
    assert (summary["judge_verdicts"], summary["judge_unparseable"]) == (8, 0)
    # The judge prefers by quality, so it names A and B equally often over both orders.
    assert summary["judge_verdict_counts"] == {"A": 4, "B": 4, "tie": 0, "unparseable": 0}
    assert oracle_name(GPT_RANK) not in table  # oracles pick by reference metrics only
    # Without a judge the column is absent.
    plain = evaluate_window(ITEMS, ranker=ranker, pointwise=None, fuser=None, scorer=_Scorer())
    assert GPT_RANK not in summarise(plain)["metrics"]


def test_evaluate_cli_end_to_end(tiny_bert, tmp_path, capsys):
    from chorus_shared.testing import build_tiny_chat_model

    chat = build_tiny_chat_model(tmp_path / "chat")
    ranker = PairRanker.from_backbone(tiny_bert).save_pretrained(tmp_path / "ranker")
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS) + "{broken\n")
    out = tmp_path / "eval"
    argv = ["evaluate", "--candidates", str(data), "--ranker", str(ranker), "--fuser", f"hf:{chat}"]
    argv += ["--judge", f"hf:{chat}"]
    argv += [
        "--max-new-tokens",
        "4",
        "--bertscore-model",
        str(tiny_bert),
        "--bertscore-layers",
        "2",
    ]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "not JSON" in printed.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == 2
    assert {RANDOM, BEST_SINGLE, POINTWISE, PAIRRANKER, FUSED} <= set(metrics["table"])
    # The random tiny judge's replies are not verdicts: all counted, none guessed.
    assert GPT_RANK in metrics["metrics"] and metrics["judge"] == f"hf:{chat}"
    assert metrics["judge_verdicts"] >= 2 * 2  # at least the two candidates, both orders
    assert metrics["judge_unparseable"] == metrics["judge_verdicts"]
    report = (out / "report.md").read_text()
    assert "gpt_rank (lower better)" in report and "unparseable" in report
    assert "best single (g2)" in report and "table.png" in report and (out / "table.png").is_file()
    lines = (out / "records.jsonl").read_text()
    assert main(argv) == 0  # resume: nothing evaluated twice
    assert (out / "records.jsonl").read_text() == lines
    assert main(["report", "--run", str(out)]) == 0
    assert "PairRanker + GenFuser" in capsys.readouterr().out


def test_evaluate_without_a_ranker_gives_the_baseline_rows(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    unscored = {**ITEMS[0], "id": "unscored", "candidates": [{"text": "x"}]}
    no_candidates = {"id": "none", "output": "y", "candidates": "not a list"}
    bad = [json.dumps(unscored) + "\n", json.dumps(no_candidates) + "\n"]
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS) + "".join(bad))
    out = tmp_path / "eval"
    argv = ["evaluate", "--candidates", str(data), "--no-pointwise", "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().err.count("needs id, output and scored candidates") == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == len(ITEMS)
    table = metrics["table"]
    assert {RANDOM, BEST_SINGLE, oracle_name("bleu")} <= set(table)
    assert PAIRRANKER not in table and FUSED not in table
    assert main(["evaluate", "--candidates", str(data), "--fuser", "default", "--out", "x"]) == 2
    assert "give --ranker too" in capsys.readouterr().err
