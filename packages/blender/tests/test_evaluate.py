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
    assert fuser.calls == [2]  # one batched fuser call for the window
    assert a["fused"] == "fused" and a["scores"][FUSED]["bertscore"] == 50.0
    # A failed fuser reply is an errored item (retried on resume), never a 0 score.
    assert b == {"id": "b", "error": "fuser: boom"}

    plain = evaluate_window(ITEMS, ranker=ranker, pointwise=_Cosine(), fuser=None, scorer=_Scorer())
    a, b = plain
    assert a["choices"][PAIRRANKER] == 0 and b["choices"][PAIRRANKER] == 1
    assert a["scores"][PAIRRANKER]["bertscore"] == 10 and b["scores"][PAIRRANKER]["bertscore"] == 30
    assert a["choices"][POINTWISE] == 0 and b["scores"][POINTWISE]["bertscore"] == 20
    summary = summarise(plain)
    table = summary["table"]
    assert summary["best_single"] == "g2"  # mean BERTScore 35 vs 15
    assert table[BEST_SINGLE]["bertscore"]["mean"] == 35.0
    assert table[BEST_SINGLE]["bertscore"]["se"] == pytest.approx(5.0)  # std(40, 30) / sqrt(2)
    assert table[PAIRRANKER]["bertscore"]["mean"] == 20.0
    assert table[oracle_name("bertscore")]["bertscore"]["mean"] == 35.0


# The judge's taste, by answer text: it prefers the higher quality in either order.
QUALITY = {"a-low": 1, "a-high": 3, "fused-0": 2, "b-mid": 1, "b-top": 2, "fused-1": 0}


class _NumberedFuser:
    spec = "fake"

    def chat(self, conversations, params):
        return [Completion(text=f"fused-{k}") for k in range(len(conversations))]


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
        fuser=_NumberedFuser(),
        scorer=_Scorer(),
        top_k=2,
        judge=judge,
    )
    # Item a: a-high (4 points) 1, fused (2) 2, a-low (0) 3. Item b: b-top 1, b-mid 2, the
    # weak fused answer 3. One judge call: 6 + 6 ordered pairs.
    assert judge.batch_sizes == [12]
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
    assert (summary["judge_verdicts"], summary["judge_unparseable"]) == (12, 0)
    # The judge prefers by quality, so it names A and B equally often over both orders.
    assert summary["judge_verdict_counts"] == {"A": 6, "B": 6, "tie": 0, "unparseable": 0}
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
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS) + "{torn\n")
    out = tmp_path / "eval"
    argv = ["evaluate", "--candidates", str(data), "--no-pointwise", "--out", str(out)]
    assert main(argv) == 0
    assert "test.jsonl:3: not JSON" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["items"] == len(ITEMS) and metrics["coverage"] == "2 of 2 items"
    table = metrics["table"]
    assert {RANDOM, BEST_SINGLE, oracle_name("bleu")} <= set(table)
    assert PAIRRANKER not in table and FUSED not in table
    assert main(["evaluate", "--candidates", str(data), "--fuser", "default", "--out", "x"]) == 2
    assert "give --ranker too" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # Issue 20: a candidate missing a metric was a KeyError traceback.
        (
            {**ITEMS[0], "candidates": [_cand("g1", "x", 1, 2, 3), {"text": "y", "scores": {}}]},
            "candidate 1 (unnamed) has no score for bertscore, bleu, rougeL",
        ),
        ({**ITEMS[0], "candidates": "not a list"}, "field 'candidates' should be list"),
        (
            {"id": "c", "instruction": "q", "candidates": [_cand("g", "x", 1, 1, 1)]},
            "missing field 'output'",
        ),
    ],
    ids=["missing-metric", "candidates-not-a-list", "no-output"],
)
def test_evaluate_on_a_malformed_item_is_one_error_and_no_folder(tmp_path, capsys, bad, message):
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(ITEMS[1]) + "\n" + json.dumps(bad) + "\n")
    out = tmp_path / "runs" / "eval"
    assert main(["evaluate", "--candidates", str(data), "--no-pointwise", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("chorus-blender evaluate: error: ") and "\n" not in err
    assert "test.jsonl:2" in err and message in err
    assert not (tmp_path / "runs").exists()


def test_report_on_records_without_scores_is_one_error(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text(json.dumps(ITEMS[0]) + "\n")
    out = tmp_path / "eval"
    assert main(["evaluate", "--candidates", str(data), "--no-pointwise", "--out", str(out)]) == 0
    records = out / "records.jsonl"
    line = json.loads(records.read_text())
    del line["scores"]
    records.write_text(json.dumps(line) + "\n")
    capsys.readouterr()
    assert main(["report", "--run", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("chorus-blender report: error: ") and "no usable evaluate records" in err
    assert "missing field 'scores'" in err


def test_report_counts_foreign_and_duplicate_lines_and_says_k_of_n(tmp_path, capsys):
    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    out = tmp_path / "eval"
    assert main(["evaluate", "--candidates", str(data), "--no-pointwise", "--out", str(out)]) == 0
    before = json.loads((out / "metrics.json").read_text())
    records = out / "records.jsonl"
    lines = records.read_text().splitlines()
    a = json.loads(lines[0])
    foreign = {
        **a,
        "id": "other-run",
        "scores": {k: dict.fromkeys(v, 333.0) for k, v in a["scores"].items()},
    }
    # Issue 20: a copied line and another run's line changed the scores; now they are skipped
    # and counted, and a missing item is reported as "1 of 2 items".
    records.write_text("\n".join([lines[0], lines[0], json.dumps(foreign)]) + "\n")
    capsys.readouterr()
    assert main(["report", "--run", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["coverage"] == "1 of 2 items" and metrics["skipped_records"] == 2
    assert metrics["table"][RANDOM]["bertscore"]["mean"] == 25.0  # item a alone, never 333
    oracle = oracle_name("bertscore")
    assert before["table"][oracle]["bertscore"]["mean"] == 35.0  # items a (40) and b (30)
    assert metrics["table"][oracle]["bertscore"]["mean"] == 40.0  # item a alone
    err = capsys.readouterr().err
    assert "other-run" in err and "only 1 of 2 items" in err
